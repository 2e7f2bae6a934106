// Shared pieces of the benchmarks: machine description, percentiles, repeats, child processes.
import { spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { cpus, tmpdir, totalmem } from 'node:os';
import { join, resolve } from 'node:path';
import { NFLTR_BIN, spawnNfltr } from '../test/helpers/spawn-nfltr.mjs';

export { NFLTR_BIN };
export const ROOT = resolve(import.meta.dirname, '..');

export const machine = () => ({
  cores: cpus().length,
  cpu: cpus()[0]?.model ?? 'unknown',
  memory_gib: Math.round(totalmem() / 2 ** 30),
  node: process.version,
});

// BENCH_CPU_PROF=<dir>: every child node process writes a V8 CPU profile there (node refuses
// --cpu-prof in NODE_OPTIONS).
const childNodeArgs = process.env.BENCH_CPU_PROF
  ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_CPU_PROF}`]
  : [];

export const tempDir = (prefix = 'nfltr-bench-') => mkdtempSync(join(tmpdir(), prefix));

export function percentile(sorted, p) {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

/** Median and spread (min–max) of repeated measurements. */
export function summarise(values) {
  const s = [...values].sort((a, b) => a - b);
  return { median: percentile(s, 50), min: s[0], max: s[s.length - 1], runs: s.length };
}

/** Spawns a node script and resolves once it prints `ready <json>` on stdout. */
export function spawnReady(args, opts = {}) {
  const child = spawn(process.execPath, [...childNodeArgs, ...args], {
    stdio: ['pipe', 'pipe', 'inherit'],
    ...opts,
  });
  return new Promise((res, rej) => {
    let out = '';
    const onData = (d) => {
      out += d;
      const m = /ready (.*)\n/.exec(out);
      if (m) {
        child.stdout.off('data', onData);
        res({ child, info: JSON.parse(m[1]) });
      }
    };
    child.stdout.setEncoding('utf8').on('data', onData);
    child.once('exit', (code) => rej(new Error(`${args.join(' ')} exited with ${code} before ready`)));
  });
}

/**
 * Creates an API key for `account` in this process, in the store `nfltr relay` would open with these
 * flags (SQLite in `dataDir`, made when there is none, or the PostgreSQL URL `store`, migrated).
 */
export async function createKey({ dataDir, store }, account) {
  const { openStoreFrom } = await import(join(ROOT, 'dist/relay/store/open.js'));
  const s = await openStoreFrom({ dataDir: dataDir ?? '', store });
  try {
    return (await s.createKey(account)).key;
  } finally {
    await s.close();
  }
}

/** `nfltr COMMAND ARGS` with the bench's node flags, quiet logs and `env` added; resolved once ready. */
export const startNfltr = (command, args, readyPattern, env = {}) =>
  spawnNfltr(command, args, readyPattern, {
    nodeArgs: childNodeArgs,
    env: { ...process.env, NFLTR_LOG_LEVEL: 'warn', ...env },
  });

/**
 * Starts `nfltr relay` (fresh data dir and a key for account bench, unless `dataDir`/`key` are given),
 * on free ports unless given.
 */
export async function startRelay({ args = [], dataDir, key, grpcPort = 0, httpPort = 0 } = {}) {
  dataDir ??= tempDir('nfltr-bench-relay-');
  key ??= await createKey({ dataDir }, 'bench');
  const { child, match } = await startNfltr(
    'relay',
    [
      '--data-dir',
      dataDir,
      '--grpc-addr',
      `127.0.0.1:${grpcPort}`,
      '--http-addr',
      `127.0.0.1:${httpPort}`,
      ...args,
    ],
    /nfltr relay ready grpc_port=(\d+) http_port=(\d+)/,
  );
  const [grpc, http] = [Number(match[1]), Number(match[2])];
  return {
    child,
    key,
    dataDir,
    grpcAddr: `127.0.0.1:${grpc}`,
    httpUrl: `http://127.0.0.1:${http}`,
    grpc,
    http,
  };
}

export const kill = (child) =>
  new Promise((res) => {
    if (child.exitCode !== null || child.signalCode !== null) return res();
    child.once('exit', () => res());
    child.kill('SIGTERM');
  });

export const fmt = (n, digits = 0) =>
  Number.isFinite(n)
    ? n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits })
    : 'n/a';
