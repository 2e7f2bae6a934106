import { join } from 'node:path';
import { SqliteStore } from './sqlite/index.js';
import type { Store } from './store.js';

/** Opens the store a relay and `nfltr keys` share: `<data-dir>/relay.db`. */
export function openStore(opts: { dataDir: string }): Store {
  return new SqliteStore(join(opts.dataDir, 'relay.db'));
}
