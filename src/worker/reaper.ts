/**
 * @module Executors die with their worker, however the worker ends. Each executor runs in its own
 * process group (see {@link ExecutorTransport}); a tiny watchdog shell, started once per worker in a
 * session of its own, holds a pipe from the worker and the list of those groups. When the pipe closes
 * (the worker exited, crashed or was SIGKILLed: the kernel closes its end either way), the watchdog sends
 * SIGTERM to every group still listed, then SIGKILL a second later, and exits. A worker that stops its
 * executors itself unlists them first, so a clean exit kills nothing.
 *
 * The pids are also written to `executor.pid` in each task folder; a worker restarted after the
 * watchdog itself was killed finds them there ({@link killRecordedExecutor}).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import type { Socket } from 'node:net';
import { type Logger, silentLogger } from '../util/log.js';
import { isAlive, processStartTime } from './process-tree.js';

/**
 * Reads `+pid` / `-pid` lines; on end of input signals every listed process group. POSIX sh only, so it
 * costs a shell (about a megabyte) rather than a second Node.
 */
const WATCHDOG_SCRIPT = `trap '' INT HUP
groups=
while IFS= read -r line; do
  g=\${line#?}
  case $g in ''|*[!0-9]*) continue;; esac
  case $line in
    +*) groups="$groups $g";;
    -*) keep=; for x in $groups; do [ "$x" = "$g" ] || keep="$keep $x"; done; groups=$keep;;
  esac
done
[ -z "$groups" ] && exit 0
for g in $groups; do kill -s TERM -- "-$g" 2>/dev/null; done
sleep 1
for g in $groups; do kill -s KILL -- "-$g" 2>/dev/null; done
exit 0
`;

/** Executors run in their own process group on POSIX systems; Windows has no groups to kill. */
export const PROCESS_GROUPS = process.platform !== 'win32';

export class ExecutorReaper {
  readonly #log: Logger;
  /** Groups listed with the watchdog; resent in full if it has to be started again. */
  readonly #groups = new Set<number>();
  #child: ChildProcess | undefined;
  #closed = false;

  constructor(logger: Logger = silentLogger) {
    this.#log = logger;
  }

  /** Lists an executor's process group (its leader's pid): it dies if this worker dies. */
  watch(pgid: number): void {
    if (!PROCESS_GROUPS || pgid <= 0 || this.#closed) return;
    this.#groups.add(pgid);
    this.#write(`+${pgid}\n`);
  }

  /** The executor is gone or being stopped by the worker itself. */
  unwatch(pgid: number): void {
    if (!this.#groups.delete(pgid)) return;
    this.#write(`-${pgid}\n`);
  }

  /** Ends the watchdog; groups still listed are killed (none, after a clean drain). */
  close(): void {
    this.#closed = true;
    this.#child?.stdin?.end();
    this.#child = undefined;
  }

  #write(line: string): void {
    const child = this.#ensure();
    if (!child?.stdin?.writable) return;
    child.stdin.write(line);
  }

  #ensure(): ChildProcess | undefined {
    if (this.#child || this.#closed) return this.#child;
    let child: ChildProcess;
    try {
      child = spawn('/bin/sh', ['-c', WATCHDOG_SCRIPT], {
        detached: true,
        stdio: ['pipe', 'ignore', 'ignore'],
      });
    } catch (err) {
      this.#log.warn('cannot start the executor watchdog; executors may outlive a killed worker', {
        error: err,
      });
      return undefined;
    }
    // Neither the watchdog nor its pipe may keep this worker alive.
    child.unref();
    (child.stdin as Socket | null)?.unref?.();
    child.stdin?.on('error', () => {});
    child.on('error', (err) =>
      this.#log.warn('executor watchdog failed', { error: err instanceof Error ? err.message : err }),
    );
    child.once('exit', () => {
      if (this.#child !== child) return;
      this.#child = undefined;
      if (!this.#closed) this.#log.warn('executor watchdog exited; starting another on the next task');
    });
    this.#child = child;
    for (const g of this.#groups) child.stdin?.write(`+${g}\n`);
    return child;
  }
}

/** What `executor.pid` holds: the group leader and when it started (to tell a reused pid). */
interface PidRecord {
  pid: number;
  start?: string;
}

/** Records an executor's pid in its task folder. */
export function recordExecutorPid(file: string, pid: number): void {
  const record: PidRecord = { pid, start: processStartTime(pid) };
  try {
    writeFileSync(file, `${JSON.stringify(record)}\n`);
  } catch {}
}

export function clearExecutorPid(file: string): void {
  rmSync(file, { force: true });
}

/**
 * Kills the executor recorded in `file` (and its process group) if it still runs and is the same
 * process (same start time); returns its pid when it had to be killed. For a worker restarted after a
 * crash whose watchdog did not do it.
 */
export function killRecordedExecutor(file: string): number | undefined {
  let record: PidRecord;
  try {
    record = JSON.parse(readFileSync(file, 'utf8')) as PidRecord;
  } catch {
    return undefined;
  }
  rmSync(file, { force: true });
  const pid = Number(record.pid);
  if (!Number.isInteger(pid) || pid <= 1 || !isAlive(pid)) return undefined;
  const start = processStartTime(pid);
  if (record.start && start && record.start !== start) return undefined;
  for (const target of PROCESS_GROUPS ? [-pid, pid] : [pid]) {
    try {
      process.kill(target, 'SIGKILL');
    } catch {}
  }
  return pid;
}
