/**
 * Test helpers that run the real `nfltr` binary as child processes on free ports.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';

export const NFLTR_BIN = resolve(import.meta.dirname, '../../bin/nfltr.js');
const execFileP = promisify(execFile);

export const tempDir = (prefix = 'nfltr-test-') => mkdtempSync(join(tmpdir(), prefix));

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
  const child = spawn(
    process.execPath,
    [
      NFLTR_BIN,
      'relay',
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
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let err = '';
  child.stderr!.setEncoding('utf8').on('data', (d: string) => {
    err += d;
  });
  const exited = new Promise<number | null>((res) => child.once('exit', (code) => res(code)));
  const ports = await new Promise<{ grpc: number; http: number }>((res, rej) => {
    const timer = setTimeout(() => rej(new Error(`relay did not start:\n${err}`)), 15_000);
    const check = () => {
      const m = /nfltr relay ready grpc_port=(\d+) http_port=(\d+)/.exec(err);
      if (m) {
        clearTimeout(timer);
        child.stderr!.off('data', check);
        res({ grpc: Number(m[1]), http: Number(m[2]) });
      }
    };
    child.stderr!.on('data', check);
    child.once('exit', (code) => rej(new Error(`relay exited with ${code}:\n${err}`)));
  });
  return {
    child,
    grpcPort: ports.grpc,
    httpPort: ports.http,
    grpcAddr: `127.0.0.1:${ports.grpc}`,
    httpUrl: `http://127.0.0.1:${ports.http}`,
    dataDir,
    stderr: () => err,
    stop: async (signal = 'SIGTERM') => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  };
}

/** Creates an API key with `nfltr keys create`; returns the key. */
export async function createKey(dataDir: string, account: string): Promise<string> {
  const r = await nfltr(['keys', 'create', '--account', account, '--data-dir', dataDir, '--init']);
  if (r.code !== 0) throw new Error(`keys create failed: ${r.stderr}`);
  return r.stdout.trim();
}

/** `nfltr keys create` against a cluster's shared store; the new key. */
export async function createStoreKey(storeUrl: string, account: string): Promise<string> {
  const r = await nfltr(['keys', 'create', '--account', account, '--store', storeUrl]);
  if (r.code !== 0) throw new Error(`keys create failed: ${r.stderr}`);
  return r.stdout.trim();
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
