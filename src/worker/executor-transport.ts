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

const CLOSE_STEP_MS = 2_000;
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

  /** Ends stdin (the MCP way to ask a server to exit), then SIGTERM, then SIGKILL, to the whole group. */
  async close(): Promise<void> {
    const child = this.#child;
    if (child) {
      const closed = new Promise<void>((r) => child.once('close', () => r()));
      const wait = () =>
        Promise.race([closed, new Promise<void>((r) => setTimeout(r, CLOSE_STEP_MS).unref())]);
      try {
        child.stdin?.end();
      } catch {}
      await wait();
      for (const signal of ['SIGTERM', 'SIGKILL'] as const) {
        if (child.exitCode !== null || child.signalCode !== null) break;
        this.#signal(child, signal);
        await wait();
      }
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
