/** @module Progress of a transfer as task events: throttled, and worded the same both ways. */
import { PROGRESS_MIN_BYTES } from './limits.js';

/**
 * Reports a transfer's progress at most every `step` of the total or every `intervalMs`, plus once at
 * the end; transfers under `minBytes` report nothing (they are over before anyone could look).
 */
export class ProgressThrottle {
  readonly #total: number;
  readonly #emit: (done: number, total: number) => void;
  readonly #step: number;
  readonly #intervalMs: number;
  readonly #enabled: boolean;
  #lastDone = 0;
  #lastAt = Date.now();
  #finished = false;

  constructor(
    total: number,
    emit: (done: number, total: number) => void,
    opts: { minBytes?: number; step?: number; intervalMs?: number } = {},
  ) {
    this.#total = total;
    this.#emit = emit;
    this.#step = Math.max(1, Math.floor(total * (opts.step ?? 0.05)));
    this.#intervalMs = opts.intervalMs ?? 1_000;
    this.#enabled = total >= (opts.minBytes ?? PROGRESS_MIN_BYTES);
  }

  update(done: number): void {
    if (!this.#enabled || this.#finished) return;
    const now = Date.now();
    if (done >= this.#total) this.#finished = true;
    else if (
      done - this.#lastDone < this.#step &&
      (now - this.#lastAt < this.#intervalMs || done === this.#lastDone)
    )
      return;
    this.#lastDone = done;
    this.#lastAt = now;
    this.#emit(Math.min(done, this.#total), this.#total);
  }
}

/** `52428800 of 209715200 bytes (25%)` */
export function progressText(done: number, total: number): string {
  const pct = total > 0 ? Math.floor((done / total) * 100) : 100;
  return `${done} of ${total} bytes (${pct}%)`;
}
