/**
 * @module Files from one agent to another, directly when they can reach each other, else through the
 * relay. The offer and answer (candidates, the secret, where each file stands) travel sealed on the
 * transfer's A2A channel; the bytes go as the artifact stream's own chunks and acks, by
 * {@link ArtifactSender} and {@link ArtifactReceiver}, over the direct link or over that channel. A
 * direct link lost mid-transfer hands over to the relay from the last acknowledged offset.
 *
 *   sender                                   receiver
 *   listen; P2pOffer{files, candidates,  →
 *     secret, static_key}                    expect(files); listen
 *                                        ←   P2pAnswer{candidates, static_key, standing}
 *   dial ⇄ dial (first authenticated wins, SELECT on it), or relay after the deadline
 *   ArtifactChunk …                      →   (over the path that won)
 *                                        ←   ArtifactAck … (over the path the chunk came on)
 */
import { randomBytes } from 'node:crypto';
import { create } from '@bufbuild/protobuf';
import {
  type ArtifactAck,
  type ArtifactInfo,
  type P2pAnswer,
  P2pAnswerSchema,
  type P2pOffer,
  P2pOfferSchema,
} from '../../protocol/a2a.js';
import type { X25519KeyPair } from '../../protocol/e2ee-noise.js';
import { type Logger, silentLogger } from '../../util/log.js';
import type { A2aBody } from '../a2a.js';
import {
  ArtifactError,
  ArtifactReceiver,
  type ArtifactReceiverOptions,
  ArtifactSender,
  type ChunkRef,
  type LocalFile,
  type ReceivedFile,
  type SendReport,
} from '../artifacts/index.js';
import { DirectRace } from './connect.js';
import type { DirectLink } from './direct-link.js';

/** How long the two ends try to connect directly before the relay path is taken. */
export const DEFAULT_DIRECT_TIMEOUT_MS = 3_000;
/** How long a sender waits for the receiver's answer to its offer. */
const ANSWER_TIMEOUT_MS = 30_000;

export type TransferPath = 'direct' | 'relay';

/** Which path carries the bytes from now on, and why (a fallback names what failed). */
export interface PathChange {
  path: TransferPath;
  /** `host:port` of the other end of a direct link. */
  remote?: string;
  why?: string;
}

/** The transfer's A2A channel with the peer: signalling, and the relay path. */
export interface TransferChannel {
  /** Sends one message, sealed, through the relay. */
  send(msg: A2aBody): Promise<void>;
  /** Resolves once the agent's queue to the relay has room. */
  whenWritable(signal?: AbortSignal): Promise<void>;
  /**
   * Takes the peer's messages on this channel, and `resync` (a new A2A session: frames through the
   * relay may have been lost). Returns the unsubscribe.
   */
  subscribe(handler: { message(msg: A2aBody): void; resync?(): void }): () => void;
}

/** This end's identity for the direct handshake: the A2A agent ids and static key. */
export interface TransferIdentity {
  localId: string;
  remoteId: string;
  staticKey: X25519KeyPair;
}

interface DirectOptions {
  /** Hosts to advertise (local interfaces, the address the relay saw); none: no direct attempt. */
  addresses: readonly string[];
  listenHost?: string;
  directTimeoutMs?: number;
  onPath?: (change: PathChange) => void;
  logger?: Logger;
}

export interface SendFilesOptions extends DirectOptions {
  channel: TransferChannel;
  identity: TransferIdentity;
  transferId: string;
  /** Put in the chunks (the task id, for task artifacts). */
  taskId: string;
  files: LocalFile[];
  /** The files' announcements (name, size, SHA-256), in the order of `files`. */
  infos: ArtifactInfo[];
  /** Skip the direct attempt. */
  relayOnly?: boolean;
  /**
   * A peer that does not answer the offer (an nfltr without direct transfer for task files) gets the
   * files through the relay, instead of the transfer failing.
   */
  relayIfUnanswered?: boolean;
  /** How long the offer waits for the answer (default 30 s). */
  answerTimeoutMs?: number;
  signal?: AbortSignal;
  onProgress?: (acked: number, total: number) => void;
  /** Passed on to the sender (tests: a short stall resend). */
  stallMs?: number;
  /** For tests: the sender flips a byte of this chunk once (see ArtifactSenderOptions). */
  corruptChunk?: ChunkRef;
}

export interface SendFilesReport extends SendReport {
  /** The path that carried the last bytes. */
  path: TransferPath;
  /** Every path taken, in order. */
  paths: PathChange[];
  /** Bytes the receiver had before this run (a resumed transfer). */
  resumedBytes: number;
  ms: number;
}

/** Sends files to the peer; resolves once every file is acknowledged whole (or discarded, see `failed`). */
export async function sendFiles(opts: SendFilesOptions): Promise<SendFilesReport> {
  const log = opts.logger ?? silentLogger;
  const started = Date.now();
  const direct = !opts.relayOnly && opts.addresses.length > 0;
  const secret = randomBytes(32);
  const race = direct
    ? await DirectRace.listen({
        identity: { ...opts.identity, secret },
        picker: true,
        addresses: opts.addresses,
        listenHost: opts.listenHost,
        logger: log,
      })
    : undefined;
  let sender: ArtifactSender | undefined;
  let answered: (a: P2pAnswer) => void = () => {};
  const answer = new Promise<P2pAnswer>((resolve) => {
    answered = resolve;
  });
  const unsubscribe = opts.channel.subscribe({
    message: (msg) => {
      if (msg.case === 'p2pAnswer' && msg.value.transferId === opts.transferId) answered(msg.value);
      else if (msg.case === 'artifactAck') sender?.onAck(msg.value);
    },
    resync: () => {
      if (path === 'relay') sender?.resync();
    },
  });
  let path: TransferPath = 'relay';
  let link: DirectLink | undefined;
  let allAcked = false;
  const paths: PathChange[] = [];
  const take = (change: PathChange) => {
    path = change.path;
    paths.push(change);
    opts.onPath?.(change);
  };
  try {
    const offer = create(P2pOfferSchema, {
      transferId: opts.transferId,
      files: opts.infos,
      candidates: race?.candidates ?? [],
      secret,
      staticKey: opts.identity.staticKey.publicKey,
      relayOnly: !direct,
    });
    await opts.channel.send({ case: 'p2pOffer', value: offer });
    let got: P2pAnswer;
    let unanswered = false;
    try {
      const ms = opts.answerTimeoutMs ?? ANSWER_TIMEOUT_MS;
      got = await waitFor(answer, ms, opts.signal, () => {
        return `${opts.identity.remoteId} did not answer the transfer offer within ${ms / 1000} s (is \`nfltr p2p recv\` running there?)`;
      });
    } catch (err) {
      if (!opts.relayIfUnanswered || !(err instanceof ArtifactError) || err.code !== 'stalled') throw err;
      got = create(P2pAnswerSchema, { transferId: opts.transferId });
      unanswered = true;
    }
    if (got.error)
      throw new ArtifactError('unexpected', `${opts.identity.remoteId} refused the files: ${got.error}`);
    sender = new ArtifactSender(opts.files, {
      taskId: opts.taskId,
      send: (msg) => (path === 'direct' && link ? link.send(msg) : opts.channel.send(msg)),
      whenWritable: (signal) =>
        path === 'direct' && link ? link.whenWritable(signal) : opts.channel.whenWritable(signal),
      signal: opts.signal,
      onProgress: (acked, total) => {
        allAcked = acked >= total;
        opts.onProgress?.(acked, total);
      },
      stallMs: opts.stallMs,
      corruptChunk: opts.corruptChunk,
      logger: log,
    });
    for (const ack of got.standing) sender.onAck(ack);
    const resumedBytes =
      got.standing.reduce((n, a) => n + (a.done ? 0 : Number(a.offset)), 0) +
      doneBytes(opts.infos, got.standing);
    if (unanswered) {
      race?.close();
      take({ path: 'relay', why: `${opts.identity.remoteId} did not answer the direct transfer offer` });
    } else if (!race)
      take({ path: 'relay', why: opts.relayOnly ? 'relay path asked for' : 'no local address to offer' });
    else if (got.candidates.length === 0) {
      race.close();
      take({ path: 'relay', why: `${opts.identity.remoteId} offered no direct address` });
    } else {
      const ms = opts.directTimeoutMs ?? DEFAULT_DIRECT_TIMEOUT_MS;
      const r = await race.connect(got.candidates, got.staticKey, ms);
      if (r.link) {
        link = r.link;
        link.on('message', (msg) => {
          if (msg.case === 'artifactAck') sender?.onAck(msg.value);
        });
        link.on('close', (err) => {
          // The receiver may close the link once it has everything: no fallback then.
          if (path !== 'direct' || !err || allAcked) return;
          take({ path: 'relay', why: `direct connection to ${r.link!.remote} lost: ${err.message}` });
          sender?.resync();
        });
        take({ path: 'direct', remote: link.remote });
      } else {
        take({
          path: 'relay',
          why: `no direct connection within ${ms} ms (${r.failures.join('; ') || 'no candidate'})`,
        });
      }
    }
    const report = await sender.run();
    return { ...report, path, paths, resumedBytes, ms: Date.now() - started };
  } finally {
    unsubscribe();
    race?.close();
    link?.close();
  }
}

/** Sizes of the files the receiver already has whole. */
function doneBytes(infos: ArtifactInfo[], standing: ArtifactAck[]): number {
  const done = new Set(standing.filter((a) => a.done).map((a) => a.name));
  return infos.reduce((n, f) => n + (done.has(f.name) ? Number(f.size) : 0), 0);
}

function waitFor<T>(
  p: Promise<T>,
  ms: number,
  signal: AbortSignal | undefined,
  why: () => string,
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const t = setTimeout(() => reject(new ArtifactError('stalled', why())), ms);
    const onAbort = () =>
      reject(new ArtifactError('aborted', `transfer stopped: ${String(signal?.reason ?? 'aborted')}`));
    signal?.addEventListener('abort', onAbort, { once: true });
    p.then(resolve, reject).finally(() => {
      clearTimeout(t);
      signal?.removeEventListener('abort', onAbort);
    });
  });
}

/**
 * One transfer's files at the receiver, across the offers that carry them: a sender run again offers
 * the same transfer (same id, same files), and the next offer resumes from what this one received.
 */
export class InboundFiles {
  readonly receiver: ArtifactReceiver;
  /** Where progress goes: the latest offer's reporter. */
  onProgress: ((received: number, total: number, duplicateBytes: number) => void) | undefined;
  #done: Promise<ReceivedFile[]> | undefined;
  #current: IncomingTransfer | undefined;

  constructor(opts: Omit<ArtifactReceiverOptions, 'sendAck'>) {
    this.receiver = new ArtifactReceiver({ ...opts, sendAck: (ack) => this.#current?.ack(ack) });
  }

  /** Announces the files once; later offers of the transfer share the first announcement's outcome. */
  expect(files: ArtifactInfo[]): Promise<ReceivedFile[]> {
    this.#done ??= this.receiver.expect(files, { onProgress: (...a) => this.onProgress?.(...a) });
    return this.#done;
  }

  /** Makes `t` the offer whose link carries the acks, closing the one before. */
  attach(t: IncomingTransfer): void {
    if (this.#current !== t) this.#current?.close();
    this.#current = t;
  }

  get current(): IncomingTransfer | undefined {
    return this.#current;
  }
}

/**
 * The receiving end's answer to an offer: listens for the direct link when both ends can have one, then
 * sends its candidates and where each file stands. Resolves with the listening race (none: the relay).
 */
export async function answerOffer(
  o: Omit<DirectOptions, 'onPath' | 'directTimeoutMs'> & {
    offer: P2pOffer;
    /** None: no direct link at this end; the answer offers no address and the sender takes the relay. */
    identity: TransferIdentity | undefined;
    standing: ArtifactAck[];
    send: TransferChannel['send'];
  },
): Promise<DirectRace | undefined> {
  const { offer, identity: id } = o;
  const race =
    id && !offer.relayOnly && offer.staticKey.length === 32 && o.addresses.length > 0
      ? await DirectRace.listen({
          identity: { ...id, secret: offer.secret },
          picker: false,
          addresses: o.addresses,
          listenHost: o.listenHost,
          logger: o.logger,
        })
      : undefined;
  const answer = create(P2pAnswerSchema, {
    transferId: offer.transferId,
    candidates: race?.candidates ?? [],
    staticKey: id?.staticKey.publicKey,
    standing: o.standing,
  });
  try {
    await o.send({ case: 'p2pAnswer', value: answer });
  } catch (err) {
    race?.close();
    throw err;
  }
  return race;
}

/** Waits for the link the sender picks among `race`'s connections; none: why, as a relay path change. */
export async function awaitDirectLink(
  race: DirectRace,
  offer: P2pOffer,
  directTimeoutMs: number | undefined,
): Promise<{ link: DirectLink } | { link?: undefined; change: PathChange }> {
  // A little longer than the sender's deadline: it decides, and says so on the link it picks.
  const ms = (directTimeoutMs ?? DEFAULT_DIRECT_TIMEOUT_MS) + 2_000;
  const r = await race.connect(offer.candidates, offer.staticKey, ms);
  if (r.link) return { link: r.link };
  return {
    change: {
      path: 'relay',
      why: `no direct connection within ${ms} ms (${r.failures.join('; ') || 'no candidate'})`,
    },
  };
}

export interface ReceiveFilesOptions extends DirectOptions {
  offer: P2pOffer;
  channel: TransferChannel;
  identity: TransferIdentity;
  /** The transfer's files, kept across offers to resume. */
  inbound: InboundFiles;
}

/** One offer being received: chunks from either path go to the receiver, acks back the same way. */
export class IncomingTransfer {
  /** Resolves with the files once all are verified; rejects naming a discarded one. */
  readonly done: Promise<ReceivedFile[]>;
  readonly #opts: ReceiveFilesOptions;
  readonly #unsubscribe: () => void;
  #race: DirectRace | undefined;
  #link: DirectLink | undefined;
  /** The path the last chunk came on: acks go back on it. */
  #ackPath: TransferPath = 'relay';
  #closed = false;

  private constructor(opts: ReceiveFilesOptions, done: Promise<ReceivedFile[]>) {
    this.#opts = opts;
    this.done = done;
    this.#unsubscribe = opts.channel.subscribe({
      message: (msg) => {
        if (msg.case !== 'artifactChunk') return;
        this.#ackPath = 'relay';
        void opts.inbound.receiver.accept(msg.value);
      },
      resync: () => opts.inbound.receiver.resync(),
    });
  }

  /**
   * Answers an offer: announces its files to the receiver (a bad name or a size over the limit is
   * refused in the answer, and thrown), tells the sender where each file stands, and races for a
   * direct connection in the background.
   */
  static async start(opts: ReceiveFilesOptions): Promise<IncomingTransfer> {
    const { offer, inbound } = opts;
    let done: Promise<ReceivedFile[]>;
    try {
      done = inbound.expect(offer.files);
    } catch (err) {
      const answer = create(P2pAnswerSchema, { transferId: offer.transferId, error: (err as Error).message });
      await opts.channel.send({ case: 'p2pAnswer', value: answer });
      throw err;
    }
    done.catch(() => {});
    const t = new IncomingTransfer(opts, done);
    inbound.attach(t);
    t.#race = await answerOffer({
      ...opts,
      standing: await inbound.receiver.standing(),
      send: (msg) => opts.channel.send(msg),
    });
    if (t.#race) void t.#connect(t.#race);
    else
      opts.onPath?.({
        path: 'relay',
        why: offer.relayOnly ? 'the sender asked for the relay path' : 'no direct attempt',
      });
    return t;
  }

  /** An ack of the receiver's, sent back on the path its chunk came on. */
  ack(ack: ArtifactAck): void {
    const msg: A2aBody = { case: 'artifactAck', value: ack };
    const link = this.#link;
    if (this.#ackPath === 'direct' && link) void link.send(msg).catch(() => {});
    else void this.#opts.channel.send(msg).catch(() => {});
  }

  /** Stops taking chunks for this offer (a newer offer of the same transfer, or the end). */
  close(): void {
    this.#closed = true;
    this.#unsubscribe();
    this.#race?.close();
    this.#link?.close();
  }

  async #connect(race: DirectRace): Promise<void> {
    const { offer, onPath } = this.#opts;
    const r = await awaitDirectLink(race, offer, this.#opts.directTimeoutMs);
    if (this.#closed) return r.link?.close();
    if (!r.link) return onPath?.(r.change);
    const link = r.link;
    this.#link = link;
    link.on('message', (msg) => {
      if (msg.case !== 'artifactChunk') return;
      this.#ackPath = 'direct';
      void this.#opts.inbound.receiver.accept(msg.value);
    });
    link.on('close', (err) => {
      if (this.#link === link) this.#link = undefined;
      this.#ackPath = 'relay';
      if (err && !this.#closed)
        onPath?.({ path: 'relay', why: `direct connection to ${link.remote} lost: ${err.message}` });
    });
    onPath?.({ path: 'direct', remote: link.remote });
  }
}
