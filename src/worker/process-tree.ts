/**
 * @module Finding and killing an executor's whole process tree. Executors lead their own process group
 * (see executor-transport.ts), which a group kill reaches even after orphans were re-parented; the tree
 * is also walked by parent pid (from /proc on Linux, `ps` elsewhere) before the executor goes, for
 * descendants that started groups of their own.
 */
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';

function parentPids(): Map<number, number> {
  const parents = new Map<number, number>();
  try {
    for (const entry of readdirSync('/proc')) {
      if (!/^\d+$/.test(entry)) continue;
      try {
        const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
        // The command name (field 2) may contain spaces and parentheses; the ppid follows the last ')'.
        const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
        parents.set(Number(entry), ppid);
      } catch {}
    }
    if (parents.size > 0) return parents;
  } catch {}
  try {
    const out = execFileSync('ps', ['-Ao', 'pid=,ppid='], { encoding: 'utf8' });
    for (const line of out.split('\n')) {
      const [pid, ppid] = line.trim().split(/\s+/).map(Number);
      if (pid && ppid !== undefined) parents.set(pid, ppid);
    }
  } catch {}
  return parents;
}

/** The pids of every descendant of `pid` (children first), as of now. */
export function descendantPids(pid: number): number[] {
  const parents = parentPids();
  const out: number[] = [];
  const walk = (p: number) => {
    for (const [child, parent] of parents) {
      if (parent === p && !out.includes(child)) {
        out.push(child);
        walk(child);
      }
    }
  };
  walk(pid);
  return out;
}

/** Whether `pid` runs; a zombie (exited, not yet reaped by a parent that may never do it) does not. */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch (err) {
    // No /proc (not Linux): trust the signal check. ENOENT: it exited just now.
    return (err as NodeJS.ErrnoException).code !== 'ENOENT';
  }
}

/** Sends `signal` to each pid still alive; errors (already gone) are ignored. */
export function signalAll(pids: number[], signal: NodeJS.Signals): void {
  for (const pid of pids) {
    try {
      process.kill(pid, signal);
    } catch {}
  }
}

/**
 * When `pid` started, as an opaque string (Linux: clock ticks since boot, field 22 of /proc/<pid>/stat),
 * to tell a recorded process from a later one that reused its pid; undefined where unknown.
 */
export function processStartTime(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined;
  }
}
