/**
 * @module Keys that travel only in a link's fragment (`#k=…`, which browsers never send) and what is
 * derived from them: HKDF-SHA256 subkeys, the access token the relay sees (and cannot turn back into the
 * key), and AES-256-GCM sealing. Shared by `nfltr ai` (./ai-session.ts) and the dashboard
 * (./dashboard.ts); the pages do the same with WebCrypto (assets/common/link-crypto.js). Pure: no I/O.
 */
import { createCipheriv, createDecipheriv, createHash, hkdfSync, randomBytes } from 'node:crypto';

export const LINK_KEY_BYTES = 32;
const TAG_BYTES = 16;

/** A 32-byte subkey of `key` for one purpose (`info`). */
export const hkdf = (key: Uint8Array, salt: Uint8Array, info: string): Buffer =>
  Buffer.from(hkdfSync('sha256', key, salt, info, 32));

export const newLinkKey = (): Buffer => randomBytes(LINK_KEY_BYTES);

/** The token a page presents to the relay for the link key `k`; one-way, so the relay learns nothing of k. */
export const linkToken = (k: Uint8Array, info: string): string =>
  hkdf(k, Buffer.alloc(0), info).toString('base64url');

export const tokenHash = (token: string): string => createHash('sha256').update(token).digest('hex');

/** The key of a link fragment (`k=` base64url), or undefined when it is not 32 bytes. */
export function parseLinkKey(text: string): Buffer | undefined {
  if (!/^[A-Za-z0-9_-]{43}$/.test(text)) return undefined;
  const k = Buffer.from(text, 'base64url');
  return k.byteLength === LINK_KEY_BYTES ? k : undefined;
}

/** AES-256-GCM: ciphertext ‖ tag. The caller owns nonce uniqueness. */
export function gcmSeal(key: Uint8Array, nonce: Uint8Array, aad: Uint8Array, plain: Uint8Array): Buffer {
  const c = createCipheriv('aes-256-gcm', key, nonce);
  c.setAAD(aad);
  return Buffer.concat([c.update(plain), c.final(), c.getAuthTag()]);
}

/** Opens {@link gcmSeal}'s output; undefined when it fails authentication (wrong key, altered, misdirected). */
export function gcmOpen(
  key: Uint8Array,
  nonce: Uint8Array,
  aad: Uint8Array,
  sealed: Uint8Array,
): Buffer | undefined {
  if (sealed.byteLength < TAG_BYTES) return undefined;
  const d = createDecipheriv('aes-256-gcm', key, nonce);
  d.setAAD(aad);
  d.setAuthTag(sealed.subarray(sealed.byteLength - TAG_BYTES));
  try {
    return Buffer.concat([d.update(sealed.subarray(0, sealed.byteLength - TAG_BYTES)), d.final()]);
  } catch {
    return undefined;
  }
}
