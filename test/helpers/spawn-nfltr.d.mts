import type { ChildProcess } from 'node:child_process';

export declare const NFLTR_BIN: string;

export interface SpawnNfltrOptions {
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** The child's stdin (default 'ignore'). */
  stdin?: 'ignore' | 'pipe';
  /** Node flags before bin/nfltr.js (bench's --cpu-prof). */
  nodeArgs?: string[];
  /** How long to wait for `readyPattern` (default 20 s). */
  timeoutMs?: number;
}

export interface NfltrProcess {
  child: ChildProcess;
  /** The match of the ready pattern (its groups: ports, links). */
  match: RegExpExecArray;
  /** All stderr so far. */
  stderr(): string;
  /** All stdout so far. */
  stdout(): string;
  /** stderr, then stdout when there was any. */
  output(): string;
  /** Resolves with the exit code (null after a signal). */
  exited: Promise<number | null>;
  /** Sends the signal (SIGTERM by default) unless the process is gone; resolves with the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

export declare function spawnNfltr(
  command: string,
  args: readonly string[],
  readyPattern: RegExp,
  opts?: SpawnNfltrOptions,
): Promise<NfltrProcess>;
