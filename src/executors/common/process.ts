/**
 * @module Runs an AI CLI (claude, copilot) in its own process group with piped stdio, hands its stdout
 * over line by line, and kills the whole group when asked to stop or when the CLI exits: the tools a CLI
 * starts (shells, test runners, background jobs) never outlive the task; one that left the group with
 * `setsid` dies with the task's cgroup under a worker (src/worker/cgroup.ts).
 */

import type { ChildProcessWithoutNullStreams } from 'node:child_process';
import { lineSplitter } from '../../util/line-splitter.js';
import type { GroupExit, ProcessGroups } from '../../util/process-group.js';

/** Bytes of stderr kept for error messages. */
const STDERR_TAIL_BYTES = 8192;

export interface AgentProcessOptions {
  argv: readonly string[];
  cwd: string;
  env: NodeJS.ProcessEnv;
  /** Registry of the executor command's process groups, which starts this one and counts it while alive. */
  groups: ProcessGroups;
  /** Called once per complete stdout line, without the line break. */
  onStdoutLine: (line: string) => void;
  /** Called with every stderr chunk (for a log file). */
  onStderr?: (chunk: string) => void;
}

export type AgentExit = GroupExit;

export interface AgentProcess {
  readonly child: ChildProcessWithoutNullStreams;
  /** Resolves once the CLI has exited and its output has been read. Never rejects. */
  readonly exited: Promise<AgentExit>;
  /** The last few KB of stderr, trimmed. */
  stderrTail(): string;
  /** SIGTERM to the whole group now, SIGKILL to what is left after the grace. Idempotent. */
  kill(): void;
  /** True once {@link kill} was called. */
  readonly killed: boolean;
}

/**
 * Starts `argv` (no shell) as the leader of a new process group (util/process-group.ts's lifecycle).
 * When the leader exits, members left in its group are killed at once; after
 * {@link AgentProcess.kill} they get the grace.
 */
export function spawnAgentProcess(opts: AgentProcessOptions): AgentProcess {
  const group = opts.groups.spawn(opts.argv[0]!, opts.argv.slice(1), {
    cwd: opts.cwd,
    env: opts.env,
    stdin: 'pipe',
  });
  const child = group.child as ChildProcessWithoutNullStreams;
  let stderr = '';

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

  return {
    child,
    exited: group.exited,
    stderrTail: () => stderr.trim(),
    kill: group.terminate,
    get killed() {
      return group.terminating;
    },
  };
}
