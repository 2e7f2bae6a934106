/**
 * The first dial's diagnosis, each mistake set up with real processes: `nfltr worker` against the wrong
 * thing exits 1 after --connect-timeout with one line naming what is wrong and the fix.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createKey,
  eventually,
  freePort,
  nfltr,
  type RelayProcess,
  selfSignedCert,
  spawnNfltr,
  startRelayProcess,
  tempDir,
} from '../helpers/processes.js';

let plain: RelayProcess;
let secure: RelayProcess;
let key: string;
let tlsKey: string;
let cert: string;

/** Runs a worker with a short connect timeout; returns its exit code and stderr. */
const worker = (server: string, apiKey: string, ...args: string[]) =>
  nfltr(
    [
      'worker',
      '--server',
      server,
      '--connect-timeout',
      '2s',
      '--name',
      'diag-worker',
      '--state-dir',
      tempDir(),
      '--mcp-command',
      'nfltr shell-mcp --cwd .',
      ...args,
    ],
    { env: { NFLTR_API_KEY: apiKey } },
  );

beforeAll(async () => {
  const dir = tempDir();
  cert = selfSignedCert(dir).cert;
  [plain, secure] = await Promise.all([
    startRelayProcess(),
    startRelayProcess({ dataDir: dir, args: ['--tls-cert', cert, '--tls-key', join(dir, 'key.pem')] }),
  ]);
  [key, tlsKey] = await Promise.all([createKey(plain.dataDir, 'acct'), createKey(dir, 'acct')]);
}, 60_000);

afterAll(async () => {
  await Promise.all([plain?.stop(), secure?.stop()]);
});

// Each case is its own worker process waiting out its own timeout against relays it only reads: they
// run at once.
describe.concurrent('first connect', () => {
  it('nothing listening: is nfltr relay running?', async () => {
    const port = await freePort();
    const r = await worker(`127.0.0.1:${port}`, key);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(
      new RegExp(
        `no connection to the relay within 2s .*nothing listens at 127\\.0\\.0\\.1:${port}: is \`nfltr relay\` running`,
      ),
    );
  });

  it("the relay's HTTP port given to --server", async () => {
    const r = await worker(`127.0.0.1:${plain.httpPort}`, key);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(
      /is an HTTP server, likely the relay's HTTP port: --server wants the relay's gRPC port/,
    );
  });

  it('plaintext client, TLS relay: add --tls and --tls-ca', async () => {
    const r = await worker(`127.0.0.1:${secure.grpcPort}`, tlsKey);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/speaks TLS: add --tls and --tls-ca FILE \(its certificate is not trusted here/);
  });

  it('TLS client, plaintext relay: drop --tls', async () => {
    const r = await worker(`127.0.0.1:${plain.grpcPort}`, key, '--tls');
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/does not speak TLS: drop --tls/);
  });

  it('untrusted certificate: pass --tls-ca', async () => {
    const r = await worker(`localhost:${secure.grpcPort}`, tlsKey, '--tls');
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/certificate of localhost:\d+ is not trusted here \(.+\): pass --tls-ca FILE/);
  });

  it('key refused, at once and without waiting for the timeout', async () => {
    const r = await worker(plain.grpcAddr, 'nfltr_wrong_key', '--connect-timeout', '1m');
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(
      /refused the API key \(UNAUTHENTICATED.*\): check --api-key, NFLTR_API_KEY or --api-key-file/,
    );
  });

  it('a missing --tls-ca file is a one-line usage error', async () => {
    const r = await worker(plain.grpcAddr, key, '--tls', '--tls-ca', '/nonexistent/ca.pem');
    expect(r.code).toBe(2);
    expect(r.stderr.trim()).toBe('nfltr: --tls-ca /nonexistent/ca.pem: does not exist');
  });

  it('the right TLS settings connect (no false diagnosis)', async () => {
    const worker = await spawnNfltr(
      'worker',
      [
        '--server',
        `localhost:${secure.grpcPort}`,
        '--tls',
        '--tls-ca',
        cert,
        '--connect-timeout',
        '30s',
        '--state-dir',
        tempDir(),
        '--mcp-command',
        'nfltr shell-mcp --cwd .',
      ],
      /nfltr worker ready/,
      { env: { ...process.env, NFLTR_API_KEY: tlsKey }, timeoutMs: 30_000 },
    );
    await worker.stop();
  });

  it('--wait outlasts --connect-timeout and connects once the relay comes up', async () => {
    const port = await freePort();
    const dir = tempDir();
    const waitKey = await createKey(dir, 'acct');
    const worker = await spawnNfltr(
      'worker',
      [
        '--server',
        `127.0.0.1:${port}`,
        '--connect-timeout',
        '1s',
        '--wait',
        '--state-dir',
        tempDir(),
        '--mcp-command',
        'nfltr shell-mcp --cwd .',
      ],
      /cannot connect to the relay; redialling/,
      { env: { ...process.env, NFLTR_API_KEY: waitKey }, timeoutMs: 30_000 },
    );
    // Past --connect-timeout: a worker without --wait has given up by now.
    await new Promise((r) => setTimeout(r, 2_000));
    expect(worker.child.exitCode).toBeNull();
    const relay = await startRelayProcess({ dataDir: dir, grpcPort: port });
    try {
      await eventually(() => worker.stderr().includes('nfltr worker ready'), 30_000, 'worker ready');
    } finally {
      await worker.stop();
      await relay.stop();
    }
  });
});
