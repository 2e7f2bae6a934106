/**
 * @module The receiving end of a {@link sendFiles} whose receiver already exists (a task's files): it
 * answers the offer with its candidates and where each file stands, races for the direct link, and hands
 * the chunks that come on it to `onChunk`. Acks go back by the receiver's own path (the relay); chunks
 * that come through the relay reach the receiver as they always did.
 */
import type { ArtifactAck, ArtifactChunk, P2pOffer } from '../../protocol/a2a.js';
import type { Logger } from '../../util/log.js';
import type { DirectLink } from './direct-link.js';
import {
  answerOffer,
  awaitDirectLink,
  type PathChange,
  type TransferChannel,
  type TransferIdentity,
} from './transfer.js';

export interface SideLinkOptions {
  offer: P2pOffer;
  send: TransferChannel['send'];
  /** None: no direct link at this end; the answer offers no address and the sender takes the relay. */
  identity: TransferIdentity | undefined;
  /** Hosts to advertise; none: as without an identity. */
  addresses: readonly string[];
  /** Where the offered files stand at this end (for the sender to resume). */
  standing: ArtifactAck[];
  onChunk: (chunk: ArtifactChunk) => void;
  onPath?: (change: PathChange) => void;
  directTimeoutMs?: number;
  logger?: Logger;
}

/** Answers `offer`; resolves with a close function (the task ended, or a newer offer came). */
export async function answerWithSideLink(opts: SideLinkOptions): Promise<() => void> {
  const race = await answerOffer(opts);
  let closed = false;
  let link: DirectLink | undefined;
  const close = () => {
    closed = true;
    race?.close();
    link?.close();
  };
  if (!race) return close;
  void awaitDirectLink(race, opts.offer, opts.directTimeoutMs).then((r) => {
    race.close();
    if (closed) return r.link?.close();
    if (!r.link) return opts.onPath?.(r.change);
    link = r.link;
    link.on('message', (msg) => {
      if (msg.case === 'artifactChunk') opts.onChunk(msg.value);
    });
    opts.onPath?.({ path: 'direct', remote: link.remote });
  });
  return close;
}
