/**
 * @module The PostgreSQL schema as numbered migrations. Append only: a released migration never
 * changes, a fix is a new one. Tables live in the connection's current schema (its `search_path`), so
 * several relay clusters, or test runs, can share one database.
 */

export interface Migration {
  version: number;
  name: string;
  sql: string;
}

export const MIGRATIONS: Migration[] = [
  {
    version: 1,
    name: 'accounts and api keys',
    sql: `
      CREATE TABLE accounts (name TEXT PRIMARY KEY, created_at TIMESTAMPTZ NOT NULL DEFAULT now());
      CREATE TABLE api_keys (
        id TEXT PRIMARY KEY,
        account TEXT NOT NULL REFERENCES accounts(name),
        secret_hash BYTEA NOT NULL,
        created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
        last_used_at TIMESTAMPTZ,
        revoked_at TIMESTAMPTZ
      );
      CREATE INDEX api_keys_account ON api_keys (account);
      CREATE INDEX api_keys_revoked ON api_keys (id) WHERE revoked_at IS NOT NULL;`,
  },
  {
    version: 2,
    name: 'presence',
    sql: `
      CREATE SEQUENCE presence_epoch;
      CREATE TABLE presence (
        account TEXT NOT NULL,
        agent_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        labels JSONB NOT NULL,
        connected_since TIMESTAMPTZ NOT NULL,
        last_seen TIMESTAMPTZ NOT NULL,
        relay_id TEXT NOT NULL,
        session_hash BYTEA NOT NULL,
        epoch BIGINT NOT NULL,
        updated_at TIMESTAMPTZ NOT NULL,
        PRIMARY KEY (account, agent_id)
      );
      CREATE INDEX presence_relay ON presence (relay_id);
      CREATE INDEX presence_updated ON presence (updated_at);`,
  },
  {
    version: 3,
    name: 'replicas confirm revocations',
    sql: `
      CREATE TABLE relay_replicas (
        relay_id TEXT PRIMARY KEY,
        revocations BIGINT NOT NULL,
        live_until TIMESTAMPTZ NOT NULL
      );`,
  },
  {
    version: 4,
    name: 'dashboards, sealed task digests and command queues',
    sql: `
      CREATE TABLE dashboards (
        account TEXT NOT NULL,
        planner_id TEXT NOT NULL,
        token_sha256 TEXT NOT NULL UNIQUE,
        updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
        PRIMARY KEY (account, planner_id)
      );
      CREATE SEQUENCE digest_rev;
      CREATE TABLE task_digests (
        account TEXT NOT NULL,
        planner_id TEXT NOT NULL,
        task_id TEXT NOT NULL,
        rev BIGINT NOT NULL,
        updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
        sealed TEXT NOT NULL,
        PRIMARY KEY (account, planner_id, task_id)
      );
      CREATE INDEX task_digests_rev ON task_digests (account, rev);
      CREATE TABLE dashboard_commands (
        id BIGSERIAL PRIMARY KEY,
        account TEXT NOT NULL,
        planner_id TEXT NOT NULL,
        created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
        sealed TEXT NOT NULL
      );
      CREATE INDEX dashboard_commands_planner ON dashboard_commands (account, planner_id, id);`,
  },
];
