/**
 * @module The MCP stdio transport to one executor process, as the SDK's `StdioClientTransport` (no
 * shell, `start()` resolves on `spawn`, staged close), with one difference: on POSIX systems the
 * executor leads a process group of its own (`detached`), so that everything it starts can be killed
 * as one, and so that the worker's watchdog (reaper.ts) can kill it after the worker itself was killed.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { PassThrough } from 'node:stream';
import { getDefaultEnvironment } from '@modelcontextprotocol/sdk/client/stdio.js';
import { deserializeMessage, serializeMessage } from '@modelcontextprotocol/sdk/shared/stdio.js';
import type { Transport } from '@modelcontextprotocol/sdk/shared/transport.js';
import type { JSONRPCMessage } from '@modelcontextprotocol/sdk/types.js';
import { descendantPids, isAlive, signalAll } from './process-tree.js';
import { PROCESS_GROUPS } from './reaper.js';

export interface ExecutorTransportOptions {
  command: string;
  args: string[];
  env: Record<string, string>;
  cwd?: string;
  /** Runs the executor as this user and group (the worker must be root); no supplementary groups. */
  uid?: number;
  gid?: number;
  /** Called once the process exists, before any message is sent (record and watch its pid). */
  onSpawn?: (pid: number) => void;
  /** Default {@link EXECUTOR_MAX_MESSAGE_BYTES}. */
  maxMessageBytes?: number;
}

/** How long a closed stdin gets to end the executor when the SDK closes the transport. */
const CLOSE_STEP_MS = 2_000;
/** Time from SIGTERM to SIGKILL, and from SIGKILL to giving up, once the stdin grace has passed. */
const TERM_GRACE_MS = 1_000;
/**
 * The largest MCP message read from an executor (the SDK's own default is 10 MiB). A larger one ends the
 * executor: its session could not go on (the message is lost), and a call waiting for it would wait forever.
 */
export const EXECUTOR_MAX_MESSAGE_BYTES = 64 * 1024 * 1024;

export class ExecutorTransport implements Transport {
  onclose?: () => void;
  onerror?: (error: Error) => void;
  onmessage?: (message: JSONRPCMessage) => void;
  /** The executor's stderr; available before `start()`, so early output is never lost. */
  readonly stderr = new PassThrough();
  readonly #opts: ExecutorTransportOptions;
  readonly #read: LineReader;
  #child: ChildProcess | undefined;
  #pid: number | undefined;
  #fatal: Error | undefined;
  #stopping: Promise<void> | undefined;

  constructor(opts: ExecutorTransportOptions) {
    this.#opts = opts;
    this.#read = new LineReader(opts.maxMessageBytes ?? EXECUTOR_MAX_MESSAGE_BYTES);
  }

  /** Why this transport killed its executor (a message over the size limit), if it did. */
  get fatal(): Error | undefined {
    return this.#fatal;
  }

  /** The executor's pid (and process group id), once started. */
  get pid(): number | undefined {
    return this.#pid;
  }

  /** The child process while it runs; its `exit` event tells how it ended. */
  get child(): ChildProcess | undefined {
    return this.#child;
  }

  start(): Promise<void> {
    if (this.#child) throw new Error('ExecutorTransport already started');
    return new Promise((resolve, reject) => {
      const child = spawn(this.#opts.command, this.#opts.args, {
        env: { ...getDefaultEnvironment(), ...this.#opts.env },
        cwd: this.#opts.cwd,
        ...(this.#opts.uid !== undefined ? { uid: this.#opts.uid, gid: this.#opts.gid } : {}),
        stdio: ['pipe', 'pipe', 'pipe'],
        shell: false,
        detached: PROCESS_GROUPS,
        windowsHide: true,
      });
      this.#child = child;
      child.on('error', (err) => {
        reject(err);
        this.onerror?.(err);
      });
      child.on('spawn', () => {
        this.#pid = child.pid;
        if (child.pid) this.#opts.onSpawn?.(child.pid);
        resolve();
      });
      child.on('close', () => {
        this.#child = undefined;
        this.onclose?.();
      });
      child.stdin?.on('error', (err) => this.onerror?.(err));
      child.stdout?.on('data', (chunk: Buffer) => {
        if (this.#fatal) return;
        const lines = this.#read.push(chunk);
        for (const line of lines) {
          let m: JSONRPCMessage;
          try {
            m = deserializeMessage(line);
          } catch (err) {
            this.onerror?.(err as Error);
            continue;
          }
          this.onmessage?.(m);
        }
        if (this.#read.overflow) {
          this.#fatal = new Error(
            `the executor sent an MCP message of more than ${this.#read.max} bytes, which the worker does not read; it was stopped. Write large results to output_dir as files (they travel as artifacts)`,
          );
          this.onerror?.(this.#fatal);
          this.#signal(child, 'SIGKILL');
        }
      });
      child.stdout?.on('error', (err) => this.onerror?.(err));
      child.stderr?.pipe(this.stderr);
    });
  }

  send(message: JSONRPCMessage): Promise<void> {
    return new Promise((resolve, reject) => {
      const stdin = this.#child?.stdin;
      if (!stdin) return reject(new Error('Not connected'));
      if (stdin.write(serializeMessage(message))) resolve();
      else stdin.once('drain', resolve);
    });
  }

  /** The SDK's close (Client.close): the kill ladder of {@link stop}, with the default grace. */
  close(): Promise<void> {
    return this.stop(CLOSE_STEP_MS);
  }

  /**
   * The one kill ladder of an executor: close stdin (the MCP way to ask it to exit), wait `graceMs`,
   * SIGTERM its group and its descendants, wait, SIGKILL what is left, and its group once more (a
   * grandchild that left the tree). Descendants are collected first, since once the executor is gone
   * they are re-parented and cannot be found. Runs once: the SDK's close and ExecutorSession.stop share
   * it. `onEscalate` hears each signal sent because the executor had not gone by then.
   */
  stop(graceMs: number, onEscalate?: (signal: NodeJS.Signals) => void): Promise<void> {
    this.#stopping ??= this.#ladder(graceMs, onEscalate);
    return this.#stopping;
  }

  async #ladder(graceMs: number, onEscalate?: (signal: NodeJS.Signals) => void): Promise<void> {
    const child = this.#child;
    if (child) {
      const tree = child.pid ? [child.pid, ...descendantPids(child.pid)] : [];
      const closed = new Promise<void>((r) => child.once('close', () => r()));
      try {
        child.stdin?.end();
      } catch {}
      await Promise.race([closed, sleep(graceMs)]);
      const allGone = () => tree.every((p) => !isAlive(p));
      for (const signal of ['SIGTERM', 'SIGKILL'] as const) {
        if (allGone()) break;
        onEscalate?.(signal);
        this.#signal(child, signal);
        signalAll(tree.filter(isAlive), signal);
        await waitFor(allGone, TERM_GRACE_MS);
      }
      if (PROCESS_GROUPS && child.pid) this.#signal(child, 'SIGKILL');
      await Promise.race([closed, sleep(500)]);
    }
    this.#read.clear();
  }

  #signal(child: ChildProcess, signal: NodeJS.Signals): void {
    try {
      if (PROCESS_GROUPS && child.pid) process.kill(-child.pid, signal);
      else child.kill(signal);
    } catch {
      try {
        child.kill(signal);
      } catch {}
    }
  }
}

// Not unref'd: a worker awaiting an executor's exit must not end because nothing else keeps it alive.
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

async function waitFor(done: () => boolean, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (!done() && Date.now() < deadline) await sleep(20);
}

/**
 * Newline-delimited messages out of a byte stream, bounded: a partial line is kept as a list of chunks
 * and joined once it is complete (the SDK's ReadBuffer concatenates on every chunk, quadratic for a
 * message of tens of MiB). A line longer than `max` sets {@link overflow} and nothing more is read.
 */
export class LineReader {
  readonly max: number;
  #chunks: Buffer[] = [];
  #size = 0;
  #overflow = false;

  constructor(max: number) {
    this.max = max;
  }

  get overflow(): boolean {
    return this.#overflow;
  }

  /** Appends bytes; returns the lines they completed (without their line break). */
  push(chunk: Buffer): string[] {
    const out: string[] = [];
    if (this.#overflow) return out;
    let start = 0;
    for (let nl = chunk.indexOf(10); nl !== -1; nl = chunk.indexOf(10, start)) {
      const part = chunk.subarray(start, nl);
      start = nl + 1;
      const line = this.#size > 0 ? Buffer.concat([...this.#chunks, part]) : part;
      this.#chunks = [];
      this.#size = 0;
      if (line.length > this.max) return this.#overflowed(out);
      out.push(line.toString('utf8').replace(/\r$/, ''));
    }
    const rest = chunk.subarray(start);
    if (rest.length > 0) {
      this.#size += rest.length;
      if (this.#size > this.max) return this.#overflowed(out);
      this.#chunks.push(rest);
    }
    return out;
  }

  clear(): void {
    this.#chunks = [];
    this.#size = 0;
  }

  #overflowed(out: string[]): string[] {
    this.#overflow = true;
    this.clear();
    return out;
  }
}
