/**
 * @module Process groups: the executors start every program they run (an AI CLI, a shell command) as
 * the leader of a group of its own, kill the whole group, and wait for it to be gone. One lifecycle
 * ({@link ProcessGroups.spawn}); the registry that counts the groups still alive is an object its owner
 * (an executor command) creates and passes down, not state of this module.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import type { Readable } from 'node:stream';

/**
 * True while a live (non-zombie) process is left in the group led by `pid`. Orphaned members that died
 * wait as zombies until PID 1 reaps them, which some container inits never do, so on Linux /proc decides.
 */
export function processGroupAlive(pid: number): boolean {
  try {
    process.kill(-pid, 0);
  } catch {
    return false;
  }
  if (process.platform !== 'linux') return true;
  let entries: string[];
  try {
    entries = readdirSync('/proc');
  } catch {
    return true;
  }
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
    } catch {
      continue;
    }
    // /proc/N/stat: `pid (comm) state ppid pgrp …`; comm may contain spaces and parentheses.
    const [state, , pgrp] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (Number(pgrp) === pid && state !== 'Z') return true;
  }
  return false;
}

/** Signals every member of the group led by `pid`; a group already gone is not an error. */
export function killGroup(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(-pid, sig);
  } catch {
    // ESRCH: nothing left to kill.
  }
}

/**
 * SIGTERM to the group, then SIGKILL to whatever is left after `graceMs`. Stops polling as soon as the
 * group is gone, so a pending timer never keeps the process alive for nothing; `onDone` runs once.
 */
function terminateGroup(pid: number, graceMs: number, onDone: () => void): NodeJS.Timeout {
  killGroup(pid, 'SIGTERM');
  const deadline = Date.now() + graceMs;
  const timer = setInterval(() => {
    const alive = processGroupAlive(pid);
    if (alive && Date.now() >= deadline) killGroup(pid, 'SIGKILL');
    if (!alive || Date.now() >= deadline) {
      clearInterval(timer);
      onDone();
    }
  }, 100).unref();
  return timer;
}

/** How long a process group gets between SIGTERM and SIGKILL. */
export const GROUP_KILL_GRACE_MS = 2000;

/** After the leader exits, how long its output pipes may stay open (held by leftover members). */
const DRAIN_MS = 500;

export interface GroupExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Set when the program could not be started at all (e.g. not found). */
  spawnError?: string;
}

/** A group leader with piped output (stdin as asked). */
export type GroupLeader = ChildProcess & { stdout: Readable; stderr: Readable };

export interface GroupChild {
  readonly child: GroupLeader;
  /** Resolves once the leader has exited and its pipes are closed (or left after a drain). Never rejects. */
  readonly exited: Promise<GroupExit>;
  /** SIGTERM to the whole group now, SIGKILL to what is left after the grace. Idempotent. */
  terminate(): void;
  /** True once {@link terminate} was called. */
  readonly terminating: boolean;
}

/**
 * The process groups one executor command starts, and which of them may still have members (running, or
 * within their kill grace). The command owns one and passes it to whatever spawns; on shutdown it waits
 * for {@link live} to reach zero (bounded by {@link GROUP_KILL_GRACE_MS}) before it exits.
 */
export class ProcessGroups {
  readonly #live = new Set<number>();

  /** How many groups started here are running or still being killed. */
  get live(): number {
    return this.#live.size;
  }

  /**
   * Starts `file` as the leader of a new process group (`detached`), so that a kill reaches every
   * process it started. When the leader exits on its own, members left in its group (background jobs,
   * orphaned tools) are killed at once; after {@link GroupChild.terminate} they get the grace. A process
   * that left the group (`setsid`) is not reached here; under a worker it dies with the task's cgroup
   * (src/worker/cgroup.ts).
   */
  spawn(
    file: string,
    args: readonly string[],
    opts: { cwd: string; env: NodeJS.ProcessEnv; stdin: 'pipe' | 'ignore' },
  ): GroupChild {
    return spawnGroup(this.#live, file, args, opts);
  }
}

/** {@link ProcessGroups.spawn}, with the registry's set of live leaders. */
function spawnGroup(
  liveGroups: Set<number>,
  file: string,
  args: readonly string[],
  opts: { cwd: string; env: NodeJS.ProcessEnv; stdin: 'pipe' | 'ignore' },
): GroupChild {
  const child = spawn(file, args, {
    cwd: opts.cwd,
    env: opts.env,
    detached: true,
    stdio: [opts.stdin, 'pipe', 'pipe'],
  }) as GroupLeader;
  const pid = child.pid;
  if (pid !== undefined) liveGroups.add(pid);
  let killTimer: NodeJS.Timeout | undefined;
  let killDone = false;
  let settled = false;

  const terminate = () => {
    if (pid === undefined || killTimer) return;
    killTimer = terminateGroup(pid, GROUP_KILL_GRACE_MS, () => {
      killDone = true;
      if (settled) liveGroups.delete(pid);
    });
  };

  const exited = new Promise<GroupExit>((resolve) => {
    let exit: GroupExit | undefined;
    const finish = () => {
      if (settled) return;
      settled = true;
      if (pid !== undefined && !killTimer) {
        // The leader is gone; whatever is left in its group is an orphan.
        killGroup(pid, 'SIGKILL');
        liveGroups.delete(pid);
      } else if (pid !== undefined && killDone) {
        liveGroups.delete(pid);
      }
      resolve(exit ?? { code: null, signal: null });
    };
    child.on('error', (err) => {
      exit = { code: null, signal: null, spawnError: err.message };
      finish();
    });
    // Output read last, so that the pipes are given up only once they have been quiet for DRAIN_MS.
    let lastOutputAt = Date.now();
    const heard = () => {
      lastOutputAt = Date.now();
    };
    child.stdout.on('data', heard);
    child.stderr.on('data', heard);
    child.on('exit', (code, signal) => {
      exit = { code, signal };
      // 'close' normally follows at once; if a leftover member holds the pipes, stop waiting for it once
      // they are quiet. The check runs after one poll phase (setImmediate), so output already in the pipes
      // is read first even when a loaded event loop fires the timer late.
      const drain = () =>
        setTimeout(
          () =>
            setImmediate(() => {
              if (settled) return;
              if (Date.now() - lastOutputAt < DRAIN_MS) return drain();
              child.stdout.destroy();
              child.stderr.destroy();
              finish();
            }),
          DRAIN_MS,
        ).unref();
      drain();
    });
    child.on('close', finish);
  });

  return {
    child,
    exited,
    terminate,
    get terminating() {
      return killTimer !== undefined;
    },
  };
}
