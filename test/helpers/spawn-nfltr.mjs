/**
 * @module Starting a real `nfltr` process and waiting until it says it is ready: the one copy of that,
 * shared by test/ (typed by spawn-nfltr.d.mts) and bench/ (plain Node, no TypeScript).
 */
import { execFileSync, spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';

export const NFLTR_BIN = resolve(import.meta.dirname, '../../bin/nfltr.js');

/**
 * Spawns `node [nodeArgs] bin/nfltr.js COMMAND ARGS` and resolves once `readyPattern` matches what it
 * printed on stderr or stdout (ready lines go to stderr, share links to stdout). Rejects with all it
 * printed when it exits first or stays unready past `timeoutMs`.
 */
export async function spawnNfltr(command, args, readyPattern, opts = {}) {
  const child = spawn(process.execPath, [...(opts.nodeArgs ?? []), NFLTR_BIN, command, ...args], {
    env: opts.env ?? process.env,
    cwd: opts.cwd,
    stdio: [opts.stdin ?? 'ignore', 'pipe', 'pipe'],
  });
  let err = '';
  let out = '';
  const exited = new Promise((res) => child.once('exit', (code) => res(code)));
  const printed = () => err + (out ? `\n[stdout]\n${out}` : '');
  const match = await new Promise((res, rej) => {
    const timer = setTimeout(
      () =>
        fail(
          new Error(
            `nfltr ${command} was not ready within ${opts.timeoutMs ?? 20_000} ms (${processState(child.pid)}):\n${printed()}`,
          ),
        ),
      opts.timeoutMs ?? 20_000,
    );
    const check = () => {
      const m = readyPattern.exec(err) ?? readyPattern.exec(out);
      if (m) done(() => res(m));
    };
    const onExit = (code, signal) =>
      fail(new Error(`nfltr ${command} exited with ${code ?? signal} before it was ready:\n${printed()}`));
    const done = (settle) => {
      clearTimeout(timer);
      child.stderr.off('data', check);
      child.stdout.off('data', check);
      child.off('exit', onExit);
      settle();
    };
    const fail = (e) => done(() => rej(e));
    child.stderr.setEncoding('utf8').on('data', (d) => {
      err += d;
    });
    child.stdout.setEncoding('utf8').on('data', (d) => {
      out += d;
    });
    child.stderr.on('data', check);
    child.stdout.on('data', check);
    child.once('exit', onExit);
  }).catch(async (e) => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    throw e;
  });
  return {
    child,
    match,
    stderr: () => err,
    stdout: () => out,
    output: printed,
    exited,
    stop: async (signal = 'SIGTERM') => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  };
}

/**
 * What a process that never said it was ready is doing, from /proc (Linux): its state (R running, S
 * sleeping, D waiting on the disk), the kernel function each thread waits in, and the CPU it has used;
 * with gdb installed, also the main thread's native stack. A silent start then reads as starved, blocked
 * (and where) or spinning.
 */
function processState(pid) {
  let state;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
    const cpuMs = (Number(stat[11]) + Number(stat[12])) * 10;
    const threads = new Map();
    for (const tid of readdirSync(`/proc/${pid}/task`)) {
      const name =
        tid === String(pid) ? 'main' : readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8').trim();
      const where = `${name} in ${readFileSync(`/proc/${pid}/task/${tid}/wchan`, 'utf8') || '-'}`;
      threads.set(where, (threads.get(where) ?? 0) + 1);
    }
    const waits = [...threads].map(([where, n]) => (n > 1 ? `${where} ×${n}` : where));
    state = `state ${stat[0]}, ${cpuMs} ms of CPU; threads: ${waits.join(', ')}`;
  } catch {
    return 'no /proc entry';
  }
  return `${state}${mainThreadStack(pid)}`;
}

/** The main thread's native frames (innermost first) as gdb reads them, or '' without gdb. */
function mainThreadStack(pid) {
  try {
    const out = execFileSync('gdb', ['-p', String(pid), '-batch', '-ex', 'thread 1', '-ex', 'bt 30'], {
      encoding: 'utf8',
      timeout: 30_000,
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    const frames = out
      .split('\n')
      .map((l) => /^#\d+\s+(?:0x[0-9a-f]+ in )?([^(]+)/.exec(l)?.[1]?.trim())
      .filter(Boolean);
    return frames.length ? `; main thread: ${frames.join(' < ')}` : '';
  } catch {
    return '';
  }
}
