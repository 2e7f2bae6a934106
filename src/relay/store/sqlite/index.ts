/**
 * @module The embedded default {@link Store}: one SQLite file in the relay's data dir.
 */
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import { generateApiKey, parseApiKey, secretMatches } from '../../api-key.js';
import type {
  ApiKeyInfo,
  AuthResult,
  ClaimResult,
  CommandRecord,
  DigestRecord,
  HeldPresence,
  PresenceClaim,
  PresenceRecord,
  Store,
  StoreClock,
} from '../store.js';
import { LAST_USED_RESOLUTION_MS } from '../store.js';

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
  `CREATE TABLE presence (
     account TEXT NOT NULL,
     agent_id TEXT NOT NULL,
     kind TEXT NOT NULL,
     labels TEXT NOT NULL,
     connected_since INTEGER NOT NULL,
     last_seen INTEGER NOT NULL,
     relay_id TEXT NOT NULL,
     session_hash BLOB NOT NULL,
     epoch INTEGER NOT NULL,
     updated_at INTEGER NOT NULL,
     PRIMARY KEY (account, agent_id)
   );
   CREATE INDEX presence_relay ON presence (relay_id);
   CREATE INDEX presence_updated ON presence (updated_at);
   CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
   INSERT INTO counters (name, value) VALUES ('presence_epoch', 0);`,
  `CREATE TABLE relay_replicas (
     relay_id TEXT PRIMARY KEY,
     revocations INTEGER NOT NULL,
     live_until INTEGER NOT NULL
   );`,
  `CREATE TABLE dashboards (
     account TEXT NOT NULL,
     planner_id TEXT NOT NULL,
     token_sha256 TEXT NOT NULL UNIQUE,
     updated_at INTEGER NOT NULL,
     PRIMARY KEY (account, planner_id)
   );
   CREATE TABLE task_digests (
     account TEXT NOT NULL,
     planner_id TEXT NOT NULL,
     task_id TEXT NOT NULL,
     rev INTEGER NOT NULL,
     updated_at INTEGER NOT NULL,
     sealed TEXT NOT NULL,
     PRIMARY KEY (account, planner_id, task_id)
   );
   CREATE INDEX task_digests_rev ON task_digests (account, rev);
   CREATE TABLE dashboard_commands (
     id INTEGER PRIMARY KEY AUTOINCREMENT,
     account TEXT NOT NULL,
     planner_id TEXT NOT NULL,
     created_at INTEGER NOT NULL,
     sealed TEXT NOT NULL
   );
   CREATE INDEX dashboard_commands_planner ON dashboard_commands (account, planner_id, id);
   INSERT INTO counters (name, value) VALUES ('digest_rev', 0);`,
];

interface KeyRow {
  id: string;
  account: string;
  secret_hash: Buffer;
  created_at: number;
  last_used_at: number | null;
  revoked_at: number | null;
}

interface PresenceRow {
  account: string;
  agent_id: string;
  kind: string;
  labels: string;
  connected_since: number;
  last_seen: number;
  relay_id: string;
  epoch: number;
  updated_at: number;
}

const toPresence = (r: PresenceRow, now: number): PresenceRecord => ({
  account: r.account,
  agentId: r.agent_id,
  kind: r.kind,
  labels: JSON.parse(r.labels) as Record<string, string>,
  connectedSince: new Date(r.connected_since),
  lastSeen: new Date(r.last_seen),
  relayId: r.relay_id,
  epoch: r.epoch,
  ageMs: Math.max(0, now - r.updated_at),
});

const PRESENCE_COLUMNS =
  'account, agent_id, kind, labels, connected_since, last_seen, relay_id, epoch, updated_at';

const toInfo = (r: KeyRow): ApiKeyInfo => ({
  id: r.id,
  account: r.account,
  createdAt: new Date(r.created_at),
  lastUsedAt: r.last_used_at === null ? null : new Date(r.last_used_at),
  revokedAt: r.revoked_at === null ? null : new Date(r.revoked_at),
});

export class SqliteStore implements Store {
  readonly kind = 'sqlite';
  /** The schema version after opening, and the migrations this open applied. */
  readonly schema: { version: number; applied: number[] };
  readonly #db: Database.Database;
  readonly #clock: StoreClock | undefined;
  /** Statements of fixed SQL, compiled once: every agent's connect authenticates (a fleet redials at once). */
  readonly #statements = new Map<string, Database.Statement>();

  constructor(file: string, opts: { clock?: StoreClock } = {}) {
    this.#clock = opts.clock;
    mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
    this.#db = new Database(file);
    // WAL lets `nfltr keys` write while a relay holds the file open; the busy timeout covers the overlap.
    this.#db.pragma('journal_mode = WAL');
    this.#db.pragma('busy_timeout = 5000');
    // WAL with NORMAL stays consistent after a crash and skips an fsync per commit: presence rows are
    // written on every connect, and a fleet reconnecting after a restart must not wait on the disk.
    this.#db.pragma('synchronous = NORMAL');
    this.schema = this.#migrate();
  }

  /** Milliseconds since the epoch by this store's clock. */
  #now(): number {
    return Date.now() + (this.#clock?.offsetMs ?? 0);
  }

  #prepared(sql: string): Database.Statement {
    let st = this.#statements.get(sql);
    if (!st) {
      st = this.#db.prepare(sql);
      this.#statements.set(sql, st);
    }
    return st;
  }

  /** SQLite keeps its schema version in `user_version`; migration N brings it to N. */
  #migrate(): { version: number; applied: number[] } {
    const version = this.#db.pragma('user_version', { simple: true }) as number;
    if (version > MIGRATIONS.length) {
      throw new Error(
        `the relay database is at schema version ${version}, newer than this nfltr knows (${MIGRATIONS.length}): upgrade nfltr`,
      );
    }
    const applied: number[] = [];
    for (let v = version; v < MIGRATIONS.length; v++) {
      this.#db.transaction(() => {
        this.#db.exec(MIGRATIONS[v]!);
        this.#db.pragma(`user_version = ${v + 1}`);
      })();
      applied.push(v + 1);
    }
    return { version: MIGRATIONS.length, applied };
  }

  async createKey(account: string): Promise<{ id: string; key: string }> {
    const k = generateApiKey();
    const now = this.#now();
    this.#db.transaction(() => {
      this.#prepared('INSERT OR IGNORE INTO accounts (name, created_at) VALUES (?, ?)').run(account, now);
      this.#prepared('INSERT INTO api_keys (id, account, secret_hash, created_at) VALUES (?, ?, ?, ?)').run(
        k.id,
        account,
        k.secretHash,
        now,
      );
    })();
    return { id: k.id, key: k.key };
  }

  async listKeys(account?: string): Promise<ApiKeyInfo[]> {
    const rows = (
      account === undefined
        ? this.#prepared('SELECT * FROM api_keys ORDER BY created_at, id').all()
        : this.#prepared('SELECT * FROM api_keys WHERE account = ? ORDER BY created_at, id').all(account)
    ) as KeyRow[];
    return rows.map(toInfo);
  }

  async revokeKey(id: string): Promise<boolean> {
    const r = this.#prepared('UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ?').run(
      this.#now(),
      id,
    );
    return r.changes > 0;
  }

  async authenticate(key: string): Promise<AuthResult> {
    const parsed = parseApiKey(key);
    if (!parsed) return { ok: false, reason: 'malformed', message: 'API key is malformed (expected nfk_…)' };
    const row = this.#prepared('SELECT * FROM api_keys WHERE id = ?').get(parsed.id) as KeyRow | undefined;
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
    const now = this.#now();
    // "Last used" to the minute: a fleet redialling after a restart must not queue a write per agent.
    if (row.last_used_at === null || now - row.last_used_at > LAST_USED_RESOLUTION_MS) {
      this.#prepared('UPDATE api_keys SET last_used_at = ? WHERE id = ?').run(now, row.id);
    }
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

  async revocationCount(): Promise<number> {
    return (
      this.#prepared('SELECT count(*) AS n FROM api_keys WHERE revoked_at IS NOT NULL').get() as {
        n: number;
      }
    ).n;
  }

  async confirmRevocations(relayId: string, revocations: number, liveMs: number): Promise<void> {
    this.#prepared(
      `INSERT INTO relay_replicas (relay_id, revocations, live_until) VALUES (?, ?, ?)
         ON CONFLICT (relay_id) DO UPDATE SET revocations = excluded.revocations, live_until = excluded.live_until`,
    ).run(relayId, revocations, this.#now() + liveMs);
  }

  async unconfirmedReplicas(revocations: number): Promise<string[]> {
    const rows = this.#prepared(
      'SELECT relay_id FROM relay_replicas WHERE revocations < ? AND live_until >= ? ORDER BY relay_id',
    ).all(revocations, this.#now()) as { relay_id: string }[];
    return rows.map((r) => r.relay_id);
  }

  async forgetReplicas(relayId?: string): Promise<void> {
    if (relayId === undefined) this.#prepared('DELETE FROM relay_replicas').run();
    else this.#prepared('DELETE FROM relay_replicas WHERE relay_id = ?').run(relayId);
  }

  async claimPresence(claim: PresenceClaim, ttlMs: number): Promise<ClaimResult> {
    const now = this.#now();
    return this.#db.transaction((): ClaimResult => {
      const row = this.#prepared(
        `SELECT ${PRESENCE_COLUMNS}, session_hash FROM presence WHERE account = ? AND agent_id = ?`,
      ).get(claim.account, claim.agentId) as (PresenceRow & { session_hash: Buffer }) | undefined;
      if (row && now - row.updated_at <= ttlMs && !row.session_hash.equals(claim.sessionHash)) {
        return { ok: false, holder: toPresence(row, now) };
      }
      const { value: epoch } = this.#prepared(
        `UPDATE counters SET value = value + 1 WHERE name = 'presence_epoch' RETURNING value`,
      ).get() as { value: number };
      this.#prepared(
        `INSERT OR REPLACE INTO presence (${PRESENCE_COLUMNS}, session_hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      ).run(
        claim.account,
        claim.agentId,
        claim.kind,
        JSON.stringify(claim.labels),
        claim.connectedSince.getTime(),
        now,
        claim.relayId,
        epoch,
        now,
        claim.sessionHash,
      );
      return { ok: true, epoch };
    })();
  }

  async heartbeatPresence(
    relayId: string,
    labels: { account: string; agentId: string; epoch: number; labels: Record<string, string> }[],
  ): Promise<HeldPresence[]> {
    const now = this.#now();
    return this.#db.transaction(() => {
      const setLabels = this.#prepared(
        'UPDATE presence SET labels = ? WHERE account = ? AND agent_id = ? AND epoch = ? AND relay_id = ?',
      );
      for (const l of labels) setLabels.run(JSON.stringify(l.labels), l.account, l.agentId, l.epoch, relayId);
      this.#prepared('UPDATE presence SET updated_at = ?, last_seen = ? WHERE relay_id = ?').run(
        now,
        now,
        relayId,
      );
      const rows = this.#prepared('SELECT account, agent_id, epoch FROM presence WHERE relay_id = ?').all(
        relayId,
      ) as { account: string; agent_id: string; epoch: number }[];
      return rows.map((r) => ({ account: r.account, agentId: r.agent_id, epoch: r.epoch }));
    })();
  }

  async releasePresence(account: string, agentId: string, epoch: number): Promise<void> {
    this.#prepared('DELETE FROM presence WHERE account = ? AND agent_id = ? AND epoch = ?').run(
      account,
      agentId,
      epoch,
    );
  }

  async listPresence(opts: { ttlMs: number; account?: string }): Promise<PresenceRecord[]> {
    const now = this.#now();
    const rows = (
      opts.account === undefined
        ? this.#prepared(`SELECT ${PRESENCE_COLUMNS} FROM presence WHERE updated_at >= ? ORDER BY epoch`).all(
            now - opts.ttlMs,
          )
        : this.#prepared(
            `SELECT ${PRESENCE_COLUMNS} FROM presence WHERE updated_at >= ? AND account = ? ORDER BY epoch`,
          ).all(now - opts.ttlMs, opts.account)
    ) as PresenceRow[];
    return rows.map((r) => toPresence(r, now));
  }

  async expirePresence(ttlMs: number): Promise<PresenceRecord[]> {
    const now = this.#now();
    const cutoff = ttlMs <= 0 ? Number.MAX_SAFE_INTEGER : now - ttlMs;
    const rows = this.#prepared(
      `DELETE FROM presence WHERE updated_at < ? RETURNING ${PRESENCE_COLUMNS}`,
    ).all(cutoff) as PresenceRow[];
    return rows.map((r) => toPresence(r, now)).sort((a, b) => a.epoch - b.epoch);
  }

  async registerDashboard(account: string, plannerId: string, tokenSha256: string): Promise<void> {
    this.#db.transaction(() => {
      // A token moves with its key: one row per token, one token per planner.
      this.#prepared('DELETE FROM dashboards WHERE token_sha256 = ?').run(tokenSha256);
      this.#prepared(
        `INSERT INTO dashboards (account, planner_id, token_sha256, updated_at) VALUES (?, ?, ?, ?)
           ON CONFLICT (account, planner_id) DO UPDATE SET token_sha256 = excluded.token_sha256, updated_at = excluded.updated_at`,
      ).run(account, plannerId, tokenSha256, Date.now());
    })();
  }

  async dashboardOfToken(tokenSha256: string): Promise<{ account: string; plannerId: string } | undefined> {
    const row = this.#prepared('SELECT account, planner_id FROM dashboards WHERE token_sha256 = ?').get(
      tokenSha256,
    ) as { account: string; planner_id: string } | undefined;
    return row && { account: row.account, plannerId: row.planner_id };
  }

  async putDigests(
    account: string,
    plannerId: string,
    digests: { taskId: string; sealed: string }[],
    keep: number,
  ): Promise<number> {
    const now = Date.now();
    return this.#db.transaction(() => {
      let rev = 0;
      const next = this.#prepared(
        `UPDATE counters SET value = value + 1 WHERE name = 'digest_rev' RETURNING value`,
      );
      const put = this.#prepared(
        `INSERT OR REPLACE INTO task_digests (account, planner_id, task_id, rev, updated_at, sealed)
         VALUES (?, ?, ?, ?, ?, ?)`,
      );
      for (const d of digests) {
        rev = (next.get() as { value: number }).value;
        put.run(account, plannerId, d.taskId, rev, now, d.sealed);
      }
      this.#prepared(
        `DELETE FROM task_digests WHERE account = ? AND planner_id = ? AND rev NOT IN
             (SELECT rev FROM task_digests WHERE account = ? AND planner_id = ? ORDER BY rev DESC LIMIT ?)`,
      ).run(account, plannerId, account, plannerId, keep);
      return rev;
    })();
  }

  async listDigests(
    account: string,
    opts: { plannerId?: string; afterRev?: number; limit: number },
  ): Promise<DigestRecord[]> {
    const rows = this.#prepared(
      `SELECT planner_id, task_id, rev, updated_at, sealed FROM task_digests
         WHERE account = ? AND rev > ? AND (? IS NULL OR planner_id = ?) ORDER BY rev LIMIT ?`,
    ).all(account, opts.afterRev ?? 0, opts.plannerId ?? null, opts.plannerId ?? null, opts.limit) as {
      planner_id: string;
      task_id: string;
      rev: number;
      updated_at: number;
      sealed: string;
    }[];
    return rows.map((r) => ({
      plannerId: r.planner_id,
      taskId: r.task_id,
      rev: r.rev,
      updatedAt: new Date(r.updated_at),
      sealed: r.sealed,
    }));
  }

  async queueCommand(
    account: string,
    plannerId: string,
    sealed: string,
    maxPending: number,
  ): Promise<{ ok: true; id: number } | { ok: false; pending: number }> {
    return this.#db.transaction(() => {
      const { n } = this.#prepared(
        'SELECT count(*) AS n FROM dashboard_commands WHERE account = ? AND planner_id = ?',
      ).get(account, plannerId) as { n: number };
      if (n >= maxPending) return { ok: false as const, pending: n };
      const r = this.#prepared(
        'INSERT INTO dashboard_commands (account, planner_id, created_at, sealed) VALUES (?, ?, ?, ?)',
      ).run(account, plannerId, Date.now(), sealed);
      return { ok: true as const, id: Number(r.lastInsertRowid) };
    })();
  }

  async pendingCommands(account: string, plannerId: string, limit: number): Promise<CommandRecord[]> {
    const rows = this.#prepared(
      `SELECT id, planner_id, created_at, sealed FROM dashboard_commands
         WHERE account = ? AND planner_id = ? ORDER BY id LIMIT ?`,
    ).all(account, plannerId, limit) as {
      id: number;
      planner_id: string;
      created_at: number;
      sealed: string;
    }[];
    return rows.map((r) => ({
      id: r.id,
      plannerId: r.planner_id,
      createdAt: new Date(r.created_at),
      sealed: r.sealed,
    }));
  }

  async ackCommands(account: string, plannerId: string, ids: number[]): Promise<number> {
    if (ids.length === 0) return 0;
    return this.#db
      .prepare(
        `DELETE FROM dashboard_commands WHERE account = ? AND planner_id = ? AND id IN (${ids.map(() => '?').join(',')})`,
      )
      .run(account, plannerId, ...ids).changes;
  }

  async close(): Promise<void> {
    this.#db.close();
  }
}
