/**
 * @module Runs one shell command in its own process group, streaming its output line by line into a
 * callback and a log file, and killing the whole group on abort or timeout.
 */

import { createWriteStream } from 'node:fs';
import { lineSplitter } from '../../util/line-splitter.js';
import type { ProcessGroups } from '../../util/process-group.js';

export interface RunCommandOptions {
  command: string;
  cwd: string;
  env: NodeJS.ProcessEnv;
  /** Registry of the executor command's process groups, which starts this one and counts it while alive. */
  groups: ProcessGroups;
  timeoutMs: number;
  /** Aborting kills the process group (SIGTERM, then SIGKILL after its grace). */
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

/**
 * Runs `command` with `/bin/sh -c` as the leader of a new process group (util/process-group.ts's
 * lifecycle), so that a kill reaches every process it started, and background jobs left when the shell
 * exits are killed too. A process that left the group (`setsid`, a daemon) is not reached here; under a
 * worker it dies with the task's cgroup (src/worker/cgroup.ts, docs/security.md).
 */
export function runCommand(opts: RunCommandOptions): Promise<CommandOutcome> {
  const started = Date.now();
  const log = createWriteStream(opts.logPath, { flags: 'w' });
  let logError: string | undefined;
  log.on('error', (err) => {
    logError = err.message; // the command still runs; its output only streams as progress
  });
  let timedOut = false;
  let aborted = false;
  const group = opts.groups.spawn('/bin/sh', ['-c', opts.command], {
    cwd: opts.cwd,
    env: opts.env,
    stdin: 'ignore',
  });
  const timeout = setTimeout(() => {
    timedOut = true;
    group.terminate();
  }, opts.timeoutMs);
  const onAbort = () => {
    aborted = true;
    group.terminate();
  };
  if (opts.signal?.aborted) onAbort();
  else opts.signal?.addEventListener('abort', onAbort, { once: true });

  const wire = (stream: NodeJS.ReadableStream, name: 'stdout' | 'stderr') => {
    const lines = lineSplitter((line) => opts.onLine?.(line, name));
    stream.setEncoding('utf8');
    stream.on('data', (chunk: string) => {
      if (logError === undefined) log.write(chunk);
      lines.push(chunk);
    });
    stream.on('end', () => lines.end());
  };
  wire(group.child.stdout, 'stdout');
  wire(group.child.stderr, 'stderr');

  return group.exited.then((exit) => {
    clearTimeout(timeout);
    opts.signal?.removeEventListener('abort', onAbort);
    return new Promise<CommandOutcome>((resolve) =>
      log.end(() =>
        resolve({
          exitCode: exit.code,
          signal: exit.signal,
          durationMs: Date.now() - started,
          timedOut,
          aborted,
          ...(exit.spawnError !== undefined ? { spawnError: exit.spawnError } : {}),
          ...(logError !== undefined ? { logError } : {}),
        }),
      ),
    );
  });
}
