/**
 * @module Paces progress reports: a burst goes out as it comes, then one per interval, and none while
 * the link they go out on is backed up; what comes in meanwhile is coalesced, the latest winning. Progress is advisory (a
 * command's full output is in its log file) while every message carrying it costs the reader: a worker
 * stores, flushes and sends each task event in order and may drop none, so a command printing 100,000
 * lines must not become 100,000 events.
 */
export interface ProgressPacerOptions<T> {
  /** Shortest time between two emitted values once the burst is spent; one more is allowed per interval. */
  intervalMs: number;
  /** Values emitted at once before pacing starts (a token bucket of this size). */
  burst: number;
  /** Resolves when the link can take more (the agent's send queue is short enough); default at once. */
  writable?: () => Promise<void>;
  emit: (value: T) => void;
}

export class ProgressPacer<T> {
  readonly #opts: ProgressPacerOptions<T>;
  #tokens: number;
  #refilledAt = Date.now();
  /** The value waiting for its turn; set while a flush is scheduled. */
  #held: { value: T } | undefined;
  #timer: NodeJS.Timeout | undefined;
  #stopped = false;

  constructor(opts: ProgressPacerOptions<T>) {
    this.#opts = opts;
    this.#tokens = opts.burst;
  }

  push(value: T): void {
    if (this.#stopped) return;
    if (this.#held) {
      this.#held.value = value;
      return;
    }
    this.#refill();
    if (this.#tokens >= 1 && this.#timer === undefined) return this.#send(value);
    this.#held = { value };
    const wait = (1 - this.#tokens) * this.#opts.intervalMs;
    this.#timer ??= setTimeout(() => void this.#flush(), Math.max(Math.ceil(wait), 0));
  }

  /** Sends a held value now: the last report of a step should not wait for the next one. */
  flush(): void {
    const held = this.#held;
    this.#held = undefined;
    if (held && !this.#stopped) this.#send(held.value);
  }

  /** Drops a held value: a later event (a question, the result) supersedes it. */
  cancel(): void {
    this.#held = undefined;
  }

  /** Drops a held value and ignores later ones. */
  stop(): void {
    this.#stopped = true;
    this.#held = undefined;
    clearTimeout(this.#timer);
  }

  async #flush(): Promise<void> {
    await this.#opts.writable?.();
    this.#timer = undefined;
    const held = this.#held;
    this.#held = undefined;
    if (held && !this.#stopped) this.#send(held.value);
  }

  #refill(): void {
    const now = Date.now();
    this.#tokens = Math.min(
      this.#opts.burst,
      this.#tokens + (now - this.#refilledAt) / this.#opts.intervalMs,
    );
    this.#refilledAt = now;
  }

  #send(value: T): void {
    this.#refill();
    this.#tokens = Math.max(0, this.#tokens - 1);
    this.#opts.emit(value);
  }
}
