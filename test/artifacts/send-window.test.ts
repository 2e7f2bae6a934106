/** The sender's window alone: what goes next, what an ack changes, rewinds; no files, no clock. */
import { describe, expect, it } from 'vitest';
import { type ChunkPlan, SendWindow } from '../../src/agent/artifacts/send-window.js';

/** Takes chunks until the window says stop. */
const drain = (w: SendWindow, chunk: number) => {
  const out: ChunkPlan[] = [];
  for (let c = w.next(chunk); c; c = w.next(chunk)) {
    w.sent(c);
    out.push(c);
  }
  return out;
};

describe('send window', () => {
  it('order and window - files go in order, in chunks, and stop at the window', () => {
    const w = new SendWindow(
      [
        { name: 'a', size: 25 },
        { name: 'empty', size: 0 },
        { name: 'b', size: 10 },
      ],
      20,
    );
    expect(w.total).toBe(35);
    expect(drain(w, 10).map((c) => [c.name, c.offset, c.length, c.last])).toEqual([
      ['a', 0, 10, false],
      ['a', 10, 10, false],
    ]);
    expect(w.inFlight).toBe(20);
    expect(w.ack({ name: 'a', offset: 10 })).toBe('progress');
    expect(drain(w, 10).map((c) => [c.name, c.offset, c.length, c.last])).toEqual([
      ['a', 20, 5, true],
      ['empty', 0, 0, true],
      ['b', 0, 10, true],
    ]);
    // The window is checked before each chunk: at most one chunk over it.
    expect(w.inFlight).toBe(25);
  });

  it('acks - done and error finish a file; an old offset changes nothing; unknown names are ignored', () => {
    const w = new SendWindow(
      [
        { name: 'a', size: 10 },
        { name: 'b', size: 10 },
      ],
      100,
    );
    drain(w, 10);
    expect(w.ack({ name: 'a', offset: 10, done: true })).toBe('progress');
    expect(w.ack({ name: 'a', offset: 10, done: true })).toBe('ignored');
    expect(w.ack({ name: 'zzz', offset: 1 })).toBe('ignored');
    expect(w.ack({ name: 'b', offset: 0 })).toBe('none');
    expect(w.ack({ name: 'b', offset: 0, error: 'discarded: bad' })).toBe('progress');
    expect(w.open).toBe(0);
    expect(w.acked).toBe(20);
    expect(w.inFlight).toBe(0);
    expect(w.failed).toEqual([{ name: 'b', error: 'discarded: bad' }]);
  });

  it('rewind - a resend ack or a rewind sends again from the acknowledged offset, counting the repeat', () => {
    const w = new SendWindow([{ name: 'a', size: 30 }], 100);
    drain(w, 10);
    expect(w.ack({ name: 'a', offset: 10 })).toBe('progress');
    w.rewindAll();
    expect(w.inFlight).toBe(0);
    const again = drain(w, 10);
    expect(again.map((c) => c.offset)).toEqual([10, 20]);
    // A receiver that lost its state has fewer bytes than it acknowledged: back to its offset.
    expect(w.ack({ name: 'a', offset: 5, resend: true })).toBe('rewound');
    expect(w.acked).toBe(5);
    const c = w.next(10)!;
    expect(c).toMatchObject({ offset: 5, length: 10 });
    expect(w.sent(c)).toBe(10);
    // An ack beyond what was sent since (the receiver had it already) skips ahead.
    expect(w.ack({ name: 'a', offset: 25 })).toBe('progress');
    expect(w.next(10)).toMatchObject({ offset: 25, length: 5, last: true });
  });

  it('a chunk overtaken by an ack - the ack wins', () => {
    const w = new SendWindow([{ name: 'a', size: 20 }], 100);
    const c = w.next(10)!;
    w.ack({ name: 'a', offset: 20, done: true });
    expect(w.sent(c)).toBe(0);
    expect(w.open).toBe(0);
    expect(w.next(10)).toBeUndefined();
  });
});
