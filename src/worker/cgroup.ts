/**
 * @module One cgroup v2 per executor process, so that everything a task started dies with it: a process
 * that calls `setsid` (or daemonises, or double-forks) leaves the executor's process group and process
 * tree, but never its cgroup. Linux only, and only where the worker may create cgroups (root, or a
 * delegated subtree); elsewhere {@link cgroupParent} says why not and the worker falls back to process
 * groups and the /proc tree walk (docs/security.md says what escapes them).
 *
 * Cgroups are named `nfltr-exec-<worker pid>-<n>` under the worker's own cgroup, so a restarted worker
 * (or any worker) can remove those of a worker that is gone ({@link sweepStaleCgroups}).
 */
import { mkdirSync, readdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { isAlive } from './process-tree.js';

const NAME = /^nfltr-exec-(\d+)-\d+$/;

/**
 * The folder executor cgroups go in (the worker's own cgroup in the v2 hierarchy), or an Error saying
 * why there is none.
 */
export function cgroupParent(): string | Error {
  if (process.platform !== 'linux') return new Error('cgroups exist on Linux only');
  let mount: string | undefined;
  let own: string | undefined;
  try {
    // mountinfo: `id parent major:minor root mountpoint options … - fstype source superoptions`
    for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
      const [left, right] = line.split(' - ');
      if (right?.startsWith('cgroup2 ')) mount ??= left!.split(' ')[4];
    }
    own = /^0::(.*)$/m.exec(readFileSync('/proc/self/cgroup', 'utf8'))?.[1];
  } catch (err) {
    return new Error(`cannot read /proc: ${(err as Error).message}`);
  }
  if (!mount) return new Error('no cgroup v2 hierarchy is mounted');
  if (own === undefined) return new Error('this process is in no cgroup v2');
  const dir = join(mount, own);
  if (/\s/.test(dir)) return new Error(`the cgroup path ${dir} has white space`);
  try {
    const probe = join(dir, `nfltr-exec-${process.pid}-probe`);
    mkdirSync(probe);
    rmdirSync(probe);
  } catch (err) {
    return new Error(`cannot create cgroups in ${dir}: ${(err as NodeJS.ErrnoException).code}`);
  }
  return dir;
}

let counter = 0;

/** A cgroup holding one executor and everything it starts. */
export class ExecutorCgroup {
  readonly dir: string;
  /** Settles once the executor is in it: rejects when it could not be moved there. */
  readonly moved: Promise<void>;

  private constructor(dir: string, moved: Promise<void> = Promise.resolve()) {
    this.dir = dir;
    this.moved = moved;
  }

  /**
   * Creates a cgroup under `parent` and moves `pid` into it (see {@link moved}); throws when the cgroup
   * cannot be created. The move is a write to `cgroup.procs`, which waits for the kernel's RCU grace
   * period (10–20 ms measured here): on libuv's pool, not on the event loop, where it held back every
   * message of every task while an executor started. The executor is still exec'ing its interpreter
   * meanwhile, as it was while a synchronous write waited.
   */
  static adopt(parent: string, pid: number): ExecutorCgroup {
    counter += 1;
    const dir = join(parent, `nfltr-exec-${process.pid}-${counter}`);
    mkdirSync(dir);
    const moved = writeFile(join(dir, 'cgroup.procs'), `${pid}\n`).catch((err: Error) => {
      try {
        rmdirSync(dir);
      } catch {}
      throw err;
    });
    moved.catch(() => {}); // the owner reports it
    return new ExecutorCgroup(dir, moved);
  }

  /** An existing cgroup (from a pid record or a sweep). */
  static at(dir: string): ExecutorCgroup {
    return new ExecutorCgroup(dir);
  }

  /** Pids in it now. */
  pids(): number[] {
    try {
      return readFileSync(join(this.dir, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean).map(Number);
    } catch {
      return [];
    }
  }

  /** SIGKILL to every process in it (cgroup.kill, else one by one). */
  kill(): void {
    try {
      writeFileSync(join(this.dir, 'cgroup.kill'), '1');
      return;
    } catch {}
    for (const pid of this.pids()) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {}
    }
  }

  /**
   * Kills what is left and removes the cgroup; resolves with the number of processes it had to kill,
   * once it is gone (or after `timeoutMs`, leaving it for a later sweep).
   */
  async destroy(timeoutMs = 3_000): Promise<number> {
    // A move still under way would put the process back in after the kill.
    await this.moved.catch(() => {});
    const left = this.pids().length;
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (this.pids().length > 0) this.kill();
      try {
        rmdirSync(this.dir);
        return left;
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'ENOENT') return left;
        if (code !== 'EBUSY' || Date.now() >= deadline) return left;
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  }
}

/**
 * Removes the executor cgroups of workers that no longer run (a worker killed with its watchdog), killing
 * what is still in them; resolves with the number of processes killed.
 */
export async function sweepStaleCgroups(parent: string): Promise<number> {
  let killed = 0;
  let entries: string[];
  try {
    entries = readdirSync(parent);
  } catch {
    return 0;
  }
  for (const name of entries) {
    const m = NAME.exec(name);
    if (!m || Number(m[1]) === process.pid || isAlive(Number(m[1]))) continue;
    killed += await ExecutorCgroup.at(join(parent, name)).destroy();
  }
  return killed;
}
