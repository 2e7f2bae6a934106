/**
 * @module Executors die with their worker, however the worker ends. Each executor runs in its own
 * process group (see {@link ExecutorTransport}); a tiny watchdog shell, started once per worker in a
 * session of its own, holds a pipe from the worker and the list of those groups. When the pipe closes
 * (the worker exited, crashed or was SIGKILLed: the kernel closes its end either way), the watchdog sends
 * SIGTERM to every group still listed, then SIGKILL a second later, and exits. A worker that stops its
 * executors itself unlists them first, so a clean exit kills nothing.
 *
 * Where cgroup v2 is available (cgroup.ts), each executor also gets a cgroup of its own, which holds
 * whatever it starts even after a `setsid`: the session's stop and the watchdog kill it whole, and a
 * restarted worker sweeps those of a worker that is gone.
 *
 * The pids are also written to `executor.pid` in each task folder; a worker restarted after the
 * watchdog itself was killed finds them there ({@link killRecordedExecutor}).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import type { Socket } from 'node:net';
import { type Logger, silentLogger } from '../util/log.js';
import { cgroupParent, ExecutorCgroup, sweepStaleCgroups } from './cgroup.js';
import { isAlive, processStartTime } from './process-tree.js';

/**
 * Reads `+pid` / `-pid` (process groups) and `Cdir` / `cdir` (cgroups) lines; on end of input signals
 * every listed process group, then kills and removes every listed cgroup. POSIX sh only, so it costs a
 * shell (about a megabyte) rather than a second Node.
 */
const WATCHDOG_SCRIPT = `trap '' INT HUP
groups=
cgroups=
while IFS= read -r line; do
  g=\${line#?}
  case $line in
    C/*) cgroups="$cgroups $g"; continue;;
    c/*) keep=; for x in $cgroups; do [ "$x" = "$g" ] || keep="$keep $x"; done; cgroups=$keep; continue;;
  esac
  case $g in ''|*[!0-9]*) continue;; esac
  case $line in
    +*) groups="$groups $g";;
    -*) keep=; for x in $groups; do [ "$x" = "$g" ] || keep="$keep $x"; done; groups=$keep;;
  esac
done
[ -z "$groups$cgroups" ] && exit 0
for g in $groups; do kill -s TERM -- "-$g" 2>/dev/null; done
[ -n "$groups" ] && sleep 1
for g in $groups; do kill -s KILL -- "-$g" 2>/dev/null; done
for c in $cgroups; do
  echo 1 > "$c/cgroup.kill" 2>/dev/null || for p in $(cat "$c/cgroup.procs" 2>/dev/null); do kill -s KILL "$p" 2>/dev/null; done
done
[ -n "$cgroups" ] && sleep 1
for c in $cgroups; do rmdir "$c" 2>/dev/null; done
exit 0
`;

/** Executors run in their own process group on POSIX systems; Windows has no groups to kill. */
export const PROCESS_GROUPS = process.platform !== 'win32';

export class ExecutorReaper {
  readonly #log: Logger;
  /** Groups listed with the watchdog; resent in full if it has to be started again. */
  readonly #groups = new Set<number>();
  /** Cgroups listed with the watchdog, by folder. */
  readonly #cgroups = new Set<string>();
  /** Where executor cgroups go; an Error (logged once) when cgroups cannot be used; undefined: unasked. */
  #cgroupParent: string | Error | undefined;
  #child: ChildProcess | undefined;
  #closed = false;

  /** `cgroups: false` keeps executors out of cgroups (process groups only). */
  constructor(logger: Logger = silentLogger, opts: { cgroups?: boolean } = {}) {
    this.#log = logger;
    if (opts.cgroups === false) this.#cgroupParent = new Error('turned off');
  }

  /** Where executor cgroups go, or undefined when they cannot be used here. */
  get cgroupParent(): string | undefined {
    if (this.#cgroupParent === undefined) {
      this.#cgroupParent = cgroupParent();
      if (this.#cgroupParent instanceof Error) {
        this.#log.info(
          'no cgroup for executors; a task process that leaves its process group (setsid) can outlive the task',
          { why: this.#cgroupParent.message },
        );
      }
    }
    return this.#cgroupParent instanceof Error ? undefined : this.#cgroupParent;
  }

  /**
   * Lists an executor's process group (its leader's pid): it dies if this worker dies. Where it can, also
   * moves the executor into a cgroup of its own, returned for {@link release}.
   */
  watch(pgid: number): ExecutorCgroup | undefined {
    if (pgid <= 0 || this.#closed) return undefined;
    let cgroup: ExecutorCgroup | undefined;
    const parent = this.cgroupParent;
    if (parent) {
      const failed = (err: Error) =>
        this.#log.warn('cannot put the executor in a cgroup', { pid: pgid, error: err.message });
      try {
        cgroup = ExecutorCgroup.adopt(parent, pgid);
        this.#cgroups.add(cgroup.dir);
        this.#write(`C${cgroup.dir}\n`);
        cgroup.moved.catch(failed);
      } catch (err) {
        failed(err as Error);
      }
    }
    if (PROCESS_GROUPS) {
      this.#groups.add(pgid);
      this.#write(`+${pgid}\n`);
    }
    return cgroup;
  }

  /**
   * The executor's session ended: kills whatever is left in its cgroup and removes it. Resolves with
   * the number of processes killed (those that outlived the executor).
   */
  async release(cgroup: ExecutorCgroup | undefined): Promise<number> {
    if (!cgroup) return 0;
    const killed = await cgroup.destroy();
    if (this.#cgroups.delete(cgroup.dir)) this.#write(`c${cgroup.dir}\n`);
    return killed;
  }

  /** Removes the executor cgroups of workers that are gone, killing what is in them. */
  async sweep(): Promise<void> {
    const parent = this.cgroupParent;
    if (!parent) return;
    const killed = await sweepStaleCgroups(parent);
    if (killed > 0)
      this.#log.warn('killed processes left by the executors of a worker that is gone', { killed });
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
    for (const c of this.#cgroups) child.stdin?.write(`C${c}\n`);
    return child;
  }
}

/** What `executor.pid` holds: the group leader, when it started (to tell a reused pid), its cgroup. */
interface PidRecord {
  pid: number;
  start?: string;
  cgroup?: string;
}

/** Records an executor's pid (and cgroup) in its task folder. */
export function recordExecutorPid(file: string, pid: number, cgroup?: ExecutorCgroup): void {
  const record: PidRecord = { pid, start: processStartTime(pid), ...(cgroup ? { cgroup: cgroup.dir } : {}) };
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
  // Whatever is left in its cgroup goes, the executor included; the folder goes on the next sweep.
  if (typeof record.cgroup === 'string' && /\/nfltr-exec-\d+-\d+$/.test(record.cgroup)) {
    ExecutorCgroup.at(record.cgroup).kill();
  }
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
