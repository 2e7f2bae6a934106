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
