/**
 * @module Runs an AI CLI (claude, copilot) in its own process group with piped stdio, hands its stdout
 * over line by line, and kills the whole group when asked to stop or when the CLI exits: the tools a CLI
 * starts (shells, test runners, background jobs) never outlive the task; one that left the group with
 * `setsid` dies with the task's cgroup under a worker (src/worker/cgroup.ts).
 */

import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { lineSplitter } from '../../util/line-splitter.js';
import { killGroup, terminateGroup } from '../../util/process-group.js';

/** How long a process group gets between SIGTERM and SIGKILL. */
export const AGENT_KILL_GRACE_MS = 2000;

/** Bytes of stderr kept for error messages. */
const STDERR_TAIL_BYTES = 8192;

/** Process groups started here that may still have members: running, or within their kill grace. */
const liveGroups = new Set<number>();

/**
 * How many AI CLI process groups are running or still being killed in this process. A shutting-down
 * executor waits for zero (bounded by the kill grace) before it exits.
 */
export function activeAgentProcessGroups(): number {
  return liveGroups.size;
}

export interface AgentProcessOptions {
  argv: readonly string[];
  cwd: string;
  env: NodeJS.ProcessEnv;
  /** Called once per complete stdout line, without the line break. */
  onStdoutLine: (line: string) => void;
  /** Called with every stderr chunk (for a log file). */
  onStderr?: (chunk: string) => void;
}

export interface AgentExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Set when the program could not be started at all (e.g. not found). */
  spawnError?: string;
}

export interface AgentProcess {
  readonly child: ChildProcessWithoutNullStreams;
  /** Resolves once the CLI has exited and its output has been read. Never rejects. */
  readonly exited: Promise<AgentExit>;
  /** The last few KB of stderr, trimmed. */
  stderrTail(): string;
  /** SIGTERM to the whole group now, SIGKILL to what is left after {@link AGENT_KILL_GRACE_MS}. Idempotent. */
  kill(): void;
  /** True once {@link kill} was called. */
  readonly killed: boolean;
}

/**
 * Starts `argv` (no shell) as the leader of a new process group (`detached`). When the leader exits,
 * members left in its group are killed at once; after {@link AgentProcess.kill} they get the grace.
 */
export function spawnAgentProcess(opts: AgentProcessOptions): AgentProcess {
  const child = spawn(opts.argv[0]!, opts.argv.slice(1), {
    cwd: opts.cwd,
    env: opts.env,
    detached: true,
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  const pid = child.pid;
  if (pid !== undefined) liveGroups.add(pid);
  let stderr = '';
  let killTimer: NodeJS.Timeout | undefined;
  let killDone = false;
  let settled = false;

  // The CLI may exit before reading its stdin (bad flag, crash); that EPIPE is not our error.
  child.stdin.on('error', () => {});

  const lines = lineSplitter(opts.onStdoutLine);
  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (chunk: string) => lines.push(chunk));
  child.stdout.on('end', () => lines.end());
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (chunk: string) => {
    stderr = (stderr + chunk).slice(-STDERR_TAIL_BYTES);
    opts.onStderr?.(chunk);
  });

  const kill = () => {
    if (pid === undefined || killTimer) return;
    killTimer = terminateGroup(pid, AGENT_KILL_GRACE_MS, () => {
      killDone = true;
      if (settled) liveGroups.delete(pid);
    });
  };

  const exited = new Promise<AgentExit>((resolve) => {
    let exit: AgentExit | undefined;
    const finish = () => {
      if (settled) return;
      settled = true;
      if (pid !== undefined && !killTimer) {
        // The CLI is gone; whatever is left in its group is an orphaned tool process.
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
    child.on('exit', (code, signal) => {
      exit = { code, signal };
      // 'close' normally follows at once; if a leftover process holds the pipes, stop waiting for it.
      setTimeout(() => {
        if (settled) return;
        child.stdout.destroy();
        child.stderr.destroy();
        finish();
      }, 500).unref();
    });
    child.on('close', finish);
  });

  return {
    child,
    exited,
    stderrTail: () => stderr.trim(),
    kill,
    get killed() {
      return killTimer !== undefined;
    },
  };
}
