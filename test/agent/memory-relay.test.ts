/** The in-memory relay keeps the relay's contract as agents see it, so logic tests on it mean something. */
import { afterEach, describe, expect, it } from 'vitest';
import { AgentClient, type InboundEnvelope, MemoryRelay } from '../../src/agent/index.js';
import { type DeliveryError, ErrorCode } from '../../src/protocol/control.js';

describe('memory relay', () => {
  const open: AgentClient[] = [];
  afterEach(async () => {
    await Promise.all(open.splice(0).map((a) => a.close()));
  });
  const agent = (
    relay: MemoryRelay,
    agentId: string,
    extra: { apiKey?: string; sessionToken?: string } = {},
  ) => {
    const a = new AgentClient({
      servers: ['memory'],
      apiKey: extra.apiKey ?? 'key',
      sessionToken: extra.sessionToken,
      agentId,
      kind: 'worker',
      backoffMs: [20],
      dialer: relay.dialer(),
    });
    open.push(a);
    return a.start();
  };
  const payload = new TextEncoder().encode('hi');

  it('hello/welcome - welcomes with the account of the key; envelopes carry the stamped sender', async () => {
    const relay = new MemoryRelay({ keys: { k1: 'acct-1' } });
    const a = agent(relay, 'a', { apiKey: 'k1' });
    const b = agent(relay, 'b', { apiKey: 'k1' });
    await Promise.all([a.waitConnected(), b.waitConnected()]);
    expect(relay.agents.sort()).toEqual(['a', 'b']);
    const got = new Promise<InboundEnvelope>((res) => b.once('envelope', res));
    a.send({ to: 'b', channel: 'c', kind: 'k', payload });
    expect(await got).toMatchObject({ from: 'a', channel: 'c', kind: 'k' });
  });

  it('delivery errors - an absent peer or a bad header is refused to the sender, naming it', async () => {
    const relay = new MemoryRelay();
    const a = agent(relay, 'lone');
    await a.waitConnected();
    const refused = new Promise<DeliveryError>((res) => a.once('deliveryError', res));
    a.send({ to: 'ghost', channel: 'c', kind: 'k', payload });
    expect(await refused).toMatchObject({ to: 'ghost', code: ErrorCode.PEER_NOT_FOUND });
    const bad = new Promise<DeliveryError>((res) => a.once('deliveryError', res));
    a.send({ to: 'bad id!', channel: 'c', kind: 'k', payload });
    expect((await bad).code).toBe(ErrorCode.INVALID_ARGUMENT);
  });

  it('accounts - agents of another account are not reachable', async () => {
    const relay = new MemoryRelay({ keys: { k1: 'one', k2: 'two' } });
    const a = agent(relay, 'x1', { apiKey: 'k1' });
    const b = agent(relay, 'x2', { apiKey: 'k2' });
    await Promise.all([a.waitConnected(), b.waitConnected()]);
    const refused = new Promise<DeliveryError>((res) => a.once('deliveryError', res));
    a.send({ to: 'x2', channel: 'c', kind: 'k', payload });
    expect((await refused).code).toBe(ErrorCode.PEER_NOT_FOUND);
  });

  it('refusals - an unknown key and a taken id are fatal; the same session token takes over', async () => {
    const relay = new MemoryRelay({ keys: { k1: 'acct' } });
    await expect(agent(relay, 'nokey', { apiKey: 'wrong' }).waitConnected()).rejects.toThrow(
      /UNAUTHENTICATED/,
    );
    const first = agent(relay, 'dup', { apiKey: 'k1', sessionToken: 's1' });
    await first.waitConnected();
    await expect(agent(relay, 'dup', { apiKey: 'k1', sessionToken: 's2' }).waitConnected()).rejects.toThrow(
      /ALREADY_EXISTS/,
    );
    const again = agent(relay, 'dup', { apiKey: 'k1', sessionToken: 's1' });
    const dropped = new Promise<string>((res) =>
      first.on('status', (s) => s.type === 'disconnected' && res(s.reason)),
    );
    await again.waitConnected();
    expect(await dropped).toMatch(/replaced/);
  });

  it('restart - agents redial and are welcomed again', async () => {
    const relay = new MemoryRelay();
    const a = agent(relay, 'r');
    await a.waitConnected();
    const back = new Promise<void>((res) => a.on('status', (s) => s.type === 'connected' && res()));
    relay.restart();
    await back;
    expect(a.connected).toBe(true);
  });
});
