/** The receiver's ledger alone: announcements, limits and what to do with each chunk; no files. */
import { describe, expect, it } from 'vitest';
import { type ChunkFields, ReceiveLedger } from '../../src/agent/artifacts/receive-ledger.js';

const H = 'a'.repeat(64);
const chunk = (offset: number, length: number, last = false, ok = true): ChunkFields => ({
  offset,
  length,
  last,
  hashOk: () => ok,
});

describe('receive ledger', () => {
  it('announce - names, hashes, duplicates and limits are checked once; a repeat counts once', () => {
    const l = new ReceiveLedger(100, '--max-artifact-bytes of nfltr worker');
    const first = l.announce([{ name: 'a\\b', size: 60, sha256: H }]);
    expect(first.fresh.map((e) => e.name)).toEqual(['a/b']);
    expect(l.announce([{ name: 'a/b', size: 60, sha256: H }])).toMatchObject({
      fresh: [],
      again: [{ name: 'a/b' }],
    });
    expect(() => l.announce([{ name: 'c', size: 41, sha256: H }])).toThrow(
      'the files total 101 bytes, over the limit of 100 bytes per task (--max-artifact-bytes of nfltr worker)',
    );
    expect(() => l.announce([{ name: 'a/b', size: 61, sha256: H }])).toThrow(/already announced/);
    expect(() => l.announce([{ name: 'x', size: 1, sha256: 'nope' }])).toThrow(
      'artifact x has no valid sha256',
    );
    expect(() => l.announce([{ name: '../x', size: 1, sha256: H }])).toThrow("'..' is not allowed");
    expect(() =>
      l.announce([
        { name: 'd', size: 1, sha256: H },
        { name: 'd', size: 1, sha256: H },
      ]),
    ).toThrow('two artifacts are named "d"');
    // Nothing of a refused announcement was recorded: 40 bytes still fit.
    expect(l.announce([{ name: 'c', size: 40, sha256: H }]).fresh).toHaveLength(1);
  });

  it('chunks - in order written, repeats skipped, a hole asks once, a bad hash or size fails', () => {
    const l = new ReceiveLedger(1_000);
    const [e] = l.announce([{ name: 'f', size: 30, sha256: H }]).fresh;
    expect(l.plan(e!, chunk(0, 10))).toEqual({ kind: 'write', fresh: 10 });
    l.wrote(e!, chunk(0, 10), 10);
    expect(l.plan(e!, chunk(20, 10))).toEqual({ kind: 'hole', ask: true });
    expect(l.plan(e!, chunk(25, 5))).toEqual({ kind: 'hole', ask: false });
    const overlap = chunk(5, 10);
    expect(l.plan(e!, overlap)).toEqual({ kind: 'write', fresh: 5 });
    l.wrote(e!, overlap, 5);
    expect(l.duplicateBytes).toBe(5);
    expect(l.plan(e!, chunk(15, 10, false, false))).toEqual({
      kind: 'fail',
      why: 'chunk at offset 15 does not match its SHA-256',
    });
    expect(l.plan(e!, chunk(15, 20))).toEqual({ kind: 'fail', why: 'more bytes than the announced 30' });
    const last = chunk(15, 15, true);
    l.wrote(e!, last, 15);
    expect(l.lastProblem(e!, last)).toBeUndefined();
    e!.complete = true;
    expect(l.plan(e!, chunk(0, 10))).toEqual({ kind: 'whole' });
    e!.error = 'discarded';
    expect(l.plan(e!, chunk(0, 10))).toEqual({ kind: 'drop' });
  });

  it('unannounced files - bytes count against the limit; a short last chunk is a problem', () => {
    const l = new ReceiveLedger(25, '--max-artifact-bytes of nfltr mcp');
    const a = l.open('a');
    l.wrote(a, chunk(0, 20), 20);
    const b = l.open('b');
    expect(l.plan(b, chunk(0, 10))).toEqual({
      kind: 'fail',
      why: "the task's files exceed the limit of 25 bytes (--max-artifact-bytes of nfltr mcp)",
    });
    expect(l.plan(b, chunk(0, 30))).toEqual({
      kind: 'fail',
      why: 'larger than the limit of 25 bytes (--max-artifact-bytes of nfltr mcp)',
    });
    const c = l.open('c');
    l.recovered(c, 3);
    expect(l.bytes).toBe(23);
    expect(l.lastProblem(c, chunk(0, 2, true))).toBe('the last chunk ends at 2, but 3 bytes arrived');
  });
});
