/**
 * @module One planner per state dir: an O_EXCL lock file holding the owner's pid. A lock whose pid is
 * dead is stale and taken over.
 */
import { closeSync, openSync, readFileSync, unlinkSync, writeSync } from 'node:fs';
import { join } from 'node:path';

export class LockError extends Error {
  constructor(
    readonly holderPid: number,
    message: string,
  ) {
    super(message);
    this.name = 'LockError';
  }
}

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
};

/** Takes `<dir>/planner.lock`; returns the release function. Throws {@link LockError} naming the holder. */
export function acquireStateLock(dir: string, what = 'nfltr mcp'): () => void {
  const path = join(dir, 'planner.lock');
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const fd = openSync(path, 'wx', 0o600);
      writeSync(fd, `${process.pid}\n`);
      closeSync(fd);
      let released = false;
      return () => {
        if (released) return;
        released = true;
        try {
          if (readFileSync(path, 'utf8').trim() === String(process.pid)) unlinkSync(path);
        } catch {}
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    let holder = Number.NaN;
    try {
      holder = Number.parseInt(readFileSync(path, 'utf8').trim(), 10);
    } catch {}
    if (Number.isInteger(holder) && holder > 0 && holder !== process.pid && alive(holder)) {
      throw new LockError(
        holder,
        `state dir ${dir} is in use by another ${what} (pid ${holder}, lock ${path}); stop that process, ` +
          'or give this one another --name or --state-dir',
      );
    }
    // Stale (the holder died without cleaning up) or unreadable: take it over.
    try {
      unlinkSync(path);
    } catch {}
  }
  throw new Error(`cannot take the lock ${path}`);
}
