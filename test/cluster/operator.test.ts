/**
 * Operator commands and conventions: `nfltr login`/`logout` and the precedence of the saved login
 * (flag > environment variable > file), usage errors, `keys --init`, `nfltr peers`.
 * Real `nfltr` processes; a worker dialling an address where nothing listens names the address it used.
 */

import { execFileSync } from 'node:child_process';
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { createKey, NFLTR_BIN, nfltr, spawnNfltr, startRelayProcess, tempDir } from '../helpers/processes.js';

const config = tempDir();
const env = { XDG_CONFIG_HOME: config, NFLTR_SERVER: '', NFLTR_API_KEY: '' };
const file = join(config, 'nfltr', 'credentials.json');

/** A worker that gives up after 1s; its last stderr line names the address it dialled. */
async function dialled(args: string[], extraEnv: NodeJS.ProcessEnv = {}): Promise<string> {
  const r = await nfltr(
    [
      'worker',
      '--connect-timeout',
      '1s',
      '--state-dir',
      tempDir(),
      '--mcp-command',
      'nfltr shell-mcp',
      ...args,
    ],
    { env: { ...env, ...extraEnv } },
  );
  expect(r.code).toBe(1);
  return /nothing listens at (\S+):/.exec(r.stderr)?.[1] ?? r.stderr;
}

describe('nfltr login', () => {
  it('saves the key from stdin in a 0600 file, never from argv', () => {
    const out = execFileSync(
      process.execPath,
      [NFLTR_BIN, 'login', '--server', '127.0.0.1:1', '--with-key'],
      {
        input: 'key-from-stdin\n',
        env: { ...process.env, ...env },
        encoding: 'utf8',
        stdio: ['pipe', 'pipe', 'pipe'],
      },
    );
    expect(out).toBe('');
    expect(statSync(file).mode & 0o777).toBe(0o600);
  });

  it('precedence: flag > environment variable > saved login', async () => {
    // Three workers, each waiting out its own --connect-timeout: at once.
    const [saved, fromEnv, fromFlag] = await Promise.all([
      dialled([]),
      dialled([], { NFLTR_SERVER: '127.0.0.1:2' }),
      dialled(['--server', '127.0.0.1:3'], { NFLTR_SERVER: '127.0.0.1:2' }),
    ]);
    expect([saved, fromEnv, fromFlag]).toEqual(['127.0.0.1:1', '127.0.0.1:2', '127.0.0.1:3']);
  });

  it('logout removes it; without a key login is a usage error', async () => {
    expect((await nfltr(['logout'], { env })).stderr).toMatch(/logged out/);
    expect((await nfltr(['logout'], { env })).stderr).toMatch(/not logged in/);
    const r = await nfltr(['login', '--server', '127.0.0.1:1'], { env });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(
      /no API key: pipe it with --with-key, pass --api-key-file FILE, or set NFLTR_API_KEY/,
    );
  });
});

describe('usage conventions', () => {
  it('keys refuse a data dir without a store unless --init', async () => {
    const dir = tempDir();
    const list = await nfltr(['keys', 'list', '--data-dir', dir]);
    expect(list.code).toBe(2);
    expect(list.stderr.trim()).toBe(
      `nfltr: keys: no relay store in ${dir} (no relay.db): pass the relay's --data-dir or --store, or --init to create one`,
    );
    expect((await nfltr(['keys', 'create', '--account', 'a', '--data-dir', dir])).code).toBe(2);
    const created = await nfltr(['keys', 'create', '--account', 'a', '--data-dir', dir, '--init']);
    expect(created.code).toBe(0);
    expect((await nfltr(['keys', 'list', '--data-dir', dir])).code).toBe(0);
  });

  it('a bad flag value is one line and a hint, exit 2; a duration needs its unit', async () => {
    const r = await nfltr(['shell-mcp', '--timeout', '30']);
    expect(r.code).toBe(2);
    expect(r.stderr.trim().split('\n')).toEqual([
      `error: option '--timeout <duration>' argument '30' is invalid. expected a duration like 500ms, 15s or 20m (a number needs its unit), got "30"`,
      '(add --help for usage)',
    ]);
    expect((await nfltr(['worker', '--no-such-flag'])).code).toBe(2);
  });
});

describe('nfltr peers', () => {
  it("lists the account's agents as a table and as JSON", async () => {
    const relay = await startRelayProcess();
    const apiKey = await createKey(relay.dataDir, 'acct');
    const worker = await spawnNfltr(
      'worker',
      ['--server', relay.grpcAddr, '--name', 'peers-w1', '--labels', 'zone=eu'],
      /nfltr worker ready/,
      { env: { ...process.env, ...env, NFLTR_API_KEY: apiKey, NFLTR_MCP_COMMAND: 'nfltr shell-mcp' } },
    );
    try {
      const penv = { ...env, NFLTR_API_KEY: apiKey, NFLTR_PROXY_URL: relay.httpUrl };
      const [json, table, refused] = await Promise.all([
        nfltr(['peers', '--json'], { env: penv }),
        nfltr(['peers'], { env: penv }),
        nfltr(['peers'], { env: { ...penv, NFLTR_API_KEY: 'nope' } }),
      ]);
      expect(json.code).toBe(0);
      expect(JSON.parse(json.stdout).peers).toEqual([
        expect.objectContaining({
          agent_id: 'peers-w1',
          kind: 'worker',
          labels: expect.objectContaining({ zone: 'eu' }),
        }),
      ]);
      expect(table.stdout).toMatch(
        /^AGENT\s+KIND\s+CONNECTED SINCE\s+LABELS\npeers-w1\s+worker\s+\S+\s+.*zone=eu/,
      );
      expect(refused.code).toBe(1);
      expect(refused.stderr).toMatch(/refused the API key/);
    } finally {
      await worker.stop();
      await relay.stop();
    }
  });
});
