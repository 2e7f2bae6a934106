/**
 * @module Whether a process group still has live members: the executors kill whole groups and wait for
 * them to be gone.
 */
import { readdirSync, readFileSync } from 'node:fs';

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
export function terminateGroup(pid: number, graceMs: number, onDone: () => void): NodeJS.Timeout {
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
