/**
 * @module `--warm-executors N`: N executor sessions started and MCP-initialised ahead of their tasks, so
 * a task begins with its tool call. A session runs one task and is retired, unless its executor declared
 * `reuse` (docs/executor-contract.md §1); each one taken is replaced once its task has sent its final
 * event, or {@link REFILL_AFTER_MS} after it was taken if that comes first: starting a process costs
 * hundreds of ms of CPU, which would otherwise compete with the task it was taken for. A warm session that dies
 * while it waits is dropped and replaced; when warming keeps failing it is retried less and less often,
 * and tasks meanwhile start executors of their own (which report the failure).
 */
import type { Logger } from '../util/log.js';
import type { ExecutorSession, SessionBinding } from './executor.js';

export interface WarmPoolOptions {
  size: number;
  /** Starts one session, initialised and checked (its task tool listed); throws when it cannot. */
  start: () => Promise<ExecutorSession>;
  /** What a session reports to while it waits (the warm log; no task handlers). */
  idle: SessionBinding;
  logger: Logger;
  /** First retry delay after a failed start; doubles up to {@link MAX_RETRY_MS}. */
  retryMs?: number;
}

const MAX_RETRY_MS = 30_000;
/** A long task's replacement starts warming this long after the task took its session. */
export const REFILL_AFTER_MS = 1_000;
/**
 * After a final event, the replacement waits this long: its spawn and start (CPU in this process and the
 * new one) then no longer hold back the event on its way through relay and planner.
 */
const REFILL_DELAY_MS = 25;

export class WarmPool {
  readonly #opts: WarmPoolOptions;
  readonly #ready: ExecutorSession[] = [];
  readonly #starting = new Set<Promise<void>>();
  #failures = 0;
  #retry: NodeJS.Timeout | undefined;
  #refill: NodeJS.Timeout | undefined;
  #closed = false;

  constructor(opts: WarmPoolOptions) {
    this.#opts = opts;
    this.#fill();
  }

  /** Sessions ready for a task now. */
  get ready(): number {
    return this.#ready.length;
  }

  /**
   * A warm session for a task, or undefined: the task starts its own. Unless the session may come back
   * ({@link release}), a replacement starts warming at the task's {@link refill}, or after
   * {@link REFILL_AFTER_MS}.
   */
  take(): ExecutorSession | undefined {
    let s = this.#ready.shift();
    while (s && !s.alive) s = this.#ready.shift();
    if (s?.policy !== 'reuse' && !this.#refill) this.#fillIn(REFILL_AFTER_MS);
    return s;
  }

  /**
   * A task is done with its session. One whose executor declared `reuse`, after a task that ended with a
   * result (`clean`), goes back to the pool: then true. Otherwise false, and the caller stops it.
   */
  release(s: ExecutorSession, clean: boolean): boolean {
    if (clean && !this.#closed && s.alive && s.policy === 'reuse' && this.#ready.length < this.#opts.size) {
      s.assign(this.#opts.idle);
      this.#ready.push(s);
      return true;
    }
    return false;
  }

  /** A task that took or released a session sent its final event: the pool fills up again shortly. */
  refill(): void {
    this.#fillIn(REFILL_DELAY_MS);
  }

  /** One refill pending at a time: the latest asked for replaces the one before. */
  #fillIn(ms: number): void {
    clearTimeout(this.#refill);
    this.#refill = setTimeout(() => {
      this.#refill = undefined;
      this.#fill();
    }, ms);
    this.#refill.unref();
  }

  /** Stops the waiting sessions and those still starting; nothing is warmed after this. */
  async close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#retry);
    clearTimeout(this.#refill);
    await Promise.all([...this.#starting]);
    await Promise.all(this.#ready.splice(0).map((s) => s.stop(1_000)));
  }

  #fill(): void {
    while (!this.#closed && !this.#retry && this.#ready.length + this.#starting.size < this.#opts.size) {
      const p = this.#warm().finally(() => this.#starting.delete(p));
      this.#starting.add(p);
    }
  }

  async #warm(): Promise<void> {
    let s: ExecutorSession;
    try {
      s = await this.#opts.start();
    } catch (err) {
      this.#failures++;
      const ms = Math.min(MAX_RETRY_MS, (this.#opts.retryMs ?? 500) * 2 ** (this.#failures - 1));
      this.#opts.logger.warn('could not warm an executor; tasks start their own meanwhile', {
        error: (err as Error).message,
        retry_in_ms: ms,
      });
      if (!this.#closed && !this.#retry) {
        this.#retry = setTimeout(() => {
          this.#retry = undefined;
          this.#fill();
        }, ms);
        this.#retry.unref();
      }
      return;
    }
    this.#failures = 0;
    // Closed meanwhile, or full again (a reusable session came back while this one started).
    if (this.#closed || this.#ready.length >= this.#opts.size) return void (await s.stop(1_000));
    this.#ready.push(s);
    this.#opts.logger.debug('executor warm', { pid: s.pid, ready: this.#ready.length });
    void s.closed.then(() => {
      const i = this.#ready.indexOf(s);
      if (i === -1) return; // taken by a task, or stopped by close()
      this.#ready.splice(i, 1);
      this.#opts.logger.warn('a warm executor exited while waiting for a task; warming another', {
        pid: s.pid,
        exit: s.exitDescription,
        stderr: s.logTail(3) || undefined,
      });
      this.#fill();
    });
  }
}
