// End-to-end encryption of A2A task frames between a planner and a worker (protocol a2a-mcp-v1).
//
// Handshake: Noise_IXpsk0_25519_AESGCM_SHA256 with a pairing key (--e2ee-key-file), Noise_IX_25519_AESGCM_SHA256
// without: both ends' long-term static keys are exchanged and authenticated, so a peer can be pinned (the
// A2A layer compares them with known_workers / known_planners). The prologue binds the protocol id and both
// agent ids. After the two handshake messages every logical channel (one per task) gets its own key per
// direction, derived from the Split() keys, with its own counter from 0. See docs/security.md. Pure: no
// sockets, timers or I/O.
import { hkdfSync, randomBytes } from 'node:crypto';
import {
  aesGcmOpen,
  aesGcmSealParts,
  generateX25519,
  MAX_NONCE,
  NOISE_IX,
  NoiseError,
  NoiseHandshake,
  TAGLEN,
  type X25519KeyPair,
} from './e2ee-noise.js';

/** Bytes of the session tag that precedes each sealed frame on the wire (see E2eeSession.tag). */
export const SESSION_TAG_BYTES = 8;
/** Bytes a sealed frame adds to its plaintext on the wire: the session tag and the AEAD tag. */
export const SEAL_OVERHEAD = SESSION_TAG_BYTES + TAGLEN;

export const A2A_PROTOCOL_ID = 'a2a-mcp-v1';
export const PAIRING_KEY_BYTES = 32;
/** Channel ids longer than this (UTF-8 bytes) are refused. */
export const MAX_CHANNEL_ID_BYTES = 512;

const KEY_FLAG = '--e2ee-key-file';
const E2EE_FLAG = '--a2a-e2ee';
// First byte of each handshake message: which pattern the sender runs. Both patterns' names are also mixed
// into the transcript, so this byte only lets a mismatch be reported precisely; it cannot cause a downgrade.
// 0x01 and 0x02 were NN and NNpsk0 (no static keys), which this version no longer speaks.
const MODE_IX = 0x03;
const MODE_IXPSK0 = 0x04;
const CHANNEL_INFO = 'nfltr a2a channel ';

export type E2eeRole = 'initiator' | 'responder';

export type E2eeErrorCode =
  /** Both ends have a pairing key but not the same one (or the handshake was altered in transit). */
  | 'pairing_mismatch'
  /** One end has a pairing key, the other has none. */
  | 'pairing_missing'
  /** A pairing key that is not 32 bytes of base64url / base64. */
  | 'invalid_pairing_key'
  /** Any other handshake failure: malformed, out of turn, bad ephemeral key, reply not authenticated. */
  | 'handshake'
  /** A frame with a sequence number already consumed. */
  | 'replay'
  /**
   * An authentic frame ahead of the next expected sequence number: an earlier one was dropped or
   * reordered. The peer did seal it, so frames were lost, not forged: the A2A layer recovers with a new
   * session and a resume.
   */
  | 'gap'
  /** A frame that failed authentication: altered, truncated, or sealed for another channel or session. */
  | 'tampered'
  /** Use of an opener after a violation; `cause` is the original violation. */
  | 'poisoned'
  /** An empty, oversized or closed channel id. */
  | 'invalid_channel'
  /** A channel's sequence numbers are used up (2^64-1 frames); open a new channel or session. */
  | 'exhausted'
  /** An encrypting end received a plaintext A2A frame. */
  | 'plaintext_refused';

export class E2eeError extends Error {
  readonly code: E2eeErrorCode;
  constructor(code: E2eeErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'E2eeError';
    this.code = code;
  }
}

export interface HandshakeOptions {
  role: E2eeRole;
  localId: string;
  remoteId: string;
  /** 32-byte pairing key (see parsePairingKey); selects Noise IXpsk0. */
  pairingKey?: Uint8Array;
  /** This agent's long-term static key (state dir `static_key`); a fresh one when absent (no identity to pin). */
  staticKey?: X25519KeyPair;
}

export interface SealedFrame {
  seq: bigint;
  ciphertext: Uint8Array;
}

/** The error for a plaintext A2A frame arriving at an end that encrypts. */
export function plaintextRefused(peerId: string): E2eeError {
  return new E2eeError(
    'plaintext_refused',
    `refusing unencrypted A2A frame from ${peerId}: this end requires end-to-end encryption (${E2EE_FLAG}); ` +
      `turn it on at the peer, or run both ends with ${E2EE_FLAG}=false`,
  );
}

/** A new pairing key as text: 32 random bytes, base64url. Write it to the file given to --e2ee-key-file. */
export function generatePairingKey(): string {
  return randomBytes(PAIRING_KEY_BYTES).toString('base64url');
}

/** Parses the content of an --e2ee-key-file: 32 bytes as base64url (or standard base64), whitespace trimmed. */
export function parsePairingKey(text: string): Uint8Array {
  const trimmed = text.trim();
  // 32 bytes are 43 base64 characters (+ one '=' of padding); checked strictly since Node's decoder skips junk.
  if (!/^[A-Za-z0-9_-]{43}$/.test(trimmed) && !/^[A-Za-z0-9+/]{43}=?$/.test(trimmed)) {
    const what =
      trimmed.length === 0 ? 'the pairing key file is empty' : 'the pairing key is not 32 bytes of base64url';
    throw new E2eeError(
      'invalid_pairing_key',
      `${what}: check ${KEY_FLAG} (make a key with \`nfltr keys pairing > FILE\`)`,
    );
  }
  return new Uint8Array(Buffer.from(trimmed, 'base64'));
}

function utf8(text: string): Buffer {
  return Buffer.from(text, 'utf8');
}

/** u32 big-endian length || bytes, for each field: an injective encoding of a list of strings. */
function lengthPrefixed(fields: string[]): Buffer {
  const parts: Buffer[] = [];
  for (const field of fields) {
    const bytes = utf8(field);
    const length = Buffer.alloc(4);
    length.writeUInt32BE(bytes.length);
    parts.push(length, bytes);
  }
  return Buffer.concat(parts);
}

function requireId(name: string, value: unknown): string {
  if (typeof value !== 'string' || value.length === 0)
    throw new TypeError(`${name} must be a non-empty string`);
  return value;
}

export class E2eeHandshake {
  readonly role: E2eeRole;
  readonly localId: string;
  readonly remoteId: string;
  #noise: NoiseHandshake;
  #failure: E2eeError | undefined;
  #session: E2eeSession | undefined;

  constructor(opts: HandshakeOptions) {
    this.role = opts.role;
    this.localId = requireId('localId', opts.localId);
    this.remoteId = requireId('remoteId', opts.remoteId);
    if (opts.pairingKey !== undefined && opts.pairingKey.length !== PAIRING_KEY_BYTES) {
      throw new E2eeError(
        'invalid_pairing_key',
        `pairing key must be ${PAIRING_KEY_BYTES} bytes: check ${KEY_FLAG}`,
      );
    }
    const initiator = opts.role === 'initiator';
    const [initiatorId, responderId] = initiator
      ? [this.localId, this.remoteId]
      : [this.remoteId, this.localId];
    this.#noise = new NoiseHandshake({
      initiator,
      prologue: lengthPrefixed([A2A_PROTOCOL_ID, initiatorId, responderId]),
      psk: opts.pairingKey,
      s: opts.staticKey ?? generateX25519(),
    });
  }

  /** The Noise protocol name in use. */
  get protocolName(): string {
    return this.#noise.protocolName;
  }

  get usesPairingKey(): boolean {
    return this.#noise.protocolName !== NOISE_IX;
  }

  /**
   * The peer's static public key: the responder has it after message 1, the initiator after message 2.
   * It is authenticated once the handshake is complete and the peer has sealed a frame (initiator's key,
   * seen by the responder) or message 2 has been read (responder's key, seen by the initiator).
   */
  get remoteStatic(): Uint8Array | undefined {
    return this.#noise.remoteStatic;
  }

  get complete(): boolean {
    return this.#noise.finished;
  }

  /**
   * Initiator: message 1 (first call). Responder: message 2 (after reading message 1).
   * The payload (and the static key) of message 1 is encrypted only with a pairing key; never put task
   * content in it.
   */
  writeMessage(payload: Uint8Array = new Uint8Array(0)): Uint8Array {
    this.#guard();
    try {
      const body = this.#noise.writeMessage(payload);
      return Buffer.concat([Uint8Array.of(this.usesPairingKey ? MODE_IXPSK0 : MODE_IX), body]);
    } catch (err) {
      throw this.#fail(this.#translate(err));
    }
  }

  /**
   * Responder: message 1. Initiator: message 2. Returns the peer's decrypted payload. With
   * `keepOnFailure` (an initiator awaiting its reply), a message that fails authentication is refused
   * without spending the handshake: a replayed or stale reply must not stop the genuine one.
   */
  readMessage(message: Uint8Array, opts: { keepOnFailure?: boolean } = {}): Uint8Array {
    this.#guard();
    const mode = message[0];
    if (mode !== MODE_IX && mode !== MODE_IXPSK0) {
      throw this.#fail(
        new E2eeError(
          'handshake',
          `handshake from ${this.remoteId} is not a2a-mcp-v1 (empty, or unknown mode byte); the peer may run an incompatible nfltr`,
        ),
      );
    }
    if (mode === MODE_IXPSK0 && !this.usesPairingKey) {
      throw this.#fail(
        new E2eeError(
          'pairing_missing',
          `peer uses a pairing key but this end has none (${KEY_FLAG}); peer agent ${this.remoteId}`,
        ),
      );
    }
    if (mode === MODE_IX && this.usesPairingKey) {
      throw this.#fail(
        new E2eeError(
          'pairing_missing',
          `this end uses a pairing key but the peer has none (${KEY_FLAG}); peer agent ${this.remoteId}`,
        ),
      );
    }
    try {
      return this.#noise.readMessage(message.subarray(1), opts);
    } catch (err) {
      const e = this.#translate(err);
      throw opts.keepOnFailure ? e : this.#fail(e);
    }
  }

  /** The transport session; only after the handshake is complete. */
  session(): E2eeSession {
    this.#guard();
    if (!this.#noise.finished) throw new E2eeError('handshake', 'handshake not complete');
    if (this.#session === undefined) {
      const keys = this.#noise.split();
      const initiator = this.role === 'initiator';
      this.#session = new E2eeSession({
        localId: this.localId,
        remoteId: this.remoteId,
        protocolName: this.protocolName,
        handshakeHash: this.#noise.handshakeHash,
        sendKey: initiator ? keys.initiatorToResponder : keys.responderToInitiator,
        receiveKey: initiator ? keys.responderToInitiator : keys.initiatorToResponder,
      });
    }
    return this.#session;
  }

  #guard(): void {
    if (this.#failure !== undefined) {
      throw new E2eeError('handshake', `handshake already failed: ${this.#failure.message}`, {
        cause: this.#failure,
      });
    }
  }

  #fail(err: E2eeError): E2eeError {
    this.#failure = err;
    return err;
  }

  #translate(err: unknown): E2eeError {
    if (err instanceof E2eeError) return err;
    if (!(err instanceof NoiseError)) return new E2eeError('handshake', String(err), { cause: err });
    if (err.reason === 'decrypt' && this.usesPairingKey) {
      return new E2eeError(
        'pairing_mismatch',
        `pairing keys differ: check ${KEY_FLAG} on both ends (peer agent ${this.remoteId}; or the handshake was altered in transit)`,
        { cause: err },
      );
    }
    if (err.reason === 'decrypt') {
      return new E2eeError(
        'handshake',
        `handshake reply from ${this.remoteId} failed authentication (altered or misrouted in transit)`,
        { cause: err },
      );
    }
    return new E2eeError('handshake', `handshake with ${this.remoteId} failed: ${err.message}`, {
      cause: err,
    });
  }
}

interface SessionInit {
  localId: string;
  remoteId: string;
  protocolName: string;
  handshakeHash: Uint8Array;
  sendKey: Uint8Array;
  receiveKey: Uint8Array;
}

/** Keys of one handshake. Obtain it from E2eeHandshake.session(). */
export class E2eeSession {
  readonly localId: string;
  readonly remoteId: string;
  readonly protocolName: string;
  readonly handshakeHash: Uint8Array;
  /**
   * Names this session on the wire (the first bytes of the handshake hash, public like the hash): a
   * receiver holding several sessions with one peer (one live, one being confirmed) picks the one to
   * open a frame with. It authenticates nothing; the frame's AEAD does.
   */
  readonly tag: string;
  #sendKey: Uint8Array;
  #receiveKey: Uint8Array;
  #sealers = new Map<string, ChannelSealer>();
  #openers = new Map<string, ChannelOpener>();
  #closed = new Set<string>();

  constructor(init: SessionInit) {
    this.localId = init.localId;
    this.remoteId = init.remoteId;
    this.protocolName = init.protocolName;
    this.handshakeHash = Uint8Array.from(init.handshakeHash);
    this.tag = sessionTag(this.handshakeHash.subarray(0, SESSION_TAG_BYTES));
    this.#sendKey = init.sendKey;
    this.#receiveKey = init.receiveKey;
  }

  /** The outbound side of a channel. Always the same object for the same channel, so a nonce is never reused. */
  sealer(channel: string): ChannelSealer {
    this.#check(channel);
    let sealer = this.#sealers.get(channel);
    if (sealer === undefined) {
      const key = this.#channelKey(this.#sendKey, channel);
      sealer = new ChannelSealer(channel, key, frameAdPrefix(this.localId, this.remoteId, channel));
      this.#sealers.set(channel, sealer);
    }
    return sealer;
  }

  /** The inbound side of a channel. Always the same object for the same channel. */
  opener(channel: string): ChannelOpener {
    this.#check(channel);
    let opener = this.#openers.get(channel);
    if (opener === undefined) {
      const key = this.#channelKey(this.#receiveKey, channel);
      opener = new ChannelOpener(channel, key, frameAdPrefix(this.remoteId, this.localId, channel));
      this.#openers.set(channel, opener);
    }
    return opener;
  }

  /** Forgets a channel's keys. The id cannot be used again in this session (its counters would restart). */
  closeChannel(channel: string): void {
    this.#sealers.get(channel)?.close();
    this.#openers.get(channel)?.close();
    this.#sealers.delete(channel);
    this.#openers.delete(channel);
    this.#closed.add(channel);
  }

  #check(channel: string): void {
    if (typeof channel !== 'string' || channel.length === 0) {
      throw new E2eeError('invalid_channel', 'channel id must be a non-empty string');
    }
    if (Buffer.byteLength(channel, 'utf8') > MAX_CHANNEL_ID_BYTES) {
      throw new E2eeError('invalid_channel', `channel id longer than ${MAX_CHANNEL_ID_BYTES} bytes`);
    }
    if (this.#closed.has(channel)) throw new E2eeError('invalid_channel', `channel ${channel} is closed`);
  }

  #channelKey(directionKey: Uint8Array, channel: string): Uint8Array {
    const info = Buffer.concat([utf8(CHANNEL_INFO), utf8(channel)]);
    return new Uint8Array(hkdfSync('sha256', directionKey, this.handshakeHash, info, 32));
  }
}

/** A session tag as a map key (hex). */
export function sessionTag(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('hex');
}

/** Associated data of a frame: sender, receiver and channel (length-prefixed), then the 64-bit seq. */
function frameAdPrefix(senderId: string, receiverId: string, channel: string): Buffer {
  return lengthPrefixed([senderId, receiverId, channel]);
}

function frameAd(prefix: Buffer, seq: bigint): Buffer {
  const ad = Buffer.alloc(prefix.length + 8);
  prefix.copy(ad);
  ad.writeBigUInt64BE(seq, prefix.length);
  return ad;
}

export class ChannelSealer {
  readonly channel: string;
  #key: Uint8Array | undefined;
  #adPrefix: Buffer;
  #next = 0n;

  constructor(channel: string, key: Uint8Array, adPrefix: Buffer) {
    this.channel = channel;
    this.#key = key;
    this.#adPrefix = adPrefix;
  }

  /** The seq the next sealed frame will carry. */
  get nextSeq(): bigint {
    return this.#next;
  }

  /**
   * Encrypts one frame; send `seq` in the envelope header and `ciphertext` as its payload. A `prefix`
   * (the session tag) starts the same buffer: one copy of the frame instead of two. A plaintext in
   * parts is sealed as their concatenation.
   */
  seal(plaintext: Uint8Array | readonly Uint8Array[], prefix?: Uint8Array): SealedFrame {
    const { seq, parts } = this.sealParts(plaintext, prefix);
    return { seq, ciphertext: Buffer.concat(parts) };
  }

  /** {@link seal} with the ciphertext in parts (see aesGcmSealParts), for an envelope's payload. */
  sealParts(
    plaintext: Uint8Array | readonly Uint8Array[],
    prefix?: Uint8Array,
  ): { seq: bigint; parts: Uint8Array[] } {
    if (this.#key === undefined) throw new E2eeError('invalid_channel', `channel ${this.channel} is closed`);
    if (this.#next >= MAX_NONCE) {
      throw new E2eeError('exhausted', `channel ${this.channel} has used every sequence number`);
    }
    const seq = this.#next;
    const parts = aesGcmSealParts(this.#key, seq, frameAd(this.#adPrefix, seq), plaintext, prefix);
    this.#next += 1n;
    return { seq, parts };
  }

  close(): void {
    this.#key = undefined;
  }
}

export class ChannelOpener {
  readonly channel: string;
  #key: Uint8Array | undefined;
  #adPrefix: Buffer;
  #next = 0n;
  #violation: E2eeError | undefined;

  constructor(channel: string, key: Uint8Array, adPrefix: Buffer) {
    this.channel = channel;
    this.#key = key;
    this.#adPrefix = adPrefix;
  }

  /** The seq the next frame must carry. */
  get nextSeq(): bigint {
    return this.#next;
  }

  /** The violation that poisoned this opener, if any. */
  get violation(): E2eeError | undefined {
    return this.#violation;
  }

  /**
   * Decrypts the next frame. Frames must arrive exactly in order: anything else, or a frame that fails
   * authentication, throws and poisons the opener so that every later call throws too.
   */
  open(seq: bigint | number, ciphertext: Uint8Array): Uint8Array {
    if (this.#violation !== undefined) {
      throw new E2eeError(
        'poisoned',
        `channel ${this.channel} was torn down after an e2ee violation: ${this.#violation.message}`,
        { cause: this.#violation },
      );
    }
    if (this.#key === undefined) throw new E2eeError('invalid_channel', `channel ${this.channel} is closed`);
    const n = typeof seq === 'bigint' ? seq : Number.isSafeInteger(seq) ? BigInt(seq) : -1n;
    if (n < 0n || n >= MAX_NONCE) {
      throw this.#poison('tampered', `frame on channel ${this.channel} has an invalid seq ${String(seq)}`);
    }
    if (n < this.#next) {
      throw this.#poison(
        'replay',
        `replayed frame on channel ${this.channel}: seq ${n} already received (expected ${this.#next})`,
      );
    }
    const plaintext = aesGcmOpen(this.#key, n, frameAd(this.#adPrefix, n), ciphertext);
    // Authenticated first: only a frame the peer really sealed can report frames lost before it (which
    // callers recover from), anything else is tampering.
    if (plaintext !== undefined && n > this.#next) {
      throw this.#poison(
        'gap',
        `frame missing on channel ${this.channel}: got seq ${n}, expected ${this.#next} (dropped or reordered in transit)`,
      );
    }
    if (plaintext === undefined) {
      throw this.#poison(
        'tampered',
        `frame ${n} on channel ${this.channel} failed authentication (altered, truncated, or sealed for another channel or session)`,
      );
    }
    this.#next += 1n;
    return plaintext;
  }

  close(): void {
    this.#key = undefined;
  }

  #poison(code: E2eeErrorCode, message: string): E2eeError {
    this.#violation = new E2eeError(code, message);
    this.#key = undefined;
    return this.#violation;
  }
}
