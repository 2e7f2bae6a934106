import { create, toBinary } from '@bufbuild/protobuf';
import { describe, expect, it } from 'vitest';
import {
  A2aMessageSchema,
  ArtifactChunkSchema,
  encodeA2aMessage,
  encodeA2aParts,
  ProbeSchema,
} from '../../src/protocol/a2a.js';
import {
  AgentFrameSchema,
  decodeRelayFrame,
  type Envelope,
  EnvelopeBatchSchema,
  EnvelopeSchema,
  RelayFrameSchema,
} from '../../src/protocol/control.js';
import { encodeAgentEnvelopes, encodeRelayEnvelopes } from '../../src/protocol/envelope-frame.js';

const envelopes = (): Envelope[] => [
  create(EnvelopeSchema, { to: 'w1', kind: 'a2a.plain', payload: new Uint8Array([1, 2, 3]) }),
  // Every field set, multi-byte UTF-8, a seq over 32 bits, a payload whose length needs 3 varint bytes.
  create(EnvelopeSchema, {
    to: 'worker-é',
    from: 'planner-✓',
    channel: 'task-1',
    seq: 2n ** 40n + 5n,
    kind: 'a2a.sealed',
    payload: new Uint8Array(300_000).fill(7),
  }),
  // Defaults (empty strings, seq 0, empty payload) are left out, as toBinary leaves them out.
  create(EnvelopeSchema, { to: 'w2', kind: 'k' }),
  create(EnvelopeSchema, { to: 'w3', kind: 'k', seq: 2n ** 64n - 1n, payload: new Uint8Array(127) }),
  // Both sides of the 32-bit seq fast path; ASCII longer than the short-string loop takes.
  create(EnvelopeSchema, { to: 'w4', channel: 'c'.repeat(65), seq: 2n ** 32n - 1n, kind: 'k' }),
  create(EnvelopeSchema, { to: 'w5', channel: 'ç'.repeat(40), seq: 2n ** 32n, kind: 'k' }),
];

describe('hand-encoded messages (wire-writer)', () => {
  it('are the bytes toBinary writes, both frame kinds', () => {
    const batch = create(EnvelopeBatchSchema, { envelopes: envelopes() });
    const agent = toBinary(
      AgentFrameSchema,
      create(AgentFrameSchema, { frame: { case: 'envelopes', value: batch } }),
    );
    const relay = toBinary(
      RelayFrameSchema,
      create(RelayFrameSchema, { frame: { case: 'envelopes', value: batch } }),
    );
    expect(Buffer.compare(encodeAgentEnvelopes(envelopes()), agent)).toBe(0);
    expect(Buffer.compare(encodeRelayEnvelopes(envelopes()), relay)).toBe(0);
  });

  it('a payload in parts is written as the parts joined', () => {
    const whole = envelopes();
    const parted = whole.map((e) => {
      const p = e.payload;
      return {
        ...e,
        payload: [
          p.subarray(0, 1),
          p.subarray(1, p.length >> 1),
          new Uint8Array(0),
          p.subarray(p.length >> 1),
        ],
      };
    });
    expect(Buffer.compare(encodeAgentEnvelopes(parted), encodeAgentEnvelopes(whole))).toBe(0);
    expect(Buffer.compare(encodeRelayEnvelopes(parted), encodeRelayEnvelopes(whole))).toBe(0);
  });

  it('pass on fields this build does not know, as toBinary does', () => {
    // An envelope from a newer peer, with a field 15 (varint 9) unknown here.
    const env = create(EnvelopeSchema, { to: 'w1', kind: 'k' });
    env.$unknown = [{ no: 15, wireType: 0, data: new Uint8Array([9]) }];
    const batch = create(EnvelopeBatchSchema, { envelopes: [env] });
    const relay = toBinary(
      RelayFrameSchema,
      create(RelayFrameSchema, { frame: { case: 'envelopes', value: batch } }),
    );
    expect(Buffer.compare(encodeRelayEnvelopes([env]), relay)).toBe(0);
    const [again] = (decodeRelayFrame(relay, 1 << 20).frame.value as { envelopes: Envelope[] }).envelopes;
    expect(again?.$unknown).toEqual(env.$unknown);
  });

  it('artifact chunks are the bytes toBinary writes; other messages go through toBinary', () => {
    const chunks = [
      create(ArtifactChunkSchema, {
        taskId: 't-1',
        name: 'docs/ré.bin',
        offset: 262_144n,
        data: new Uint8Array(262_144).fill(3),
        chunkSha256: 'ab'.repeat(32),
        last: true,
      }),
      create(ArtifactChunkSchema, { taskId: 't-1', name: 'empty', chunkSha256: 'cd'.repeat(32) }),
      create(ArtifactChunkSchema, {}),
    ];
    for (const value of chunks) {
      const msg = { case: 'artifactChunk' as const, value };
      const want = toBinary(A2aMessageSchema, create(A2aMessageSchema, { msg }));
      expect(Buffer.compare(encodeA2aMessage(msg), want)).toBe(0);
      // In parts, the chunk's data is its own part (the same memory, not a copy).
      const parts = encodeA2aParts(msg);
      expect(Buffer.compare(Buffer.concat(parts), want)).toBe(0);
      expect(parts[1]).toBe(value.data);
    }
    const probe = { case: 'probe' as const, value: create(ProbeSchema, { probeId: 'p' }) };
    expect(encodeA2aMessage(probe)).toEqual(
      toBinary(A2aMessageSchema, create(A2aMessageSchema, { msg: probe })),
    );
    expect(encodeA2aParts(probe)).toEqual([encodeA2aMessage(probe)]);
  });
});
