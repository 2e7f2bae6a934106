/**
 * @module Ending everything a pseudo-terminal started. A shell with job control puts background jobs in
 * process groups of their own, so killing the leader's group misses them; they all keep the terminal's
 * session id, which is what is signalled here (Linux: /proc; elsewhere the leader's group only).
 */
import { readdirSync, readFileSync } from 'node:fs';
import { killGroup } from './process-group.js';

/** Live members of the session `sid` (the PTY child's pid). */
export function sessionPids(sid: number): number[] {
  if (process.platform !== 'linux') return [];
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      // /proc/N/stat: `pid (comm) state ppid pgrp session …`; comm may contain spaces and parentheses.
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const [state, , , session] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(session) === sid && state !== 'Z') pids.push(Number(entry));
    } catch {
      // Gone while listing.
    }
  }
  return pids;
}

/** Signals every process of the session, and the leader's group where sessions cannot be listed. */
export function killSession(sid: number, sig: NodeJS.Signals): void {
  killGroup(sid, sig);
  for (const pid of sessionPids(sid)) {
    try {
      process.kill(pid, sig);
    } catch {
      // Already gone.
    }
  }
}
