import { describe, expect, it } from 'vitest';
import { REPLAY_BACKOFF, ReplayPacer } from '../../src/worker/replay-pacer.js';

describe('replay pacer', () => {
  it('replay pacer - a planner asking in a tight loop gets replays spaced ever wider, up to the cap', () => {
    const p = new ReplayPacer();
    let now = 0;
    const sent: number[] = [];
    // One request a millisecond for two minutes, nothing acknowledged: each waits for the one scheduled.
    let nextAt = -1;
    for (; now < 120_000; now++) {
      if (now < nextAt) continue; // merged into the replay already waiting
      nextAt = now + p.schedule(now, 0n);
      sent.push(nextAt);
    }
    expect(sent.slice(0, 5)).toEqual([0, 250, 750, 1_750, 3_750]);
    expect(sent.length).toBeLessThan(12);
    const gaps = sent.slice(1).map((t, i) => t - sent[i]!);
    expect(Math.max(...gaps)).toBe(REPLAY_BACKOFF.maxMs);
  });

  it('replay pacer - a calm spell or a new acknowledgement sends the next replay at once', () => {
    const p = new ReplayPacer();
    expect(p.schedule(0, 0n)).toBe(0);
    expect(p.schedule(1, 0n)).toBe(249);
    expect(p.schedule(251, 0n)).toBe(499);
    // The planner acknowledged something since: no wait.
    expect(p.schedule(751, 3n)).toBe(0);
    // The periodic check (every few seconds) is never held back.
    expect(p.schedule(10_751, 3n)).toBe(0);
    expect(p.schedule(20_751, 3n)).toBe(0);
  });
});
