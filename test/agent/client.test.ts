/** AgentClient's send queue as bulk senders see it: whenWritable wakes on writes, close and abort. */
import { describe, expect, it } from 'vitest';
import { AgentClient, MemoryRelay } from '../../src/agent/index.js';

describe('agent send queue', () => {
  const relay = new MemoryRelay();
  const agent = (agentId: string) =>
    new AgentClient({
      servers: ['memory'],
      apiKey: 'key',
      agentId,
      kind: 'planner',
      backoffMs: [50],
      dialer: relay.dialer(),
    });
  const payload = new Uint8Array(1024 * 1024);
  /** Whether `p` has resolved once everything already due has run (a turn of the event loop); no timer decides. */
  const state = async (p: Promise<void>) => {
    let resolved = false;
    void p.then(() => {
      resolved = true;
    });
    await new Promise((r) => setImmediate(r));
    return resolved ? 'resolved' : 'pending';
  };

  it('whenWritable - resolves at once under the limit, else once the queue drains to the relay', async () => {
    const a = agent('ww-drain');
    try {
      expect(await state(a.whenWritable(0))).toBe('resolved');
      // Queued before the stream is up: nothing can drain yet.
      for (let i = 0; i < 4; i++) a.send({ to: 'nobody', channel: 'c', kind: 'k', payload });
      const writable = a.whenWritable(1024 * 1024);
      expect(await state(writable)).toBe('pending');
      await a.start().waitConnected();
      await writable;
      expect(a.queuedBytes).toBeLessThanOrEqual(1024 * 1024);
    } finally {
      await a.close();
    }
  });

  it('whenWritable - never hangs: an abort or close wakes a writer the queue does not', async () => {
    // No relay at this address (the gRPC adapter, dialling in vain): the queue never drains.
    const a = new AgentClient({
      servers: ['127.0.0.1:1'],
      apiKey: 'key',
      agentId: 'ww-stuck',
      kind: 'planner',
      backoffMs: [50],
    }).start();
    a.send({ to: 'nobody', channel: 'c', kind: 'k', payload });
    const abort = new AbortController();
    const aborted = a.whenWritable(0, abort.signal);
    const closed = a.whenWritable(0);
    expect(await state(aborted)).toBe('pending');
    abort.abort();
    expect(await state(aborted)).toBe('resolved');
    expect(await state(closed)).toBe('pending');
    await a.close();
    await closed;
  });
});
