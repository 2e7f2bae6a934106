import { join } from 'node:path';
import { PostgresStore } from '../../src/relay/store/postgres/index.js';
import { SqliteStore } from '../../src/relay/store/sqlite/index.js';
import { tempDir } from '../helpers/processes.js';
import { freshSchema, serviceSkipReason } from './services.js';
import { runStoreContract } from './store-contract.js';

runStoreContract({
  name: 'sqlite',
  setup: async () => {
    const file = join(tempDir(), 'relay.db');
    return { newStore: async (clock) => new SqliteStore(file, { clock }) };
  },
});

runStoreContract({
  name: 'postgres',
  skip: await serviceSkipReason('PostgreSQL'),
  setup: async () => {
    const schema = await freshSchema();
    return { newStore: (clock) => PostgresStore.open(schema.url, { clock }), teardown: schema.drop };
  },
});
