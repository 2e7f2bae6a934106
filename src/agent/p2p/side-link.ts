/**
 * @module The receiving end of a {@link sendFiles} whose receiver already exists (a task's files): it
 * answers the offer with its candidates and where each file stands, races for the direct link, and hands
 * the chunks that come on it to `onChunk`. Acks go back by the receiver's own path (the relay); chunks
 * that come through the relay reach the receiver as they always did.
 */
import { create } from '@bufbuild/protobuf';
import { type ArtifactAck, type ArtifactChunk, P2pAnswerSchema, type P2pOffer } from '../../protocol/a2a.js';
import type { Logger } from '../../util/log.js';
import { DirectRace } from './connect.js';
import type { DirectLink } from './direct-link.js';
import {
  DEFAULT_DIRECT_TIMEOUT_MS,
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
  const { offer } = opts;
  const id = opts.identity;
  const direct = id && !offer.relayOnly && offer.staticKey.length === 32 && opts.addresses.length > 0;
  const race = direct
    ? await DirectRace.listen({
        identity: { ...id, secret: offer.secret },
        picker: false,
        addresses: opts.addresses,
        logger: opts.logger,
      })
    : undefined;
  let closed = false;
  let link: DirectLink | undefined;
  const close = () => {
    closed = true;
    race?.close();
    link?.close();
  };
  const answer = create(P2pAnswerSchema, {
    transferId: offer.transferId,
    candidates: race?.candidates ?? [],
    staticKey: id?.staticKey.publicKey,
    standing: opts.standing,
  });
  try {
    await opts.send({ case: 'p2pAnswer', value: answer });
  } catch (err) {
    close();
    throw err;
  }
  if (!race) return close;
  // A little longer than the sender's deadline: it decides, and says so on the link it picks.
  const ms = (opts.directTimeoutMs ?? DEFAULT_DIRECT_TIMEOUT_MS) + 2_000;
  void race.connect(offer.candidates, offer.staticKey, ms).then((r) => {
    race.close();
    if (closed) return r.link?.close();
    if (!r.link) {
      return opts.onPath?.({
        path: 'relay',
        why: `no direct connection within ${ms} ms (${r.failures.join('; ') || 'no candidate'})`,
      });
    }
    link = r.link;
    link.on('message', (msg) => {
      if (msg.case === 'artifactChunk') opts.onChunk(msg.value);
    });
    opts.onPath?.({ path: 'direct', remote: link.remote });
  });
  return close;
}
