import { join } from 'node:path';
import { writableDir } from '../../util/fs-check.js';
import { SqliteStore } from './sqlite/index.js';
import type { Store } from './store.js';

/** Opens the embedded store a relay and `nfltr keys` share: `<data-dir>/relay.db`. */
export function openStore(opts: { dataDir: string }): Store {
  return new SqliteStore(join(writableDir(opts.dataDir, '--data-dir', 0o700), 'relay.db'));
}

/** True for the URLs `--store` accepts as PostgreSQL. */
export const isPostgresUrl = (url: string): boolean => /^postgres(?:ql)?:\/\//i.test(url);

/**
 * Opens the store `--store` names (a `postgres://` URL), or the SQLite file in `--data-dir` when no
 * URL is given. Both create or migrate their schema unless `migrate` is false.
 */
export async function openStoreFrom(opts: {
  dataDir: string;
  store?: string;
  migrate?: boolean;
}): Promise<Store> {
  if (!opts.store) return openStore(opts);
  if (isPostgresUrl(opts.store)) {
    // Loaded on demand: a relay alone never pays for the PostgreSQL client.
    const { PostgresStore } = await import('./postgres/index.js');
    return PostgresStore.open(opts.store, { migrate: opts.migrate });
  }
  throw new Error(
    `--store: expected a postgres://user@host:5432/db URL, got ${JSON.stringify(opts.store)} (leave it out for SQLite in --data-dir)`,
  );
}
