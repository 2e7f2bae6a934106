/**
 * @module `nfltr keys`: API keys for relay accounts, and E2EE pairing keys.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { type Command, Option } from 'commander';
import { generatePairingKey } from '../protocol/e2ee.js';
import { awaitRevocation, openStoreFrom, type Store } from '../relay/index.js';
import { die, formatTable, nfltrHome, parseDuration } from './options.js';

interface StoreOptions {
  dataDir: string;
  store?: string;
  init?: boolean;
}

// The relay's own variables: keys work on the store the relay uses.
const dataDirOption = () =>
  new Option('--data-dir <dir>', 'the relay state directory (SQLite store)')
    .default(nfltrHome('relay'))
    .env('NFLTR_RELAY_DATA_DIR');
const storeOption = () =>
  new Option('--store <url>', 'the relays’ shared store: postgres://user@host:5432/db').env(
    'NFLTR_RELAY_STORE',
  );
const jsonOption = (what: string) => new Option('--json', `print ${what} as JSON on stdout`);

const initFlag = ['--init', 'create the SQLite store in --data-dir when there is none yet'] as const;

/** Opens the store the flags name; exits with the reason when it cannot. */
async function open(opts: StoreOptions): Promise<Store> {
  // A mistyped or default --data-dir must not quietly make an empty store and print a key no relay knows.
  const file = join(opts.dataDir, 'relay.db');
  if (!opts.store && !opts.init && !existsSync(file)) {
    die(
      `keys: no relay store in ${opts.dataDir} (no relay.db): pass the relay's --data-dir or --store, or --init to create one`,
      2,
    );
  }
  try {
    return await openStoreFrom(opts);
  } catch (err) {
    die(`keys: ${(err as Error).message}`);
  }
}

export function register(program: Command): void {
  const keys = program.command('keys').description('Manage relay API keys and E2EE pairing keys');

  keys
    .command('create')
    .description('Create an API key for an account (created when new); prints the key alone on stdout')
    .requiredOption('--account <name>', 'account the key belongs to')
    .addOption(dataDirOption())
    .addOption(storeOption())
    .option(...initFlag)
    .addOption(jsonOption('{"id", "account", "key"}'))
    .action(async (opts: StoreOptions & { account: string; json?: boolean }) => {
      if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/.test(opts.account)) {
        die(`keys: --account: ${JSON.stringify(opts.account)} must be 1-64 letters, digits, '.', '_' or '-'`);
      }
      const store = await open(opts);
      const { id, key } = await store.createKey(opts.account);
      await store.close();
      process.stdout.write(
        opts.json ? `${JSON.stringify({ id, account: opts.account, key })}\n` : `${key}\n`,
      );
    });

  keys
    .command('list')
    .description('List API keys (id, account, created, last used, revoked); never the keys themselves')
    .option('--account <name>', 'only this account')
    .addOption(jsonOption('{"keys": [...]}'))
    .addOption(dataDirOption())
    .addOption(storeOption())
    .action(async (opts: StoreOptions & { account?: string; json?: boolean }) => {
      const store = await open(opts);
      const rows = (await store.listKeys(opts.account)).map((k) => ({
        id: k.id,
        account: k.account,
        created_at: k.createdAt.toISOString(),
        last_used_at: k.lastUsedAt?.toISOString() ?? null,
        revoked_at: k.revokedAt?.toISOString() ?? null,
      }));
      await store.close();
      if (opts.json) {
        process.stdout.write(`${JSON.stringify({ keys: rows }, null, 2)}\n`);
        return;
      }
      const table = [['ID', 'ACCOUNT', 'CREATED', 'LAST USED', 'REVOKED']].concat(
        rows.map((r) => [r.id, r.account, r.created_at, r.last_used_at ?? '-', r.revoked_at ?? '-']),
      );
      process.stdout.write(formatTable(table));
    });

  keys
    .command('revoke')
    .description(
      'Revoke an API key by id: refused at once; returns once every running relay has closed its streams',
    )
    .argument('<id>', 'key id, as `nfltr keys list` shows it')
    .addOption(dataDirOption())
    .addOption(storeOption())
    .addOption(
      new Option('--wait <duration>', 'how long to wait for running relays to close the key’s streams')
        .argParser(parseDuration)
        .default(10_000, '10s'),
    )
    .addOption(jsonOption('{"id", "revoked", "pending_relays"}'))
    .action(async (id: string, opts: StoreOptions & { wait: number; json?: boolean }) => {
      const store = await open(opts);
      const found = await store.revokeKey(id);
      if (!found) {
        await store.close();
        die(`keys: no API key with id ${JSON.stringify(id)} (see nfltr keys list)`);
      }
      const pending = await awaitRevocation(store, await store.revocationCount(), opts.wait);
      await store.close();
      if (opts.json)
        process.stdout.write(`${JSON.stringify({ id, revoked: true, pending_relays: pending })}\n`);
      if (pending.length > 0) {
        die(
          `keys: revoked ${id}, but relay ${pending.join(', ')} did not confirm within ${opts.wait} ms (stalled, or its store is unreachable); it closes the key's streams at its next check`,
          3,
        );
      }
      process.stderr.write(`revoked ${id}; no relay holds a stream of it\n`);
    });

  keys
    .command('pairing')
    .description(
      'Print a new random E2EE pairing key; save it to a file and pass it as --e2ee-key-file on both ends',
    )
    .action(() => {
      process.stdout.write(`${generatePairingKey()}\n`);
    });
}
