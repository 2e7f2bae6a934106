/**
 * @module The shared {@link Store}: PostgreSQL, for several relay replicas behind one address. The
 * relay creates and migrates its schema itself ({@link migratePostgres}), under an advisory lock so
 * replicas starting together migrate once.
 */

import pg from 'pg';
import { generateApiKey, parseApiKey, secretMatches } from '../../api-key.js';
import { redactUrl } from '../redact.js';
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
import { MIGRATIONS } from './migrations.js';

/** Arbitrary, fixed: the advisory lock every nfltr relay takes while migrating. */
const MIGRATION_LOCK = 0x6e666c74;

/** Applies pending migrations; returns the versions applied now and the schema version after. */
export async function migratePostgres(pool: pg.Pool): Promise<{ applied: number[]; version: number }> {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    await client.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK]);
    const { rows: schemaRows } = await client.query<{ schema: string | null; path: string }>(
      `SELECT current_schema() AS schema, current_setting('search_path') AS path`,
    );
    if (!schemaRows[0]?.schema) {
      // The search_path names a schema that does not exist yet: create the first one it names.
      const first = schemaRows[0]?.path.split(',')[0]?.trim().replace(/^"|"$/g, '');
      if (!first || first === '$user') throw new Error('the search_path names no schema to create tables in');
      await client.query(`CREATE SCHEMA IF NOT EXISTS ${pg.escapeIdentifier(first)}`);
    }
    await client.query(
      `CREATE TABLE IF NOT EXISTS nfltr_migrations (
         version INTEGER PRIMARY KEY,
         name TEXT NOT NULL,
         applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
       )`,
    );
    const { rows } = await client.query<{ v: number | null }>(
      'SELECT max(version) AS v FROM nfltr_migrations',
    );
    const current = rows[0]?.v ?? 0;
    const latest = MIGRATIONS[MIGRATIONS.length - 1]!.version;
    if (current > latest) {
      throw new Error(
        `the database schema is at version ${current}, newer than this nfltr knows (${latest}): upgrade nfltr`,
      );
    }
    const applied: number[] = [];
    for (const m of MIGRATIONS) {
      if (m.version <= current) continue;
      await client.query(m.sql);
      await client.query('INSERT INTO nfltr_migrations (version, name) VALUES ($1, $2)', [m.version, m.name]);
      applied.push(m.version);
    }
    await client.query('COMMIT');
    return { applied, version: Math.max(current, ...applied) };
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {});
    throw err;
  } finally {
    client.release();
  }
}

interface KeyRow {
  id: string;
  account: string;
  secret_hash: Buffer;
  created_at: Date;
  last_used_at: Date | null;
  revoked_at: Date | null;
}

interface PresenceRow {
  account: string;
  agent_id: string;
  kind: string;
  labels: Record<string, string>;
  connected_since: Date;
  last_seen: Date;
  relay_id: string;
  epoch: string;
  age_ms: number;
}

/** The presence columns and the row's age, `now` being the store's time (an SQL expression). */
const presenceSelect = (
  now: string,
) => `account, agent_id, kind, labels, connected_since, last_seen, relay_id, epoch,
  (extract(epoch FROM ${now} - updated_at) * 1000)::float8 AS age_ms`;

/** `updated_at` older than this many milliseconds (parameter `$n`) is stale. */
const staleBefore = (n: number, now: string) => `${now} - make_interval(secs => $${n}::float8 / 1000)`;

const toPresence = (r: PresenceRow): PresenceRecord => ({
  account: r.account,
  agentId: r.agent_id,
  kind: r.kind,
  labels: r.labels,
  connectedSince: r.connected_since,
  lastSeen: r.last_seen,
  relayId: r.relay_id,
  epoch: Number(r.epoch),
  ageMs: Math.max(0, r.age_ms),
});

export class PostgresStore implements Store {
  readonly kind = 'postgres';
  /** The schema version after opening, and the migrations this open applied. */
  readonly schema: { version: number; applied: number[] };
  readonly #pool: pg.Pool;
  readonly #clock: StoreClock | undefined;

  private constructor(pool: pg.Pool, schema: { version: number; applied: number[] }, clock?: StoreClock) {
    this.#pool = pool;
    this.schema = schema;
    this.#clock = clock;
  }

  /** The server's `now()`, moved by the clock when there is one (a number of our own, never input). */
  #now(): string {
    const offset = this.#clock?.offsetMs ?? 0;
    return offset === 0 ? 'now()' : `(now() + interval '${Number(offset)} milliseconds')`;
  }

  /** Connects, migrates unless told not to, and returns the store; errors name the URL (without password). */
  static async open(
    url: string,
    opts: { migrate?: boolean; clock?: StoreClock } = {},
  ): Promise<PostgresStore> {
    const pool = new pg.Pool({ connectionString: url, max: 8, connectionTimeoutMillis: 5_000 });
    // An idle client losing its server must not take the relay down; the next query reconnects.
    pool.on('error', () => {});
    try {
      await pool.query('SELECT 1');
      const schema =
        opts.migrate !== false
          ? await migratePostgres(pool)
          : {
              applied: [],
              version:
                (await pool.query<{ v: number }>('SELECT max(version) AS v FROM nfltr_migrations')).rows[0]
                  ?.v ?? 0,
            };
      return new PostgresStore(pool, schema, opts.clock);
    } catch (err) {
      await pool.end().catch(() => {});
      throw new Error(`--store ${redactUrl(url)}: ${(err as Error).message}`);
    }
  }

  /** The pool, for `nfltr relay migrate` and tests. */
  get pool(): pg.Pool {
    return this.#pool;
  }

  async createKey(account: string): Promise<{ id: string; key: string }> {
    const k = generateApiKey();
    const client = await this.#pool.connect();
    try {
      await client.query('BEGIN');
      await client.query('INSERT INTO accounts (name) VALUES ($1) ON CONFLICT DO NOTHING', [account]);
      await client.query('INSERT INTO api_keys (id, account, secret_hash) VALUES ($1, $2, $3)', [
        k.id,
        account,
        k.secretHash,
      ]);
      await client.query('COMMIT');
    } catch (err) {
      await client.query('ROLLBACK').catch(() => {});
      throw err;
    } finally {
      client.release();
    }
    return { id: k.id, key: k.key };
  }

  async listKeys(account?: string): Promise<ApiKeyInfo[]> {
    const { rows } =
      account === undefined
        ? await this.#pool.query<KeyRow>('SELECT * FROM api_keys ORDER BY created_at, id')
        : await this.#pool.query<KeyRow>(
            'SELECT * FROM api_keys WHERE account = $1 ORDER BY created_at, id',
            [account],
          );
    return rows.map((r) => ({
      id: r.id,
      account: r.account,
      createdAt: r.created_at,
      lastUsedAt: r.last_used_at,
      revokedAt: r.revoked_at,
    }));
  }

  async revokeKey(id: string): Promise<boolean> {
    const r = await this.#pool.query(
      `UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ${this.#now()}) WHERE id = $1`,
      [id],
    );
    return (r.rowCount ?? 0) > 0;
  }

  async authenticate(key: string): Promise<AuthResult> {
    const parsed = parseApiKey(key);
    if (!parsed) return { ok: false, reason: 'malformed', message: 'API key is malformed (expected nfk_…)' };
    const { rows } = await this.#pool.query<KeyRow>('SELECT * FROM api_keys WHERE id = $1', [parsed.id]);
    const row = rows[0];
    if (!row || !secretMatches(parsed.secret, row.secret_hash)) {
      return { ok: false, reason: 'unknown', message: 'API key not recognised' };
    }
    if (row.revoked_at !== null) {
      return {
        ok: false,
        reason: 'revoked',
        message: `API key ${row.id} was revoked at ${row.revoked_at.toISOString()}`,
      };
    }
    if (row.last_used_at === null || Date.now() - row.last_used_at.getTime() > LAST_USED_RESOLUTION_MS) {
      await this.#pool.query(`UPDATE api_keys SET last_used_at = ${this.#now()} WHERE id = $1`, [row.id]);
    }
    return { ok: true, keyId: row.id, account: row.account };
  }

  async revokedAmong(keyIds: string[]): Promise<string[]> {
    if (keyIds.length === 0) return [];
    const { rows } = await this.#pool.query<{ id: string }>(
      'SELECT id FROM api_keys WHERE revoked_at IS NOT NULL AND id = ANY($1::text[])',
      [keyIds],
    );
    return rows.map((r) => r.id);
  }

  async revocationCount(): Promise<number> {
    const { rows } = await this.#pool.query<{ n: string }>(
      'SELECT count(*) AS n FROM api_keys WHERE revoked_at IS NOT NULL',
    );
    return Number(rows[0]!.n);
  }

  async confirmRevocations(relayId: string, revocations: number, liveMs: number): Promise<void> {
    await this.#pool.query(
      `INSERT INTO relay_replicas (relay_id, revocations, live_until)
       VALUES ($1, $2, ${this.#now()} + make_interval(secs => $3::float8 / 1000))
       ON CONFLICT (relay_id) DO UPDATE SET revocations = EXCLUDED.revocations, live_until = EXCLUDED.live_until`,
      [relayId, revocations, liveMs],
    );
  }

  async unconfirmedReplicas(revocations: number): Promise<string[]> {
    const { rows } = await this.#pool.query<{ relay_id: string }>(
      `SELECT relay_id FROM relay_replicas WHERE revocations < $1 AND live_until >= ${this.#now()} ORDER BY relay_id`,
      [revocations],
    );
    return rows.map((r) => r.relay_id);
  }

  async forgetReplicas(relayId?: string): Promise<void> {
    if (relayId === undefined) await this.#pool.query('DELETE FROM relay_replicas');
    else await this.#pool.query('DELETE FROM relay_replicas WHERE relay_id = $1', [relayId]);
  }

  async claimPresence(claim: PresenceClaim, ttlMs: number): Promise<ClaimResult> {
    // The upsert takes the row lock, so two replicas claiming one id at once are serialised and the
    // loser re-checks its condition against the winner's row.
    for (let attempt = 0; ; attempt++) {
      const { rows } = await this.#pool.query<{ epoch: string }>(
        `INSERT INTO presence AS p (account, agent_id, kind, labels, connected_since, last_seen, relay_id,
           session_hash, epoch, updated_at)
         VALUES ($1, $2, $3, $4::jsonb, $5, ${this.#now()}, $6, $7, nextval('presence_epoch'), ${this.#now()})
         ON CONFLICT (account, agent_id) DO UPDATE SET kind = EXCLUDED.kind, labels = EXCLUDED.labels,
           connected_since = EXCLUDED.connected_since, last_seen = EXCLUDED.last_seen,
           relay_id = EXCLUDED.relay_id, session_hash = EXCLUDED.session_hash, epoch = EXCLUDED.epoch,
           updated_at = EXCLUDED.updated_at
         WHERE p.session_hash = EXCLUDED.session_hash OR p.updated_at < ${staleBefore(8, this.#now())}
         RETURNING epoch`,
        [
          claim.account,
          claim.agentId,
          claim.kind,
          JSON.stringify(claim.labels),
          claim.connectedSince,
          claim.relayId,
          claim.sessionHash,
          ttlMs,
        ],
      );
      if (rows[0]) return { ok: true, epoch: Number(rows[0].epoch) };
      const holder = await this.#pool.query<PresenceRow>(
        `SELECT ${presenceSelect(this.#now())} FROM presence WHERE account = $1 AND agent_id = $2`,
        [claim.account, claim.agentId],
      );
      if (holder.rows[0]) return { ok: false, holder: toPresence(holder.rows[0]) };
      // The holder left between the two statements: claim again.
      if (attempt >= 2) throw new Error(`presence claim for ${claim.agentId} kept racing; retry`);
    }
  }

  async heartbeatPresence(
    relayId: string,
    labels: { account: string; agentId: string; epoch: number; labels: Record<string, string> }[],
  ): Promise<HeldPresence[]> {
    if (labels.length > 0) {
      await this.#pool.query(
        `UPDATE presence p SET labels = u.labels::jsonb
         FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[]) AS u(account, agent_id, epoch, labels)
         WHERE p.account = u.account AND p.agent_id = u.agent_id AND p.epoch = u.epoch AND p.relay_id = $5`,
        [
          labels.map((l) => l.account),
          labels.map((l) => l.agentId),
          labels.map((l) => l.epoch),
          labels.map((l) => JSON.stringify(l.labels)),
          relayId,
        ],
      );
    }
    const { rows } = await this.#pool.query<{ account: string; agent_id: string; epoch: string }>(
      `UPDATE presence SET updated_at = ${this.#now()}, last_seen = ${this.#now()} WHERE relay_id = $1 RETURNING account, agent_id, epoch`,
      [relayId],
    );
    return rows.map((r) => ({ account: r.account, agentId: r.agent_id, epoch: Number(r.epoch) }));
  }

  async releasePresence(account: string, agentId: string, epoch: number): Promise<void> {
    await this.#pool.query('DELETE FROM presence WHERE account = $1 AND agent_id = $2 AND epoch = $3', [
      account,
      agentId,
      epoch,
    ]);
  }

  async listPresence(opts: { ttlMs: number; account?: string }): Promise<PresenceRecord[]> {
    const { rows } =
      opts.account === undefined
        ? await this.#pool.query<PresenceRow>(
            `SELECT ${presenceSelect(this.#now())} FROM presence WHERE updated_at >= ${staleBefore(1, this.#now())} ORDER BY epoch`,
            [opts.ttlMs],
          )
        : await this.#pool.query<PresenceRow>(
            `SELECT ${presenceSelect(this.#now())} FROM presence WHERE updated_at >= ${staleBefore(1, this.#now())} AND account = $2
             ORDER BY epoch`,
            [opts.ttlMs, opts.account],
          );
    return rows.map(toPresence);
  }

  async expirePresence(ttlMs: number): Promise<PresenceRecord[]> {
    const { rows } =
      ttlMs <= 0
        ? await this.#pool.query<PresenceRow>(`DELETE FROM presence RETURNING ${presenceSelect(this.#now())}`)
        : await this.#pool.query<PresenceRow>(
            `DELETE FROM presence WHERE updated_at < ${staleBefore(1, this.#now())} RETURNING ${presenceSelect(this.#now())}`,
            [ttlMs],
          );
    return rows.map(toPresence).sort((a, b) => a.epoch - b.epoch);
  }

  async registerDashboard(account: string, plannerId: string, tokenSha256: string): Promise<void> {
    await this.#tx(async (c) => {
      // A token moves with its key: one row per token, one token per planner.
      await c.query('DELETE FROM dashboards WHERE token_sha256 = $1', [tokenSha256]);
      await c.query(
        `INSERT INTO dashboards (account, planner_id, token_sha256) VALUES ($1, $2, $3)
         ON CONFLICT (account, planner_id) DO UPDATE SET token_sha256 = excluded.token_sha256, updated_at = now()`,
        [account, plannerId, tokenSha256],
      );
    });
  }

  async dashboardOfToken(tokenSha256: string): Promise<{ account: string; plannerId: string } | undefined> {
    const { rows } = await this.#pool.query<{ account: string; planner_id: string }>(
      'SELECT account, planner_id FROM dashboards WHERE token_sha256 = $1',
      [tokenSha256],
    );
    return rows[0] && { account: rows[0].account, plannerId: rows[0].planner_id };
  }

  async putDigests(
    account: string,
    plannerId: string,
    digests: { taskId: string; sealed: string }[],
    keep: number,
  ): Promise<number> {
    if (digests.length === 0) return 0;
    return this.#tx(async (c) => {
      const { rows } = await c.query<{ rev: string }>(
        `INSERT INTO task_digests (account, planner_id, task_id, rev, sealed)
         SELECT $1, $2, u.task_id, nextval('digest_rev'), u.sealed
         FROM unnest($3::text[], $4::text[]) WITH ORDINALITY AS u(task_id, sealed, n) ORDER BY u.n
         ON CONFLICT (account, planner_id, task_id)
         DO UPDATE SET rev = excluded.rev, sealed = excluded.sealed, updated_at = now()
         RETURNING rev`,
        [account, plannerId, digests.map((d) => d.taskId), digests.map((d) => d.sealed)],
      );
      await c.query(
        `DELETE FROM task_digests WHERE account = $1 AND planner_id = $2 AND rev NOT IN
           (SELECT rev FROM task_digests WHERE account = $1 AND planner_id = $2 ORDER BY rev DESC LIMIT $3)`,
        [account, plannerId, keep],
      );
      return Math.max(...rows.map((r) => Number(r.rev)));
    });
  }

  async listDigests(
    account: string,
    opts: { plannerId?: string; afterRev?: number; limit: number },
  ): Promise<DigestRecord[]> {
    const { rows } = await this.#pool.query<{
      planner_id: string;
      task_id: string;
      rev: string;
      updated_at: Date;
      sealed: string;
    }>(
      `SELECT planner_id, task_id, rev, updated_at, sealed FROM task_digests
       WHERE account = $1 AND rev > $2 AND ($3::text IS NULL OR planner_id = $3) ORDER BY rev LIMIT $4`,
      [account, opts.afterRev ?? 0, opts.plannerId ?? null, opts.limit],
    );
    return rows.map((r) => ({
      plannerId: r.planner_id,
      taskId: r.task_id,
      rev: Number(r.rev),
      updatedAt: r.updated_at,
      sealed: r.sealed,
    }));
  }

  async queueCommand(
    account: string,
    plannerId: string,
    sealed: string,
    maxPending: number,
  ): Promise<{ ok: true; id: number } | { ok: false; pending: number }> {
    const { rows } = await this.#pool.query<{ id: string }>(
      `INSERT INTO dashboard_commands (account, planner_id, sealed)
       SELECT $1, $2, $3 WHERE (SELECT count(*) FROM dashboard_commands WHERE account = $1 AND planner_id = $2) < $4
       RETURNING id`,
      [account, plannerId, sealed, maxPending],
    );
    if (rows[0]) return { ok: true, id: Number(rows[0].id) };
    return { ok: false, pending: maxPending };
  }

  async pendingCommands(account: string, plannerId: string, limit: number): Promise<CommandRecord[]> {
    const { rows } = await this.#pool.query<{
      id: string;
      planner_id: string;
      created_at: Date;
      sealed: string;
    }>(
      `SELECT id, planner_id, created_at, sealed FROM dashboard_commands
       WHERE account = $1 AND planner_id = $2 ORDER BY id LIMIT $3`,
      [account, plannerId, limit],
    );
    return rows.map((r) => ({
      id: Number(r.id),
      plannerId: r.planner_id,
      createdAt: r.created_at,
      sealed: r.sealed,
    }));
  }

  async ackCommands(account: string, plannerId: string, ids: number[]): Promise<number> {
    if (ids.length === 0) return 0;
    const r = await this.#pool.query(
      'DELETE FROM dashboard_commands WHERE account = $1 AND planner_id = $2 AND id = ANY($3::bigint[])',
      [account, plannerId, ids],
    );
    return r.rowCount ?? 0;
  }

  async #tx<T>(fn: (c: pg.PoolClient) => Promise<T>): Promise<T> {
    const c = await this.#pool.connect();
    try {
      await c.query('BEGIN');
      const r = await fn(c);
      await c.query('COMMIT');
      return r;
    } catch (err) {
      await c.query('ROLLBACK').catch(() => {});
      throw err;
    } finally {
      c.release();
    }
  }

  async close(): Promise<void> {
    await this.#pool.end();
  }
}
