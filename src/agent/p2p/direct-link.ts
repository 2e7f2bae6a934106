/**
 * @module One direct TCP connection between two agents: the Noise handshake that binds it to their A2A
 * identities, then sealed frames. The dialing end is the Noise initiator.
 *
 * Connection flow (each frame: u32 length, body):
 *   dialer → acceptor   hs1                    (Noise IXpsk0 message 1; psk: the offer's secret)
 *   acceptor → dialer   hs2                    (message 2; the dialer now knows the acceptor's key)
 *   dialer → acceptor   sealed CONFIRM         (proves the dialer's static key to the acceptor)
 *   sender  → receiver  sealed SELECT          (on the first connection authenticated at the sender)
 *   either way          sealed MESSAGE …       (A2aMessage: artifact chunks one way, acks the other)
 *   either way          sealed PING            (after a second without writing; ignored)
 * Sealed bodies are AES-256-GCM (channel `p2p` of the session), the seq implicit in the order; their
 * first plaintext byte is the frame type.
 */
import { EventEmitter } from 'node:events';
import type { Socket } from 'node:net';
import { fromBinary } from '@bufbuild/protobuf';
import { A2aMessageSchema, encodeA2aParts } from '../../protocol/a2a.js';
import { type ChannelOpener, type ChannelSealer, E2eeHandshake } from '../../protocol/e2ee.js';
import type { X25519KeyPair } from '../../protocol/e2ee-noise.js';
import type { A2aBody } from '../a2a.js';
import { fingerprint } from '../peer-keys.js';
import { joinHostPort } from './candidates.js';
import { FrameReader, frameHeader } from './frames.js';

const CONFIRM = 0;
const SELECT = 1;
const MESSAGE = 2;
const PING = 3;
const SESSION_CHANNEL = 'p2p';
/**
 * A selected link on which nothing arrives for this long is dead (a firewall that drops, a cable pulled:
 * TCP itself would wait minutes): closed with an error, so the sender goes on through the relay. Both
 * ends send a PING when they have written nothing for {@link PING_MS}, so a busy peer (a receiver
 * flushing a large file to disk) is never taken for a dead one.
 */
export const DIRECT_IDLE_MS = 5_000;
const PING_MS = 1_000;
/** Socket bytes queued past this make {@link DirectLink.whenWritable} wait for a drain. */
const HIGH_WATER_BYTES = 8 * 1024 * 1024;

export interface LinkIdentity {
  localId: string;
  remoteId: string;
  staticKey: X25519KeyPair;
  /** The peer's A2A static key, as it gave it on the sealed A2A channel. */
  remoteKey: Uint8Array;
  /** The offer's secret: the Noise pre-shared key. */
  secret: Uint8Array;
}

interface LinkEvents {
  /** Handshake done and the peer's key proven: the link may be selected. */
  authenticated: [];
  /** The sender picked this connection (emitted at the receiver). */
  selected: [];
  message: [A2aBody];
  /** Closed; `error` says why when it was not closed on purpose. */
  close: [Error | undefined];
}

/** A direct connection, from its first handshake byte to its end. */
export class DirectLink extends EventEmitter<LinkEvents> {
  /** `host:port` of the other end. */
  readonly remote: string;
  readonly dialer: boolean;
  readonly #socket: Socket;
  readonly #id: LinkIdentity;
  readonly #reader = new FrameReader();
  #hs: E2eeHandshake | undefined;
  #sealer: ChannelSealer | undefined;
  #opener: ChannelOpener | undefined;
  #state: 'handshake' | 'authenticated' | 'selected' | 'closed' = 'handshake';
  #drain: (() => void)[] = [];
  #lastRead = Date.now();
  #lastWrite = Date.now();
  #keepalive: NodeJS.Timeout | undefined;

  constructor(socket: Socket, id: LinkIdentity, dialer: boolean) {
    super();
    this.#socket = socket;
    this.#id = id;
    this.dialer = dialer;
    this.remote = joinHostPort((socket.remoteAddress ?? '?').replace(/^::ffff:/, ''), socket.remotePort ?? 0);
    socket.setNoDelay(true);
    this.#hs = new E2eeHandshake({
      role: dialer ? 'initiator' : 'responder',
      localId: id.localId,
      remoteId: id.remoteId,
      pairingKey: id.secret,
      staticKey: id.staticKey,
    });
    socket.on('data', (d: Buffer) => this.#onData(d));
    socket.on('drain', () => this.#wakeWriters());
    socket.on('error', (err) => this.#end(err));
    socket.on('close', () => this.#end(new Error('connection closed by the peer')));
    if (dialer) this.#write(this.#hs.writeMessage());
  }

  get state(): string {
    return this.#state;
  }

  /** Sender: makes this the transfer's connection. */
  select(): void {
    if (this.#state !== 'authenticated') throw new Error(`cannot select a link in state ${this.#state}`);
    this.#state = 'selected';
    this.#seal(SELECT);
    this.#startKeepalive();
  }

  /** Sends one A2A message on a selected link; throws once the link is closed. */
  send(msg: A2aBody): Promise<void> {
    if (this.#state !== 'selected')
      return Promise.reject(new Error(`direct link to ${this.remote} is ${this.#state}`));
    this.#seal(MESSAGE, encodeA2aParts(msg));
    return Promise.resolve();
  }

  /** Resolves when the socket's queue is under its high-water mark (or the link closed, or `signal`). */
  whenWritable(signal?: AbortSignal): Promise<void> {
    if (this.#state === 'closed' || this.#socket.writableLength < HIGH_WATER_BYTES || signal?.aborted)
      return Promise.resolve();
    return new Promise((resolve) => {
      this.#drain.push(resolve);
      signal?.addEventListener('abort', () => resolve(), { once: true });
    });
  }

  close(): void {
    this.#end(undefined);
  }

  #startKeepalive(): void {
    this.#keepalive = setInterval(() => {
      const now = Date.now();
      if (now - this.#lastRead > DIRECT_IDLE_MS)
        return this.#end(new Error(`nothing received for ${DIRECT_IDLE_MS} ms`));
      if (now - this.#lastWrite >= PING_MS) this.#seal(PING);
    }, PING_MS / 2);
    this.#keepalive.unref();
  }

  #wakeWriters(): void {
    for (const w of this.#drain.splice(0)) w();
  }

  #write(body: Uint8Array): void {
    this.#lastWrite = Date.now();
    // One writev for header and body.
    this.#socket.cork();
    this.#socket.write(frameHeader(body.length));
    this.#socket.write(body);
    this.#socket.uncork();
  }

  /** Seals the type byte and the body's parts as one frame, without joining them first. */
  #seal(type: number, body: readonly Uint8Array[] = []): void {
    this.#write(this.#sealer!.seal([Uint8Array.of(type), ...body]).ciphertext);
  }

  #end(err: Error | undefined): void {
    if (this.#state === 'closed') return;
    this.#state = 'closed';
    clearInterval(this.#keepalive);
    // Closed on purpose: what was written (the last acks) still goes out.
    if (err) this.#socket.destroy();
    else this.#socket.end();
    this.#wakeWriters();
    this.emit('close', err);
  }

  #onData(data: Buffer): void {
    this.#lastRead = Date.now();
    this.#reader.append(data);
    try {
      for (let body = this.#reader.next(); body; body = this.#reader.next()) {
        this.#onFrame(body);
        if (this.#state === 'closed') return;
      }
    } catch (err) {
      this.#end(err as Error);
    }
  }

  #checkKey(): void {
    const key = this.#hs!.remoteStatic!;
    if (!Buffer.from(key).equals(Buffer.from(this.#id.remoteKey))) {
      throw new Error(
        `${this.remote} presented the key ${fingerprint(key)}, not ${this.#id.remoteId}'s ${fingerprint(this.#id.remoteKey)}`,
      );
    }
  }

  #session(): void {
    const session = this.#hs!.session();
    this.#hs = undefined;
    this.#sealer = session.sealer(SESSION_CHANNEL);
    this.#opener = session.opener(SESSION_CHANNEL);
  }

  #onFrame(body: Buffer): void {
    if (this.#hs) {
      this.#hs.readMessage(body);
      this.#checkKey();
      if (this.dialer) {
        this.#session();
        this.#seal(CONFIRM);
        this.#state = 'authenticated';
        this.emit('authenticated');
      } else {
        this.#write(this.#hs.writeMessage());
        this.#session();
      }
      return;
    }
    const plain = this.#opener!.open(this.#opener!.nextSeq, body);
    const type = plain[0];
    if (type === CONFIRM && !this.dialer && this.#state === 'handshake') {
      this.#state = 'authenticated';
      this.emit('authenticated');
    } else if (type === SELECT && this.#state === 'authenticated') {
      this.#state = 'selected';
      this.#startKeepalive();
      this.emit('selected');
    } else if (type === PING && this.#state === 'selected') {
      // Liveness only (#lastRead).
    } else if (type === MESSAGE && this.#state === 'selected') {
      const msg = fromBinary(A2aMessageSchema, plain.subarray(1));
      if (msg.msg.case !== undefined) this.emit('message', msg.msg);
    } else throw new Error(`unexpected frame type ${type} in state ${this.#state}`);
  }
}
