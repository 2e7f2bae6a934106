/**
 * @module The embedded default {@link Store}: one SQLite file in the relay's data dir.
 */
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import { generateApiKey, parseApiKey, secretMatches } from '../../api-key.js';
import type { ApiKeyInfo, AuthResult, Store } from '../store.js';

const MIGRATIONS = [
  `CREATE TABLE accounts (name TEXT PRIMARY KEY, created_at INTEGER NOT NULL);
   CREATE TABLE api_keys (
     id TEXT PRIMARY KEY,
     account TEXT NOT NULL REFERENCES accounts(name),
     secret_hash BLOB NOT NULL,
     created_at INTEGER NOT NULL,
     last_used_at INTEGER,
     revoked_at INTEGER
   );`,
];

interface KeyRow {
  id: string;
  account: string;
  secret_hash: Buffer;
  created_at: number;
  last_used_at: number | null;
  revoked_at: number | null;
}

const toInfo = (r: KeyRow): ApiKeyInfo => ({
  id: r.id,
  account: r.account,
  createdAt: new Date(r.created_at),
  lastUsedAt: r.last_used_at === null ? null : new Date(r.last_used_at),
  revokedAt: r.revoked_at === null ? null : new Date(r.revoked_at),
});

export class SqliteStore implements Store {
  readonly #db: Database.Database;

  constructor(file: string) {
    mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
    this.#db = new Database(file);
    // WAL lets `nfltr keys` write while a relay holds the file open; the busy timeout covers the overlap.
    this.#db.pragma('journal_mode = WAL');
    this.#db.pragma('busy_timeout = 5000');
    this.#migrate();
  }

  #migrate(): void {
    const version = this.#db.pragma('user_version', { simple: true }) as number;
    for (let v = version; v < MIGRATIONS.length; v++) {
      this.#db.transaction(() => {
        this.#db.exec(MIGRATIONS[v]!);
        this.#db.pragma(`user_version = ${v + 1}`);
      })();
    }
  }

  async createKey(account: string): Promise<{ id: string; key: string }> {
    const k = generateApiKey();
    const now = Date.now();
    this.#db.transaction(() => {
      this.#db.prepare('INSERT OR IGNORE INTO accounts (name, created_at) VALUES (?, ?)').run(account, now);
      this.#db
        .prepare('INSERT INTO api_keys (id, account, secret_hash, created_at) VALUES (?, ?, ?, ?)')
        .run(k.id, account, k.secretHash, now);
    })();
    return { id: k.id, key: k.key };
  }

  async listKeys(account?: string): Promise<ApiKeyInfo[]> {
    const rows = (
      account === undefined
        ? this.#db.prepare('SELECT * FROM api_keys ORDER BY created_at, id').all()
        : this.#db.prepare('SELECT * FROM api_keys WHERE account = ? ORDER BY created_at, id').all(account)
    ) as KeyRow[];
    return rows.map(toInfo);
  }

  async revokeKey(id: string): Promise<boolean> {
    const r = this.#db
      .prepare('UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ?')
      .run(Date.now(), id);
    return r.changes > 0;
  }

  async authenticate(key: string): Promise<AuthResult> {
    const parsed = parseApiKey(key);
    if (!parsed) return { ok: false, reason: 'malformed', message: 'API key is malformed (expected nfk_…)' };
    const row = this.#db.prepare('SELECT * FROM api_keys WHERE id = ?').get(parsed.id) as KeyRow | undefined;
    if (!row || !secretMatches(parsed.secret, row.secret_hash)) {
      return { ok: false, reason: 'unknown', message: 'API key not recognised' };
    }
    if (row.revoked_at !== null) {
      return {
        ok: false,
        reason: 'revoked',
        message: `API key ${row.id} was revoked at ${new Date(row.revoked_at).toISOString()}`,
      };
    }
    this.#db.prepare('UPDATE api_keys SET last_used_at = ? WHERE id = ?').run(Date.now(), row.id);
    return { ok: true, keyId: row.id, account: row.account };
  }

  async revokedAmong(keyIds: string[]): Promise<string[]> {
    if (keyIds.length === 0) return [];
    const rows = this.#db
      .prepare(
        `SELECT id FROM api_keys WHERE revoked_at IS NOT NULL AND id IN (${keyIds.map(() => '?').join(',')})`,
      )
      .all(...keyIds) as { id: string }[];
    return rows.map((r) => r.id);
  }

  async close(): Promise<void> {
    this.#db.close();
  }
}
