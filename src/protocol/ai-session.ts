/**
 * @module `nfltr ai` wire format: one terminal session mirrored to browsers through the relay, sealed
 * end to end with a session key that travels only in the share link's fragment (`#k=…`).
 *
 * Protocol flow. The agent (`nfltr ai`) registers the session with the relay (channel {@link AI_CHANNEL},
 * kind `register`, to `relay`): the SHA-256 of the link's access token, the expiry and read-only flag,
 * nothing secret. A browser opens `/ai/<agent_id>/ws?t=<access token>`; the relay checks the token's hash,
 * names the viewer (`v1`, `v2`, …) and forwards: viewer bytes reach the agent as envelopes kind `frame`
 * from that viewer id (plus `join` / `leave`); the agent's frames to `viewers` go to every viewer, to a
 * viewer id to that one. The relay reads only the envelope header; every frame is sealed:
 *
 *   agent → viewer:  ctr(8, big endian) ‖ AES-256-GCM(k_a2v, nonce 0⁴‖ctr, aad "nfltr-ai/1 a2v <agent_id>")
 *   viewer → agent:  salt(16) ‖ ctr(8) ‖ AES-256-GCM(k_v2a(salt), nonce 0⁴‖ctr, aad "nfltr-ai/1 v2a <agent_id>")
 *
 * k_a2v = HKDF-SHA256(k, "", "nfltr-ai a2v"); k_v2a(salt) = HKDF-SHA256(k, salt, "nfltr-ai v2a"), a key per
 * page load so viewers never share a nonce space; token = HKDF-SHA256(k, "", "nfltr-ai access"), which the
 * relay sees and cannot turn back into k. Counters only grow (a replayed or reordered frame is refused).
 * The page (assets/ai/page.js) implements the same with WebCrypto. Pure: no I/O. The primitives are
 * ./link-crypto.ts, shared with the dashboard.
 */
import { randomBytes } from 'node:crypto';
import { gcmOpen, gcmSeal, hkdf, LINK_KEY_BYTES, linkToken, newLinkKey } from './link-crypto.js';

export { tokenHash } from './link-crypto.js';

export const AI_CHANNEL = 'nfltr.ai/1';
/** The relay's own address for `register` envelopes, and the broadcast address of a session's viewers. */
export const AI_RELAY_ADDRESS = 'relay';
export const AI_VIEWERS_ADDRESS = 'viewers';
export const AI_KEY_BYTES = LINK_KEY_BYTES;
export const AI_SALT_BYTES = 16;
/** Largest frame either way; the relay refuses bigger WebSocket messages. */
export const AI_MAX_FRAME_BYTES = 64 * 1024;

/** Envelope kinds on {@link AI_CHANNEL}. */
export type AiEnvelopeKind = 'register' | 'frame' | 'join' | 'leave' | 'revoked' | 'end';

/** Agent → viewer message types (first plaintext byte). */
export const A2V = { output: 0x01, state: 0x02, reset: 0x03, exit: 0x04 } as const;
/** Viewer → agent message types. */
export const V2A = { hello: 0x11, input: 0x12, resize: 0x13, takeControl: 0x14 } as const;

/** What the relay keeps of a session: no secret, only what checks a link. */
export interface AiRegistration {
  /** Hex SHA-256 of the access token. */
  token_sha256: string;
  /** Epoch ms after which the link is refused. */
  expires_at: number;
  read_only: boolean;
}

export const newSessionKey = newLinkKey;

/** The token the page presents to the relay; derived, so the link carries only k. */
export const accessToken = (k: Uint8Array): string => linkToken(k, 'nfltr-ai access');

/** The share link: the key rides in the fragment, which browsers never send to the relay. */
export const shareLink = (relayUrl: string, agentId: string, k: Uint8Array): string =>
  `${relayUrl.replace(/\/+$/, '')}/ai/${encodeURIComponent(agentId)}#k=${Buffer.from(k).toString('base64url')}`;

export class AiCryptoError extends Error {
  constructor(
    readonly code: 'short' | 'tampered' | 'replay' | 'salt_changed',
    message: string,
  ) {
    super(message);
    this.name = 'AiCryptoError';
  }
}

const nonceOf = (ctr: bigint) => {
  const n = Buffer.alloc(12);
  n.writeBigUInt64BE(ctr, 4);
  return n;
};

function seal(key: Buffer, aad: Buffer, ctr: bigint, plain: Uint8Array): Buffer {
  const body = gcmSeal(key, nonceOf(ctr), aad, plain);
  const head = Buffer.alloc(8);
  head.writeBigUInt64BE(ctr);
  return Buffer.concat([head, body]);
}

function open(key: Buffer, aad: Buffer, ctr: bigint, sealed: Uint8Array): Buffer {
  if (sealed.byteLength < 16) throw new AiCryptoError('short', 'frame shorter than its tag');
  const plain = gcmOpen(key, nonceOf(ctr), aad, sealed);
  if (!plain)
    throw new AiCryptoError('tampered', 'frame failed authentication (wrong key, altered or misdirected)');
  return plain;
}

/** The agent's end: one sealer towards all viewers, one opener per viewer (salt). */
export class AiAgentCrypto {
  readonly #k: Buffer;
  readonly #a2v: Buffer;
  readonly #aadOut: Buffer;
  readonly #aadIn: Buffer;
  #ctr = 0n;
  /** Per relay viewer id: its salt, key and last counter. */
  readonly #viewers = new Map<string, { salt: string; key: Buffer; last: bigint }>();

  constructor(k: Uint8Array, agentId: string) {
    this.#k = Buffer.from(k);
    this.#a2v = hkdf(k, Buffer.alloc(0), 'nfltr-ai a2v');
    this.#aadOut = Buffer.from(`nfltr-ai/1 a2v ${agentId}`);
    this.#aadIn = Buffer.from(`nfltr-ai/1 v2a ${agentId}`);
  }

  /** Seals one message for viewers; every call takes a fresh counter, so a nonce is never reused. */
  seal(type: number, body: Uint8Array = Buffer.alloc(0)): Buffer {
    return seal(this.#a2v, this.#aadOut, this.#ctr++, Buffer.concat([Buffer.of(type), body]));
  }

  /** Opens a viewer's frame: returns its type and body, or throws {@link AiCryptoError}. */
  open(viewer: string, frame: Uint8Array): { type: number; body: Buffer } {
    if (frame.byteLength < AI_SALT_BYTES + 8 + 17) throw new AiCryptoError('short', 'viewer frame too short');
    const salt = Buffer.from(frame.subarray(0, AI_SALT_BYTES));
    const ctr = Buffer.from(frame.subarray(AI_SALT_BYTES, AI_SALT_BYTES + 8)).readBigUInt64BE();
    let v = this.#viewers.get(viewer);
    if (v && v.salt !== salt.toString('hex'))
      throw new AiCryptoError('salt_changed', 'viewer changed its key salt');
    const key = v?.key ?? hkdf(this.#k, salt, 'nfltr-ai v2a');
    if (v && ctr <= v.last) throw new AiCryptoError('replay', `counter ${ctr} already used`);
    const plain = open(key, this.#aadIn, ctr, frame.subarray(AI_SALT_BYTES + 8));
    if (!v) {
      v = { salt: salt.toString('hex'), key, last: ctr };
      this.#viewers.set(viewer, v);
    }
    v.last = ctr;
    return { type: plain[0] ?? 0, body: plain.subarray(1) };
  }

  forget(viewer: string): void {
    this.#viewers.delete(viewer);
  }
}

/** The viewer's end in Node (the page does the same with WebCrypto); used by tests and tools. */
export class AiViewerCrypto {
  readonly #salt = randomBytes(AI_SALT_BYTES);
  readonly #v2a: Buffer;
  readonly #a2v: Buffer;
  readonly #aadOut: Buffer;
  readonly #aadIn: Buffer;
  #ctr = 0n;
  #last = -1n;

  constructor(k: Uint8Array, agentId: string) {
    this.#v2a = hkdf(k, this.#salt, 'nfltr-ai v2a');
    this.#a2v = hkdf(k, Buffer.alloc(0), 'nfltr-ai a2v');
    this.#aadOut = Buffer.from(`nfltr-ai/1 v2a ${agentId}`);
    this.#aadIn = Buffer.from(`nfltr-ai/1 a2v ${agentId}`);
  }

  seal(type: number, body: Uint8Array = Buffer.alloc(0)): Buffer {
    const sealed = seal(this.#v2a, this.#aadOut, this.#ctr++, Buffer.concat([Buffer.of(type), body]));
    return Buffer.concat([this.#salt, sealed]);
  }

  open(frame: Uint8Array): { type: number; body: Buffer } {
    if (frame.byteLength < 8 + 17) throw new AiCryptoError('short', 'agent frame too short');
    const ctr = Buffer.from(frame.subarray(0, 8)).readBigUInt64BE();
    if (ctr <= this.#last) throw new AiCryptoError('replay', `counter ${ctr} already used`);
    const plain = open(this.#a2v, this.#aadIn, ctr, frame.subarray(8));
    this.#last = ctr;
    return { type: plain[0] ?? 0, body: plain.subarray(1) };
  }
}
