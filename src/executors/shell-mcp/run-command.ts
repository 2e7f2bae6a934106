/**
 * @module Runs one shell command in its own process group, streaming its output line by line into a
 * callback and a log file, and killing the whole group on abort or timeout.
 */

import { spawn } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { lineSplitter } from '../../util/line-splitter.js';
import { killGroup, terminateGroup } from '../../util/process-group.js';

/** How long a process group gets between SIGTERM and SIGKILL. */
export const KILL_GRACE_MS = 2000;

/** After the shell exits, how long its output pipes may stay open (held by leftover background jobs). */
const DRAIN_MS = 500;

export interface RunCommandOptions {
  command: string;
  cwd: string;
  env: NodeJS.ProcessEnv;
  timeoutMs: number;
  /** Aborting kills the process group (SIGTERM, then SIGKILL after {@link KILL_GRACE_MS}). */
  signal?: AbortSignal;
  /** Combined stdout + stderr go here, as they arrive. */
  logPath: string;
  /** Called once per complete output line (without its line break); a last unterminated line too. */
  onLine?: (line: string, stream: 'stdout' | 'stderr') => void;
}

/** How a finished command ended, in the words results use. */
export function commandStatus(o: CommandOutcome): 'cancelled' | 'timed_out' | 'succeeded' | 'failed' {
  if (o.aborted) return 'cancelled';
  if (o.timedOut) return 'timed_out';
  return o.exitCode === 0 ? 'succeeded' : 'failed';
}

export interface CommandOutcome {
  /** The exit code, or null when the command was ended by a signal. */
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  durationMs: number;
  timedOut: boolean;
  aborted: boolean;
  /** Set when the shell could not be started at all. */
  spawnError?: string;
  /** Set when the log file could not be written. */
  logError?: string;
}

/** Process groups started here that may still have members: running, or within their kill grace. */
const liveGroups = new Set<number>();

/**
 * How many command process groups are running or still being killed, across every server in this
 * process. A shutting-down CLI waits for zero (bounded by the kill grace) before exiting.
 */
export function activeProcessGroups(): number {
  return liveGroups.size;
}

/**
 * Runs `command` with `/bin/sh -c` in a new process group (`detached`), so that a kill reaches every
 * process it started. When the shell itself exits, leftover members of its group (background jobs) are
 * killed too. A process that left the group (`setsid`, a daemon) is not reached here; under a worker
 * it dies with the task's cgroup (src/worker/cgroup.ts, docs/security.md).
 */
export function runCommand(opts: RunCommandOptions): Promise<CommandOutcome> {
  const started = Date.now();
  const log = createWriteStream(opts.logPath, { flags: 'w' });
  let logError: string | undefined;
  log.on('error', (err) => {
    logError = err.message; // the command still runs; its output only streams as progress
  });
  return new Promise<CommandOutcome>((resolve) => {
    let timedOut = false;
    let aborted = false;
    let killTimer: NodeJS.Timeout | undefined;
    let killDone = false;
    let exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
    let spawnError: string | undefined;
    let settled = false;
    let lastOutputAt = Date.now();

    const child = spawn('/bin/sh', ['-c', opts.command], {
      cwd: opts.cwd,
      env: opts.env,
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
    });

    if (child.pid !== undefined) liveGroups.add(child.pid);

    const terminate = () => {
      if (child.pid === undefined || killTimer) return;
      const pid = child.pid;
      killTimer = terminateGroup(pid, KILL_GRACE_MS, () => {
        killDone = true;
        if (settled) liveGroups.delete(pid);
      });
    };
    const timeout = setTimeout(() => {
      timedOut = true;
      terminate();
    }, opts.timeoutMs);
    const onAbort = () => {
      aborted = true;
      terminate();
    };
    if (opts.signal?.aborted) onAbort();
    else opts.signal?.addEventListener('abort', onAbort, { once: true });

    const wire = (stream: NodeJS.ReadableStream, name: 'stdout' | 'stderr') => {
      const lines = lineSplitter((line) => opts.onLine?.(line, name));
      stream.setEncoding('utf8');
      stream.on('data', (chunk: string) => {
        lastOutputAt = Date.now();
        if (logError === undefined) log.write(chunk);
        lines.push(chunk);
      });
      stream.on('end', () => lines.end());
    };
    wire(child.stdout, 'stdout');
    wire(child.stderr, 'stderr');

    const finish = () => {
      if (settled) return;
      settled = true;
      clearTimeout(timeout);
      opts.signal?.removeEventListener('abort', onAbort);
      // The shell is gone; anything left in its group is an orphaned background job. When we are already
      // terminating, the pending SIGKILL still gives those processes their grace period.
      if (child.pid !== undefined && !killTimer) {
        killGroup(child.pid, 'SIGKILL');
        liveGroups.delete(child.pid);
      } else if (child.pid !== undefined && killDone) {
        liveGroups.delete(child.pid);
      }
      log.end(() =>
        resolve({
          exitCode: exit?.code ?? null,
          signal: exit?.signal ?? null,
          durationMs: Date.now() - started,
          timedOut,
          aborted,
          ...(spawnError !== undefined ? { spawnError } : {}),
          ...(logError !== undefined ? { logError } : {}),
        }),
      );
    };

    child.on('error', (err) => {
      spawnError = err.message;
      finish();
    });
    child.on('exit', (code, signal) => {
      exit = { code, signal };
      // Normally 'close' follows at once; if a background job holds the pipes, stop waiting for it once
      // they have been quiet for DRAIN_MS. The check runs after one poll phase (setImmediate), so output
      // already in the pipe is read first even when a loaded event loop fires the timer late.
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
}
