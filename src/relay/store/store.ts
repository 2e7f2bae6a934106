/**
 * @module The relay's state behind one small interface, so the relay is the same code on one machine
 * (SQLite) and on many (PostgreSQL).
 */

export interface ApiKeyInfo {
  id: string;
  account: string;
  createdAt: Date;
  lastUsedAt: Date | null;
  revokedAt: Date | null;
}

export type AuthResult =
  | { ok: true; keyId: string; account: string }
  | { ok: false; reason: 'malformed' | 'unknown' | 'revoked'; message: string };

export interface Store {
  /** Creates the account when needed and a new key for it; returns the key in clear, the only time. */
  createKey(account: string): Promise<{ id: string; key: string }>;
  listKeys(account?: string): Promise<ApiKeyInfo[]>;
  /** Marks a key revoked; false when no such key exists. */
  revokeKey(id: string): Promise<boolean>;
  /** Checks a presented key and records its use. */
  authenticate(key: string): Promise<AuthResult>;
  /** Ids among `keyIds` that are revoked now; the relay polls this to close revoked streams. */
  revokedAmong(keyIds: string[]): Promise<string[]>;
  close(): Promise<void>;
}
