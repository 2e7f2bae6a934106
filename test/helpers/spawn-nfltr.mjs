/**
 * @module Starting a real `nfltr` process and waiting until it says it is ready: the one copy of that,
 * shared by test/ (typed by spawn-nfltr.d.mts) and bench/ (plain Node, no TypeScript).
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
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
 * sleeping, D waiting on the disk), the kernel function it waits in, and the CPU it has used. A silent
 * start then reads as starved, blocked or spinning.
 */
function processState(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
    const wchan = readFileSync(`/proc/${pid}/wchan`, 'utf8');
    const cpuMs = (Number(stat[11]) + Number(stat[12])) * 10;
    return `state ${stat[0]}, waiting in ${wchan || '-'}, ${cpuMs} ms of CPU`;
  } catch {
    return 'no /proc entry';
  }
}
