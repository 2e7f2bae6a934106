// Noise protocol framework, revision 34, for exactly four two-message patterns:
//   Noise_NN_25519_AESGCM_SHA256      (-> e; <- e, ee)
//   Noise_NNpsk0_25519_AESGCM_SHA256  (-> psk, e; <- e, ee)
//   Noise_IX_25519_AESGCM_SHA256      (-> e, s; <- e, ee, se, s, es)
//   Noise_IXpsk0_25519_AESGCM_SHA256  (-> psk, e, s; <- e, ee, se, s, es)
// nfltr runs IX (each agent has a long-term static key); NN is kept for its published test vectors.
// Pure: node:crypto only, no I/O, no timers. e2ee.ts builds the nfltr session on top of this.
import {
  createCipheriv,
  createDecipheriv,
  createHash,
  createHmac,
  createPrivateKey,
  createPublicKey,
  diffieHellman,
  generateKeyPairSync,
  type KeyObject,
} from 'node:crypto';

export const NOISE_NN = 'Noise_NN_25519_AESGCM_SHA256';
export const NOISE_NNPSK0 = 'Noise_NNpsk0_25519_AESGCM_SHA256';
export const NOISE_IX = 'Noise_IX_25519_AESGCM_SHA256';
export const NOISE_IXPSK0 = 'Noise_IXpsk0_25519_AESGCM_SHA256';
export type NoiseProtocolName = typeof NOISE_NN | typeof NOISE_NNPSK0 | typeof NOISE_IX | typeof NOISE_IXPSK0;

type Token = 'psk' | 'e' | 's' | 'ee' | 'se' | 'es';
/** The tokens of message 1 (initiator) and message 2 (responder), before any psk modifier. */
const PATTERNS: Record<'NN' | 'IX', [Token[], Token[]]> = {
  NN: [['e'], ['e', 'ee']],
  IX: [
    ['e', 's'],
    ['e', 'ee', 'se', 's', 'es'],
  ],
};

const HASHLEN = 32;
const DHLEN = 32;
const KEYLEN = 32;
export const TAGLEN = 16;
/** Noise messages are at most 65535 bytes (spec section 3). */
export const MAX_NOISE_MESSAGE = 65535;
/** 2^64-1 is reserved (spec section 5.1); a counter that reaches it must not be used. */
export const MAX_NONCE = 2n ** 64n - 1n;

export type NoiseFailure = 'decrypt' | 'malformed' | 'dh' | 'state' | 'nonce' | 'too_large';

export class NoiseError extends Error {
  readonly reason: NoiseFailure;
  constructor(reason: NoiseFailure, message: string) {
    super(message);
    this.name = 'NoiseError';
    this.reason = reason;
  }
}

// --- AESGCM cipher functions (spec 12.4): nonce = 32 bits of zeros || 64-bit big-endian counter.

function gcmNonce(n: bigint): Buffer {
  const nonce = Buffer.alloc(12);
  nonce.writeBigUInt64BE(n, 4);
  return nonce;
}

/**
 * AES-256-GCM encryption; returns prefix || ciphertext || 16-byte tag. A plaintext given as parts is
 * encrypted as their concatenation (GCM is a stream cipher), without joining them first.
 */
export const aesGcmSeal = (
  key: Uint8Array,
  n: bigint,
  ad: Uint8Array,
  plaintext: Uint8Array | readonly Uint8Array[],
  /** Bytes put in front of the ciphertext in the same buffer (saves the caller a copy of the frame). */
  prefix?: Uint8Array,
): Buffer => Buffer.concat(aesGcmSealParts(key, n, ad, plaintext, prefix));

/**
 * {@link aesGcmSeal} as parts whose concatenation is its result, for a caller that copies them into a
 * bigger buffer anyway (an envelope frame): the ciphertext is then copied once instead of twice.
 */
export function aesGcmSealParts(
  key: Uint8Array,
  n: bigint,
  ad: Uint8Array,
  plaintext: Uint8Array | readonly Uint8Array[],
  prefix?: Uint8Array,
): Uint8Array[] {
  const cipher = createCipheriv('aes-256-gcm', key, gcmNonce(n), { authTagLength: TAGLEN });
  cipher.setAAD(ad);
  const out: Uint8Array[] = prefix ? [prefix] : [];
  for (const part of plaintext instanceof Uint8Array ? [plaintext] : plaintext) out.push(cipher.update(part));
  out.push(cipher.final(), cipher.getAuthTag());
  return out;
}

/** AES-256-GCM decryption of ciphertext || tag; `undefined` when authentication fails. */
export function aesGcmOpen(
  key: Uint8Array,
  n: bigint,
  ad: Uint8Array,
  ciphertext: Uint8Array,
): Buffer | undefined {
  if (ciphertext.length < TAGLEN) return undefined;
  const body = ciphertext.subarray(0, ciphertext.length - TAGLEN);
  const tag = ciphertext.subarray(ciphertext.length - TAGLEN);
  const decipher = createDecipheriv('aes-256-gcm', key, gcmNonce(n), { authTagLength: TAGLEN });
  decipher.setAAD(ad);
  decipher.setAuthTag(tag);
  try {
    // GCM's final() only checks the tag (it returns no bytes); the plaintext is handed out after it.
    const plaintext = decipher.update(body);
    decipher.final();
    return plaintext;
  } catch {
    return undefined;
  }
}

// --- SHA256 hash functions (spec 12.5) and HKDF (spec 4.3).

function hash(...parts: Uint8Array[]): Buffer {
  const h = createHash('sha256');
  for (const part of parts) h.update(part);
  return h.digest();
}

function hmac(key: Uint8Array, ...parts: Uint8Array[]): Buffer {
  const h = createHmac('sha256', key);
  for (const part of parts) h.update(part);
  return h.digest();
}

function hkdf2(chainingKey: Uint8Array, ikm: Uint8Array): [Buffer, Buffer] {
  const tempKey = hmac(chainingKey, ikm);
  const out1 = hmac(tempKey, Uint8Array.of(1));
  const out2 = hmac(tempKey, out1, Uint8Array.of(2));
  return [out1, out2];
}

function hkdf3(chainingKey: Uint8Array, ikm: Uint8Array): [Buffer, Buffer, Buffer] {
  const tempKey = hmac(chainingKey, ikm);
  const out1 = hmac(tempKey, Uint8Array.of(1));
  const out2 = hmac(tempKey, out1, Uint8Array.of(2));
  const out3 = hmac(tempKey, out2, Uint8Array.of(3));
  return [out1, out2, out3];
}

// --- 25519 DH functions (spec 12.1).

export interface X25519KeyPair {
  privateKey: KeyObject;
  publicKey: Uint8Array;
}

// DER prefix of a PKCS#8 X25519 private key (RFC 8410); the raw 32-byte scalar follows.
const X25519_PKCS8_PREFIX = Buffer.from('302e020100300506032b656e04220420', 'hex');

function rawPublicKey(key: KeyObject): Uint8Array {
  const { x } = key.export({ format: 'jwk' });
  if (typeof x !== 'string') throw new NoiseError('dh', 'X25519 public key export failed');
  return Buffer.from(x, 'base64url');
}

/** The raw 32-byte private scalar, to store a static key (see x25519FromPrivate). */
export function x25519PrivateBytes(keyPair: X25519KeyPair): Uint8Array {
  const { d } = keyPair.privateKey.export({ format: 'jwk' });
  if (typeof d !== 'string') throw new NoiseError('dh', 'X25519 private key export failed');
  return new Uint8Array(Buffer.from(d, 'base64url'));
}

export function generateX25519(): X25519KeyPair {
  const { privateKey, publicKey } = generateKeyPairSync('x25519');
  return { privateKey, publicKey: rawPublicKey(publicKey) };
}

/** A key pair from a raw private scalar: a stored static key, or the test vectors' fixed keys. */
export function x25519FromPrivate(raw: Uint8Array): X25519KeyPair {
  if (raw.length !== DHLEN) throw new NoiseError('dh', `X25519 private key must be ${DHLEN} bytes`);
  const privateKey = createPrivateKey({
    key: Buffer.concat([X25519_PKCS8_PREFIX, raw]),
    format: 'der',
    type: 'pkcs8',
  });
  return { privateKey, publicKey: rawPublicKey(createPublicKey(privateKey)) };
}

function dh(keyPair: X25519KeyPair, remotePublic: Uint8Array): Buffer {
  let shared: Buffer;
  try {
    const publicKey = createPublicKey({
      key: { kty: 'OKP', crv: 'X25519', x: Buffer.from(remotePublic).toString('base64url') },
      format: 'jwk',
    });
    shared = diffieHellman({ privateKey: keyPair.privateKey, publicKey });
  } catch {
    throw new NoiseError('dh', 'peer key is not a usable X25519 public key');
  }
  // A low-order peer point yields all zeros; refuse it rather than derive keys from a constant.
  if (shared.every((b) => b === 0)) throw new NoiseError('dh', 'peer key is a low-order point');
  return shared;
}

// --- CipherState (spec 5.1).

export class NoiseCipherState {
  #key: Uint8Array | undefined;
  #n = 0n;

  constructor(key?: Uint8Array) {
    if (key !== undefined && key.length !== KEYLEN)
      throw new NoiseError('state', 'cipher key must be 32 bytes');
    this.#key = key;
  }

  hasKey(): boolean {
    return this.#key !== undefined;
  }

  copy(): NoiseCipherState {
    const c = new NoiseCipherState(this.#key);
    c.#n = this.#n;
    return c;
  }

  encryptWithAd(ad: Uint8Array, plaintext: Uint8Array): Uint8Array {
    if (this.#key === undefined) return Uint8Array.from(plaintext);
    if (this.#n >= MAX_NONCE) throw new NoiseError('nonce', 'cipher nonce exhausted');
    const ciphertext = aesGcmSeal(this.#key, this.#n, ad, plaintext);
    this.#n += 1n;
    return ciphertext;
  }

  decryptWithAd(ad: Uint8Array, ciphertext: Uint8Array): Uint8Array {
    if (this.#key === undefined) return Uint8Array.from(ciphertext);
    if (this.#n >= MAX_NONCE) throw new NoiseError('nonce', 'cipher nonce exhausted');
    const plaintext = aesGcmOpen(this.#key, this.#n, ad, ciphertext);
    if (plaintext === undefined) throw new NoiseError('decrypt', 'handshake payload failed authentication');
    this.#n += 1n;
    return plaintext;
  }
}

// --- SymmetricState (spec 5.2).

class SymmetricState {
  #ck: Buffer;
  #h: Buffer;
  #cipher = new NoiseCipherState();

  constructor(protocolName: NoiseProtocolName) {
    const name = Buffer.from(protocolName, 'ascii');
    if (name.length <= HASHLEN) {
      this.#h = Buffer.alloc(HASHLEN);
      name.copy(this.#h);
    } else {
      this.#h = hash(name);
    }
    this.#ck = Buffer.from(this.#h);
  }

  get handshakeHash(): Uint8Array {
    return Uint8Array.from(this.#h);
  }

  get hasKey(): boolean {
    return this.#cipher.hasKey();
  }

  /** An independent copy (the buffers are replaced, never written in place, so they are shared). */
  copy(): SymmetricState {
    const c = new SymmetricState(NOISE_NN);
    c.#ck = this.#ck;
    c.#h = this.#h;
    c.#cipher = this.#cipher.copy();
    return c;
  }

  mixKey(ikm: Uint8Array): void {
    const [ck, tempK] = hkdf2(this.#ck, ikm);
    this.#ck = ck;
    this.#cipher = new NoiseCipherState(tempK);
  }

  mixHash(data: Uint8Array): void {
    this.#h = hash(this.#h, data);
  }

  mixKeyAndHash(ikm: Uint8Array): void {
    const [ck, tempH, tempK] = hkdf3(this.#ck, ikm);
    this.#ck = ck;
    this.mixHash(tempH);
    this.#cipher = new NoiseCipherState(tempK);
  }

  encryptAndHash(plaintext: Uint8Array): Uint8Array {
    const ciphertext = this.#cipher.encryptWithAd(this.#h, plaintext);
    this.mixHash(ciphertext);
    return ciphertext;
  }

  decryptAndHash(ciphertext: Uint8Array): Uint8Array {
    const plaintext = this.#cipher.decryptWithAd(this.#h, ciphertext);
    this.mixHash(ciphertext);
    return plaintext;
  }

  split(): [Uint8Array, Uint8Array] {
    return hkdf2(this.#ck, new Uint8Array(0));
  }
}

// --- HandshakeState (spec 5.3) for NN, NNpsk0, IX and IXpsk0.

export interface NoiseHandshakeOptions {
  initiator: boolean;
  prologue: Uint8Array;
  /** 32-byte pre-shared key; its presence adds the psk0 modifier. */
  psk?: Uint8Array;
  /** This end's long-term static key pair; its presence selects IX (both statics exchanged), else NN. */
  s?: X25519KeyPair;
  /** Fixed ephemeral key pair, for test vectors only; a fresh one is generated otherwise. */
  ephemeral?: X25519KeyPair;
}

export interface NoiseSplit {
  /** The first CipherState key of Split(): initiator to responder. */
  initiatorToResponder: Uint8Array;
  /** The second CipherState key of Split(): responder to initiator. */
  responderToInitiator: Uint8Array;
}

export class NoiseHandshake {
  readonly protocolName: NoiseProtocolName;
  readonly initiator: boolean;
  #ss: SymmetricState;
  #messages: [Token[], Token[]];
  #psk: Uint8Array | undefined;
  #s: X25519KeyPair | undefined;
  #e: X25519KeyPair | undefined;
  #re: Uint8Array | undefined;
  #rs: Uint8Array | undefined;
  /** 0: message 1 pending, 1: message 2 pending, 2: finished, -1: failed. */
  #step = 0;

  constructor(opts: NoiseHandshakeOptions) {
    if (opts.psk !== undefined && opts.psk.length !== KEYLEN)
      throw new NoiseError('state', 'psk must be 32 bytes');
    this.initiator = opts.initiator;
    this.#psk = opts.psk === undefined ? undefined : Uint8Array.from(opts.psk);
    this.#s = opts.s;
    this.#e = opts.ephemeral;
    const [m1, m2] = PATTERNS[this.#s === undefined ? 'NN' : 'IX'];
    this.#messages = [this.#psk === undefined ? m1 : ['psk', ...m1], m2];
    const psk = this.#psk !== undefined;
    this.protocolName =
      this.#s === undefined ? (psk ? NOISE_NNPSK0 : NOISE_NN) : psk ? NOISE_IXPSK0 : NOISE_IX;
    this.#ss = new SymmetricState(this.protocolName);
    this.#ss.mixHash(opts.prologue);
  }

  get finished(): boolean {
    return this.#step === 2;
  }

  get handshakeHash(): Uint8Array {
    return this.#ss.handshakeHash;
  }

  /** The peer's static public key (IX), once the message carrying it has been read. */
  get remoteStatic(): Uint8Array | undefined {
    return this.#rs === undefined ? undefined : Uint8Array.from(this.#rs);
  }

  writeMessage(payload: Uint8Array): Uint8Array {
    const mine = this.initiator ? 0 : 1;
    if (this.#step !== mine)
      throw this.#fail(new NoiseError('state', 'handshake message written out of turn'));
    try {
      if (2 * (DHLEN + TAGLEN) + payload.length + TAGLEN > MAX_NOISE_MESSAGE) {
        throw new NoiseError('too_large', `handshake payload too large (${payload.length} bytes)`);
      }
      const out: Uint8Array[] = [];
      for (const token of this.#messages[this.#step] ?? []) {
        if (token === 'e') {
          this.#e ??= generateX25519();
          out.push(this.#e.publicKey);
          this.#mixEphemeral(this.#e.publicKey);
        } else if (token === 's') {
          out.push(this.#ss.encryptAndHash(this.#requireStatic().publicKey));
        } else this.#mixToken(token);
      }
      out.push(this.#ss.encryptAndHash(payload));
      this.#step += 1;
      return Buffer.concat(out);
    } catch (err) {
      throw this.#fail(err);
    }
  }

  /**
   * Reads the peer's message. With `keepOnFailure`, a message that fails leaves this handshake as it
   * was, so that the genuine message can still be read: a replayed or stale one must not spend it.
   */
  readMessage(message: Uint8Array, opts: { keepOnFailure?: boolean } = {}): Uint8Array {
    const theirs = this.initiator ? 1 : 0;
    if (this.#step !== theirs)
      throw this.#fail(new NoiseError('state', 'handshake message read out of turn'));
    const saved = opts.keepOnFailure ? { ss: this.#ss.copy(), re: this.#re, rs: this.#rs } : undefined;
    try {
      if (message.length > MAX_NOISE_MESSAGE)
        throw new NoiseError('malformed', 'handshake message too large');
      let at = 0;
      const take = (n: number): Uint8Array => {
        if (message.length - at < n) throw new NoiseError('malformed', 'handshake message too short');
        at += n;
        return message.subarray(at - n, at);
      };
      for (const token of this.#messages[this.#step] ?? []) {
        if (token === 'e') {
          this.#re = Uint8Array.from(take(DHLEN));
          this.#mixEphemeral(this.#re);
        } else if (token === 's') {
          this.#rs = Uint8Array.from(this.#ss.decryptAndHash(take(DHLEN + (this.#ss.hasKey ? TAGLEN : 0))));
        } else this.#mixToken(token);
      }
      // A payload is at least its tag once a key exists: a shorter message is malformed, not forged.
      if (message.length - at < (this.#ss.hasKey ? TAGLEN : 0))
        throw new NoiseError('malformed', 'handshake message too short');
      const payload = this.#ss.decryptAndHash(message.subarray(at));
      this.#step += 1;
      return payload;
    } catch (err) {
      if (!saved) throw this.#fail(err);
      this.#ss = saved.ss;
      this.#re = saved.re;
      this.#rs = saved.rs;
      throw err instanceof NoiseError ? err : new NoiseError('state', String(err));
    }
  }

  split(): NoiseSplit {
    if (this.#step !== 2) throw new NoiseError('state', 'handshake not finished');
    const [initiatorToResponder, responderToInitiator] = this.#ss.split();
    return { initiatorToResponder, responderToInitiator };
  }

  /** psk and the DH tokens; `se` and `es` name the initiator's key first (spec 7.1). */
  #mixToken(token: Exclude<Token, 'e' | 's'>): void {
    if (token === 'psk') return this.#ss.mixKeyAndHash(this.#psk ?? new Uint8Array(0));
    const e = () => this.#requireLocal();
    const s = () => this.#requireStatic();
    const re = () => this.#requireRemote(this.#re, 'ephemeral');
    const rs = () => this.#requireRemote(this.#rs, 'static');
    if (token === 'ee') this.#ss.mixKey(dh(e(), re()));
    else if (token === 'se') this.#ss.mixKey(this.initiator ? dh(s(), re()) : dh(e(), rs()));
    else this.#ss.mixKey(this.initiator ? dh(e(), rs()) : dh(s(), re()));
  }

  #mixEphemeral(publicKey: Uint8Array): void {
    this.#ss.mixHash(publicKey);
    // Spec 9.2: in a PSK handshake every "e" token is also followed by MixKey(e.public_key).
    if (this.#psk !== undefined) this.#ss.mixKey(publicKey);
  }

  #requireRemote(key: Uint8Array | undefined, what: string): Uint8Array {
    if (key === undefined) throw new NoiseError('state', `no remote ${what} key`);
    return key;
  }

  #requireLocal(): X25519KeyPair {
    if (this.#e === undefined) throw new NoiseError('state', 'no local ephemeral key');
    return this.#e;
  }

  #requireStatic(): X25519KeyPair {
    if (this.#s === undefined) throw new NoiseError('state', 'no local static key');
    return this.#s;
  }

  #fail(err: unknown): NoiseError {
    this.#step = -1;
    this.#e = undefined;
    return err instanceof NoiseError ? err : new NoiseError('state', String(err));
  }
}
