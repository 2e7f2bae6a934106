/**
 * @module API key format. A key reads `nfk_<id>_<secret>`: the id finds the row, the secret (32 random
 * bytes) is stored only as its SHA-256 and compared in constant time. A fast hash is right here: the
 * secret has 256 bits of entropy, so there is nothing for a slow hash to protect.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';

const KEY_RE = /^nfk_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$/;

export interface NewApiKey {
  id: string;
  key: string;
  secretHash: Buffer;
}

export function generateApiKey(): NewApiKey {
  const id = randomBytes(8).toString('hex');
  const secret = randomBytes(32).toString('base64url');
  return { id, key: `nfk_${id}_${secret}`, secretHash: hashSecret(secret) };
}

/** Splits a presented key into id and secret, or returns undefined when it is not shaped like a key. */
export function parseApiKey(key: string): { id: string; secret: string } | undefined {
  const m = KEY_RE.exec(key.trim());
  return m ? { id: m[1]!, secret: m[2]! } : undefined;
}

export const hashSecret = (secret: string): Buffer => createHash('sha256').update(secret).digest();

export function secretMatches(secret: string, storedHash: Buffer): boolean {
  const presented = hashSecret(secret);
  return presented.length === storedHash.length && timingSafeEqual(presented, storedHash);
}
