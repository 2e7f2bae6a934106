/**
 * @module How often one task's events are replayed. A planner that asks again and again without
 * acknowledging anything (a bug, an old version, a loop between two ends) must not make the worker
 * resend the same events a thousand times a second: such replays are merged and spaced, each twice as
 * far from the last, up to {@link REPLAY_BACKOFF}.maxMs. A replay asked after a calm spell, or after the
 * planner acknowledged something new, goes at once.
 */

export const REPLAY_BACKOFF = { firstMs: 250, maxMs: 30_000 } as const;

/** One per task. Pure: the caller gives the time and the task's acknowledged seq. */
export class ReplayPacer {
  #delayMs = 0;
  #lastAt = Number.NEGATIVE_INFINITY;
  #ackedAtLast = -1n;

  /**
   * Schedules the next replay, asked at `now` when the planner had acknowledged up to `acked`; returns
   * how long to wait before sending it (0: at once).
   */
  schedule(now: number, acked: bigint): number {
    const calm = now - this.#lastAt >= 2 * Math.max(this.#delayMs, REPLAY_BACKOFF.firstMs);
    if (calm || acked > this.#ackedAtLast) this.#delayMs = 0;
    else this.#delayMs = Math.min(Math.max(REPLAY_BACKOFF.firstMs, this.#delayMs * 2), REPLAY_BACKOFF.maxMs);
    const at = Math.max(now, this.#lastAt + this.#delayMs);
    this.#lastAt = at;
    this.#ackedAtLast = acked;
    return at - now;
  }
}
