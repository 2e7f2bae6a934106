import { create } from '@bufbuild/protobuf';
import { describe, expect, it } from 'vitest';
import { EnvelopeSchema } from '../../src/protocol/control.js';
import { HoldQueue } from '../../src/relay/hold.js';
import { Accounting, itemCost, MIN_ITEM_COST } from '../../src/relay/limits.js';

const MiB = 1024 * 1024;
const env = (to: string, bytes: number) =>
  create(EnvelopeSchema, { to, from: 'a', channel: 'c', kind: 'k', payload: new Uint8Array(bytes) });

describe('limits', () => {
  it('accounting - an account cannot reserve past its buffer; others are unaffected', () => {
    const acc = new Accounting({ bufferBytes: 10 * MiB, holdBytes: MiB });
    expect(acc.reserve('a', 6 * MiB)).toBe(true);
    expect(acc.reserve('a', 5 * MiB)).toBe(false);
    expect(acc.reserve('b', 10 * MiB)).toBe(true);
    acc.release('a', 6 * MiB);
    expect(acc.reserve('a', 10 * MiB)).toBe(true);
    // Releasing more than was reserved never goes below zero.
    acc.release('a', 20 * MiB);
    expect(acc.stats('a').buffered_bytes).toBe(0);
  });

  it('accounting - drops are counted per account and in total, by reason', () => {
    const acc = new Accounting({ bufferBytes: MiB, holdBytes: MiB });
    acc.dropped('a', 'agent_buffer_full');
    acc.dropped('a', 'agent_buffer_full');
    acc.dropped('b', 'control_backlog');
    expect(acc.stats('a').drops).toEqual({ agent_buffer_full: 2 });
    expect(acc.totals()).toEqual({ agent_buffer_full: 2, control_backlog: 1 });
  });

  it('accounting - a drain from a large peak is announced once; small ones never', () => {
    let drained = 0;
    const acc = new Accounting({ bufferBytes: 512 * MiB, holdBytes: 512 * MiB }, () => drained++);
    acc.reserve('a', 10 * MiB);
    acc.release('a', 10 * MiB);
    expect(drained).toBe(0);
    acc.reserve('a', 100 * MiB);
    acc.reserveHold('b', 20 * MiB);
    acc.release('a', 100 * MiB);
    expect(drained).toBe(1);
    acc.releaseHold('b', 20 * MiB);
    expect(drained).toBe(1);
  });

  it('limits - every item costs at least the minimum', () => {
    expect(itemCost(1)).toBe(MIN_ITEM_COST);
    expect(itemCost(MiB)).toBe(MiB);
  });

  it('hold - held bytes stay within the account’s hold budget and are given back on release', () => {
    const acc = new Accounting({ bufferBytes: MiB, holdBytes: 3 * MiB });
    const hold = new HoldQueue({ windowMs: 60_000, accounting: acc });
    hold.markGone('a', 'w');
    const outcomes = Array.from({ length: 5 }, () => hold.hold('a', env('w', MiB - 1000), () => {}));
    expect(outcomes).toEqual(['held', 'held', 'held', 'full', 'full']);
    expect(acc.stats('a')).toMatchObject({ held_bytes: expect.any(Number), drops: { hold_full: 2 } });
    expect(acc.stats('a').held_bytes).toBeLessThanOrEqual(3 * MiB);
    expect(hold.append('a', env('w', 10), () => {})).toBe('held');
    expect(hold.release('a', 'w')).toHaveLength(4);
    expect(acc.stats('a').held_bytes).toBe(0);
    // Nothing held and not reconnecting: reported now.
    expect(hold.append('a', env('w', 10), () => {})).toBeUndefined();
  });
});
