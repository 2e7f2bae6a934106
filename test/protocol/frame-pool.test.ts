import { describe, expect, it } from 'vitest';
import { encodeRelayEnvelopes } from '../../src/protocol/envelope-frame.js';
import { FramePool } from '../../src/protocol/frame-pool.js';

const MIB = 1024 * 1024;

describe('frame pool', () => {
  it('gives a returned buffer to the next frame of its size class; other buffers are not kept', () => {
    const pool = new FramePool(2);
    const a = pool.take(MIB + 100);
    expect(a.byteLength).toBe(MIB + 100);
    pool.give(a);
    // Same class (rounded up to 64 KiB): the same memory again.
    const b = pool.take(MIB + 200);
    expect(b.buffer).toBe(a.buffer);
    // Another class, or a buffer still out: fresh memory.
    expect(pool.take(MIB + 200).buffer).not.toBe(a.buffer);
    expect(pool.take(2 * MIB).buffer).not.toBe(a.buffer);
    // Buffers of no size class, or views into one, are left to the garbage collector.
    pool.give(Buffer.alloc(MIB + 5));
    pool.give(Buffer.allocUnsafe(3 * MIB).subarray(1));
    expect(pool.take(MIB + 5).buffer).not.toBe(b.buffer);
  });

  it('keeps at most its bound of idle buffers, and never one twice', () => {
    const pool = new FramePool(2);
    const out = [pool.take(MIB), pool.take(MIB), pool.take(MIB)];
    for (const f of out) pool.give(f);
    pool.give(out[2]!);
    const again = new Set([pool.take(MIB).buffer, pool.take(MIB).buffer, pool.take(MIB).buffer]);
    expect(again.size).toBe(3);
    expect([...again].filter((ab) => out.some((f) => f.buffer === ab))).toHaveLength(2);
  });

  it('an encoder writing into a pooled buffer writes the same bytes', () => {
    const pool = new FramePool();
    const env = {
      $typeName: 'nfltr.v1.Envelope' as const,
      to: 'w',
      from: 'p',
      channel: 'c',
      seq: 3n,
      kind: 'a2a.sealed',
      payload: new Uint8Array(MIB).fill(9),
    };
    const dirty = pool.take(MIB + 64);
    dirty.fill(0xee);
    pool.give(dirty);
    const pooled = encodeRelayEnvelopes([env], pool.take);
    expect(pooled.buffer).toBe(dirty.buffer);
    expect(Buffer.compare(pooled, encodeRelayEnvelopes([env]))).toBe(0);
  });
});
