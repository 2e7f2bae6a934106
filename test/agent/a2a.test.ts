import { create } from '@bufbuild/protobuf';
import { afterAll, describe, expect, it } from 'vitest';
import {
  A2aEndpoint,
  type A2aEndpoint as A2aEndpointT,
  type A2aFailure,
  type A2aInbound,
  AgentClient,
  MemoryRelay,
} from '../../src/agent/index.js';
import { ProbeSchema, TaskEventSchema, TaskState } from '../../src/protocol/a2a.js';
import { generatePairingKey, parsePairingKey } from '../../src/protocol/e2ee.js';
import { eventually } from '../helpers/processes.js';

const SECRET = 'objective-7f3a-do-not-leak';

// A2A logic over the in-memory relay; the wire between real processes is the end-to-end suites' part.
describe('a2a channels', () => {
  const relay = new MemoryRelay({ capture: true });
  const clients: AgentClient[] = [];

  afterAll(async () => {
    await Promise.all(clients.map((c) => c.close()));
  });

  async function pair(id: string, opts: { planner?: Partial<EndOpts>; worker?: Partial<EndOpts> } = {}) {
    const planner = await end(`${id}-p`, 'initiator', opts.planner);
    const worker = await end(`${id}-w`, 'responder', opts.worker);
    return { planner, worker };
  }
  interface EndOpts {
    e2ee: boolean;
    pairingKey?: Uint8Array;
  }
  async function end(agentId: string, role: 'initiator' | 'responder', o: Partial<EndOpts> = {}) {
    const agent = new AgentClient({
      servers: ['memory'],
      apiKey: 'key',
      agentId,
      kind: role === 'initiator' ? 'planner' : 'worker',
      dialer: relay.dialer(),
    });
    clients.push(agent);
    await agent.start().waitConnected();
    return new A2aEndpoint({
      agent,
      role,
      e2ee: o.e2ee ?? true,
      pairingKey: o.pairingKey,
      handshakeTimeoutMs: 3000,
    });
  }
  const next = (e: A2aEndpointT) => new Promise<A2aInbound>((res) => e.once('message', res));
  const failure = (e: A2aEndpointT) => new Promise<A2aFailure>((res) => e.once('failure', res));
  const event = (taskId: string, message: string) => ({
    case: 'taskEvent' as const,
    value: create(TaskEventSchema, { taskId, seq: 1n, state: TaskState.RUNNING, message }),
  });

  it('sealed - messages both ways, the relay sees only ciphertext', async () => {
    const { planner, worker } = await pair('sealed');
    const atWorker = next(worker);
    await planner.send('sealed-w', 't1', { case: 'probe', value: create(ProbeSchema, { probeId: SECRET }) });
    const m = await atWorker;
    expect(m).toMatchObject({ peer: 'sealed-p', channel: 't1' });
    expect(m.msg.case === 'probe' && m.msg.value.probeId).toBe(SECRET);
    const atPlanner = next(planner);
    await worker.send('sealed-p', 't1', event('t1', `${SECRET}-reply`));
    const r = await atPlanner;
    expect(r.msg.case === 'taskEvent' && r.msg.value.message).toBe(`${SECRET}-reply`);
    expect(relay.captured.some((e) => e.kind === 'a2a.sealed')).toBe(true);
    const decoded = relay.captured.map((e) => Buffer.from(e.payload).toString('latin1')).join('\n');
    expect(decoded).not.toContain(SECRET);
  });

  it('pairing - matching keys work; mismatched keys fail on both ends naming --e2ee-key-file', async () => {
    const k = parsePairingKey(generatePairingKey());
    const ok = await pair('pk-ok', { planner: { pairingKey: k }, worker: { pairingKey: k } });
    const got = next(ok.worker);
    await ok.planner.send('pk-ok-w', 'c', { case: 'probe', value: create(ProbeSchema, { probeId: 'x' }) });
    await got;

    const bad = await pair('pk-bad', {
      planner: { pairingKey: k },
      worker: { pairingKey: parsePairingKey(generatePairingKey()) },
    });
    const workerFailure = failure(bad.worker);
    await expect(
      bad.planner.send('pk-bad-w', 'c', { case: 'probe', value: create(ProbeSchema, { probeId: 'x' }) }),
    ).rejects.toThrow(/--e2ee-key-file/);
    expect((await workerFailure).message).toMatch(/--e2ee-key-file/);

    const oneSided = await pair('pk-one', { planner: { pairingKey: k } });
    await expect(
      oneSided.planner.send('pk-one-w', 'c', { case: 'probe', value: create(ProbeSchema, { probeId: 'x' }) }),
    ).rejects.toThrow(/--e2ee-key-file/);
  });

  it('plaintext - an encrypting end refuses plaintext, naming --a2a-e2ee, and delivers nothing', async () => {
    const { planner, worker } = await pair('plain', { planner: { e2ee: false } });
    let delivered = false;
    worker.on('message', () => {
      delivered = true;
    });
    const refused = failure(planner);
    const workerSide = failure(worker);
    await planner.send('plain-w', 'c', { case: 'probe', value: create(ProbeSchema, { probeId: 'x' }) });
    expect((await refused).message).toMatch(/--a2a-e2ee/);
    expect((await workerSide).code).toBe('plaintext_refused');
    expect(delivered).toBe(false);

    const both = await pair('plain-both', { planner: { e2ee: false }, worker: { e2ee: false } });
    const got = next(both.worker);
    await both.planner.send('plain-both-w', 'c', {
      case: 'probe',
      value: create(ProbeSchema, { probeId: 'p' }),
    });
    expect((await got).msg.case).toBe('probe');
  });

  it('peers - a handshake to an agent that is not connected fails naming it', async () => {
    const planner = await end('lonely-p', 'initiator');
    await expect(
      planner.send('ghost', 'c', { case: 'probe', value: create(ProbeSchema, { probeId: 'x' }) }),
    ).rejects.toThrow(/ghost is not connected/);
  });

  it('violations - a replayed frame is a channel violation, not a crash', async () => {
    const { planner, worker } = await pair('replay');
    const got = next(worker);
    await planner.send('replay-w', 'c', { case: 'probe', value: create(ProbeSchema, { probeId: 'x' }) });
    await got;
    // Replay the recorded ciphertext through the relay, as a hostile relay or peer would.
    const sealed = relay.captured.filter((e) => e.to === 'replay-w' && e.kind === 'a2a.sealed');
    const raw = clients.find((c) => c.agentId === 'replay-p')!;
    const violation = failure(worker);
    raw.send({
      to: 'replay-w',
      channel: 'c',
      seq: sealed[0]!.seq,
      kind: 'a2a.sealed',
      payload: sealed[0]!.payload,
    });
    const v = await violation;
    expect(v).toMatchObject({ channel: 'c', code: 'e2ee_violation' });
    expect(v.message).toMatch(/replay/);
  });

  it('loss - an authentic frame after a lost one replaces the session (both ends resync), no violation', async () => {
    const { planner, worker } = await pair('loss');
    const agent = clients.find((c) => c.agentId === 'loss-w')!;
    // Lose the second sealed frame between relay and worker, as a relay shedding load would.
    const deliver = agent.listeners('envelope');
    agent.removeAllListeners('envelope');
    agent.on('envelope', (env) => {
      if (env.kind === 'a2a.sealed' && env.channel === 'g' && env.seq === 1n) return;
      for (const l of deliver) l(env);
    });
    const failures: A2aFailure[] = [];
    worker.on('failure', (f) => failures.push(f));
    planner.on('failure', (f) => failures.push(f));
    const got: string[] = [];
    worker.on('message', (m) => {
      if (m.msg.case === 'probe') got.push(m.msg.value.probeId);
    });
    const resynced = Promise.all([
      new Promise((res) => planner.once('resync', res)),
      new Promise((res) => worker.once('resync', res)),
    ]);
    for (const id of ['m0', 'm1', 'm2'])
      await planner.send('loss-w', 'g', { case: 'probe', value: create(ProbeSchema, { probeId: id }) });
    await resynced;
    // The new session carries what the application resends (the planner resumes its tasks).
    await planner.send('loss-w', 'g', { case: 'probe', value: create(ProbeSchema, { probeId: 'm3' }) });
    await eventually(() => got.includes('m3'));
    expect(got).toEqual(['m0', 'm3']);
    expect(failures.filter((f) => f.code === 'e2ee_violation')).toEqual([]);
  });

  it('replay - a replayed handshake message (either one) is ignored and the live pair keeps working', async () => {
    const { planner, worker } = await pair('hsr');
    const probe = (id: string) => ({ case: 'probe' as const, value: create(ProbeSchema, { probeId: id }) });
    const got: string[] = [];
    worker.on('message', (m) => m.msg.case === 'probe' && got.push(m.msg.value.probeId));
    const trouble: string[] = [];
    for (const e of [planner, worker]) {
      e.on('failure', (f) => trouble.push(`failure ${f.code}`));
      e.on('resync', () => trouble.push('resync'));
    }
    await planner.send('hsr-w', 't', probe('before'));
    await eventually(() => got.includes('before'));
    const recorded = (kind: string, to: string) =>
      relay.captured.filter((e) => e.to === to && e.kind === kind).map((e) => Buffer.from(e.payload));
    const [hs1] = recorded('a2a.hs1', 'hsr-w');
    expect(hs1!.length).toBe(65);
    const rawPlanner = clients.find((c) => c.agentId === 'hsr-p')!;
    const rawWorker = clients.find((c) => c.agentId === 'hsr-w')!;
    // hs1 replayed at the worker, as a hostile relay would: ignored.
    rawPlanner.send({ to: 'hsr-w', channel: 'handshake', kind: 'a2a.hs1', payload: hs1! });
    await planner.send('hsr-w', 't', probe('after-hs1'));
    await eventually(() => got.includes('after-hs1'));
    const back = new Promise<A2aInbound>((res) => planner.once('message', res));
    await worker.send('hsr-p', 't', probe('reply'));
    expect((await back).msg.case).toBe('probe');
    expect(trouble).toEqual([]);

    // A stale hs2 reaching a planner in the middle of a new handshake: refused, the genuine one read.
    const [hs2] = recorded('a2a.hs2', 'hsr-p');
    planner.reset('hsr-w');
    const sent = planner.send('hsr-w', 'u', probe('after-hs2'));
    rawWorker.send({ to: 'hsr-p', channel: 'handshake', kind: 'a2a.hs2', payload: hs2! });
    await sent;
    await eventually(() => got.includes('after-hs2'));
    expect(trouble.filter((t) => t.startsWith('failure'))).toEqual([]);
  });
});

describe('a2a resync', () => {
  it('resync - after a relay restart both ends re-key and messages flow again', async () => {
    const relay = new MemoryRelay();
    const mk = (agentId: string, role: 'initiator' | 'responder') => {
      const agent = new AgentClient({
        servers: ['memory'],
        apiKey: 'key',
        agentId,
        kind: role === 'initiator' ? 'planner' : 'worker',
        dialer: relay.dialer(),
        backoffMs: [50],
      });
      return { agent: agent.start(), ep: new A2aEndpoint({ agent, role, e2ee: true }) };
    };
    const p = mk('rs-p', 'initiator');
    const w = mk('rs-w', 'responder');
    await Promise.all([p.agent.waitConnected(), w.agent.waitConnected()]);
    const first = new Promise<A2aInbound>((res) => w.ep.once('message', res));
    await p.ep.send('rs-w', 't', { case: 'probe', value: create(ProbeSchema, { probeId: 'before' }) });
    await first;

    const resynced = Promise.all([
      new Promise((res) => p.ep.once('resync', res)),
      new Promise((res) => w.ep.once('resync', res)),
    ]);
    relay.restart();
    await resynced;
    const atWorker = new Promise<A2aInbound>((res) => w.ep.once('message', res));
    await p.ep.send('rs-w', 't', { case: 'probe', value: create(ProbeSchema, { probeId: 'after' }) });
    const m = await atWorker;
    expect(m.msg.case === 'probe' && m.msg.value.probeId).toBe('after');
    const atPlanner = new Promise<A2aInbound>((res) => p.ep.once('message', res));
    await w.ep.send('rs-p', 't', { case: 'probe', value: create(ProbeSchema, { probeId: 'back' }) });
    expect((await atPlanner).msg.case).toBe('probe');
    await Promise.all([p.agent.close(), w.agent.close()]);
  });
});
