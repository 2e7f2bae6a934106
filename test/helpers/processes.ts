/**
 * Test helpers that run the real `nfltr` binary as child processes on free ports.
 */
import { type ChildProcess, execFile, execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll } from 'vitest';
import { openStoreFrom } from '../../src/relay/store/open.js';
import { NFLTR_BIN, spawnNfltr } from './spawn-nfltr.mjs';

export { NFLTR_BIN, type NfltrProcess, spawnNfltr } from './spawn-nfltr.mjs';

const execFileP = promisify(execFile);

export const tempDir = (prefix = 'nfltr-test-') => mkdtempSync(join(tmpdir(), prefix));

/**
 * A TCP port that was free a moment ago, below the kernel's ephemeral range (32768+) so that no outgoing
 * connection takes it while a test starts (or restarts) a relay on it.
 */
export async function freePort(): Promise<number> {
  for (;;) {
    const port = 20_000 + Math.floor(Math.random() * 12_000);
    const srv = createServer();
    const ok = await new Promise<boolean>((r) => {
      srv.once('error', () => r(false));
      srv.listen(port, '127.0.0.1', () => r(true));
    });
    if (!ok) continue;
    await new Promise((r) => srv.close(r));
    return port;
  }
}

/** A self-signed certificate for localhost and 127.0.0.1 (openssl), as `cert.pem` and `key.pem` in `dir`. */
export function selfSignedCert(dir: string): { cert: string; key: string } {
  const cert = join(dir, 'cert.pem');
  const key = join(dir, 'key.pem');
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-days',
      '1',
      '-subj',
      '/CN=localhost',
      '-addext',
      'subjectAltName=DNS:localhost,IP:127.0.0.1',
      '-keyout',
      key,
      '-out',
      cert,
    ],
    { stdio: 'ignore' },
  );
  return { cert, key };
}

/** Runs `nfltr …` to completion. */
export async function nfltr(args: string[], opts: { env?: NodeJS.ProcessEnv } = {}) {
  try {
    const { stdout, stderr } = await execFileP(process.execPath, [NFLTR_BIN, ...args], {
      env: { ...process.env, ...opts.env },
    });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

export interface RelayProcess {
  child: ChildProcess;
  grpcPort: number;
  httpPort: number;
  grpcAddr: string;
  httpUrl: string;
  dataDir: string;
  stderr: () => string;
  /** Sends the signal and resolves with the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

export interface RelayStartOptions {
  dataDir?: string;
  grpcPort?: number;
  httpPort?: number;
  args?: string[];
}

export async function startRelayProcess(opts: RelayStartOptions = {}): Promise<RelayProcess> {
  const dataDir = opts.dataDir ?? tempDir('nfltr-relay-');
  const p = await spawnNfltr(
    'relay',
    [
      '--data-dir',
      dataDir,
      '--grpc-addr',
      `127.0.0.1:${opts.grpcPort ?? 0}`,
      '--http-addr',
      `127.0.0.1:${opts.httpPort ?? 0}`,
      // Tests start relays fresh; a short hold keeps "not found" answers quick.
      ...(opts.args?.includes('--hold-window') ? [] : ['--hold-window', '1s']),
      ...(opts.args ?? []),
    ],
    /nfltr relay ready grpc_port=(\d+) http_port=(\d+)/,
    { timeoutMs: 15_000 },
  );
  const [grpcPort, httpPort] = [Number(p.match[1]), Number(p.match[2])];
  return {
    child: p.child,
    grpcPort,
    httpPort,
    grpcAddr: `127.0.0.1:${grpcPort}`,
    httpUrl: `http://127.0.0.1:${httpPort}`,
    dataDir,
    stderr: p.stderr,
    stop: p.stop,
  };
}

/**
 * Creates an API key for `account` in the relay store of `dataDir` (made when there is none), or in the
 * PostgreSQL store `opts.store`, in this process: what `nfltr keys create --init` does, without starting one.
 */
export async function createKey(
  dataDir: string,
  account: string,
  opts: { store?: string } = {},
): Promise<string> {
  const store = await openStoreFrom({ dataDir, store: opts.store });
  try {
    return (await store.createKey(account)).key;
  } finally {
    await store.close();
  }
}

export interface RelayFixture {
  /** The running relay (a new process after {@link RelayFixture.restart}). */
  readonly relay: RelayProcess;
  /** The API key of the first account. */
  readonly key: string;
  /** The API key of each account asked for. */
  readonly keys: Readonly<Record<string, string>>;
  /** Stops the relay with `signal` and starts it again on the same ports and data dir. */
  restart(signal?: NodeJS.Signals): Promise<RelayProcess>;
}

/**
 * A relay process for the enclosing `describe` (or file): keys made in-process for `accounts` (default
 * `acct`) before it starts in `beforeAll`, stopped in `afterAll`. With `restartable`, it listens on fixed
 * free ports so that {@link RelayFixture.restart} brings it back on the same address.
 */
export function withRelay(
  opts: RelayStartOptions & { accounts?: string[]; restartable?: boolean } = {},
): RelayFixture {
  let relay: RelayProcess | undefined;
  const keys: Record<string, string> = {};
  const accounts = opts.accounts ?? ['acct'];
  const running = () => {
    if (!relay) throw new Error('withRelay: the relay starts in beforeAll; use it inside a test or hook');
    return relay;
  };
  beforeAll(async () => {
    const dataDir = opts.dataDir ?? tempDir('nfltr-relay-');
    for (const a of accounts) keys[a] = await createKey(dataDir, a);
    const [grpcPort, httpPort] = opts.restartable
      ? [await freePort(), await freePort()]
      : [opts.grpcPort, opts.httpPort];
    relay = await startRelayProcess({ ...opts, dataDir, grpcPort, httpPort });
  });
  afterAll(async () => {
    await relay?.stop();
  });
  return {
    get relay() {
      return running();
    },
    get key() {
      return keys[accounts[0]!]!;
    },
    keys,
    async restart(signal = 'SIGTERM') {
      const { dataDir, grpcPort, httpPort } = running();
      await running().stop(signal);
      relay = await startRelayProcess({ ...opts, dataDir, grpcPort, httpPort });
      return relay;
    },
  };
}

/** Polls `fn` until it returns a truthy value or the timeout passes. */
export async function eventually<T>(
  fn: () => T | Promise<T>,
  timeoutMs = 10_000,
  what = 'condition',
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last ? `: ${last}` : ''}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** The path of a CLI the project installs as a dev dependency; fails the suite, naming the package, without it. */
export function devCli(bin: string, what: string, pkg: string): string {
  const path = resolve(import.meta.dirname, '../../node_modules/.bin', bin);
  if (!existsSync(path)) {
    throw new Error(`${what} is not installed at ${path}: run \`npm ci\` (it is a dev dependency, ${pkg})`);
  }
  return path;
}
