import { join } from 'node:path';
import { create } from '@bufbuild/protobuf';
import { afterAll, describe, expect, it } from 'vitest';
import {
  A2aEndpoint,
  A2aError,
  type A2aFailure,
  type A2aInbound,
  AgentClient,
  fingerprint,
  KnownPeers,
  MemoryRelay,
} from '../../src/agent/index.js';
import { ProbeSchema } from '../../src/protocol/a2a.js';
import type { Envelope } from '../../src/protocol/control.js';
import { E2eeHandshake, generatePairingKey, parsePairingKey } from '../../src/protocol/e2ee.js';
import { generateX25519, type X25519KeyPair } from '../../src/protocol/e2ee-noise.js';
import type { Logger } from '../../src/util/log.js';
import { eventually, tempDir } from '../helpers/processes.js';

const probe = (id: string) => ({ case: 'probe' as const, value: create(ProbeSchema, { probeId: id }) });

/** One agent: its own static key and pins file, as `nfltr mcp` / `nfltr worker` keep in their state dir. */
interface End {
  agent: AgentClient;
  ep: A2aEndpoint;
  key: X25519KeyPair;
  pins: KnownPeers;
  got: string[];
  trouble: string[];
  debug: string[];
}

// A2A handshakes over the in-memory relay with real pin files; the same against real processes is
// test/e2ee/pinned-keys.test.ts.
describe('a2a pinned keys', () => {
  const clients: AgentClient[] = [];
  afterAll(async () => {
    await Promise.all(clients.map((c) => c.close()));
  });

  async function end(
    relay: MemoryRelay,
    agentId: string,
    role: 'initiator' | 'responder',
    o: { key?: X25519KeyPair; pins?: KnownPeers; pairingKey?: Uint8Array } = {},
  ): Promise<End> {
    const agent = new AgentClient({
      servers: ['memory'],
      apiKey: 'key',
      agentId,
      kind: role === 'initiator' ? 'planner' : 'worker',
      dialer: relay.dialer(),
    });
    clients.push(agent);
    await agent.start().waitConnected();
    const key = o.key ?? generateX25519();
    const pins =
      o.pins ??
      (role === 'initiator'
        ? new KnownPeers({
            file: join(tempDir(), 'known_workers'),
            peerKind: 'worker',
            acceptCommand: 'nfltr mcp --state-dir DIR --accept-worker-key PEER',
          })
        : new KnownPeers({
            file: join(tempDir(), 'known_planners'),
            peerKind: 'planner',
            acceptCommand: 'nfltr worker --state-dir DIR --accept-planner-key PEER',
          }));
    const debug: string[] = [];
    const logger: Logger = {
      debug: (msg) => debug.push(msg),
      info: () => {},
      warn: () => {},
      error: () => {},
      child: () => logger,
    };
    const ep = new A2aEndpoint({
      agent,
      role,
      e2ee: true,
      staticKey: key,
      pins,
      pairingKey: o.pairingKey,
      logger,
      handshakeTimeoutMs: 2000,
    });
    const e: End = { agent, ep, key, pins, got: [], trouble: [], debug };
    ep.on('message', (m) => m.msg.case === 'probe' && e.got.push(m.msg.value.probeId));
    ep.on('failure', (f) => e.trouble.push(`failure ${f.code}: ${f.message}`));
    ep.on('resync', () => e.trouble.push('resync'));
    return e;
  }

  const rejection = async (p: Promise<unknown>): Promise<A2aError> => {
    try {
      await p;
    } catch (err) {
      expect(err).toBeInstanceOf(A2aError);
      return err as A2aError;
    }
    throw new Error('expected the send to fail');
  };

  it('pinning - first contact pins both keys; a worker with a new key is refused naming it, both fingerprints and the fix', async () => {
    const relay = new MemoryRelay();
    const p = await end(relay, 'pin-p', 'initiator');
    const w1 = await end(relay, 'pin-w', 'responder');
    await p.ep.send('pin-w', 't', probe('first'));
    await eventually(() => w1.got.includes('first'));
    expect(p.pins.check('pin-w', w1.key.publicKey)).toEqual({ status: 'same' });
    expect(w1.pins.check('pin-p', p.key.publicKey)).toEqual({ status: 'same' });

    // The worker comes back with a new static key (its state dir was replaced), or something poses as it.
    await w1.agent.close();
    const w2 = await end(relay, 'pin-w', 'responder');
    p.ep.reset('pin-w');
    const failed = new Promise<A2aFailure>((res) => p.ep.once('failure', res));
    const err = await rejection(p.ep.send('pin-w', 't', probe('refused')));
    expect(err.code).toBe('peer_key_changed');
    expect(err.message).toContain('worker pin-w presented a different key');
    expect(err.message).toContain(`pinned ${fingerprint(w1.key.publicKey)}`);
    expect(err.message).toContain(`presented ${fingerprint(w2.key.publicKey)}`);
    expect(err.message).toContain(`--accept-worker-key pin-w`);
    expect(err.message).toContain(p.pins.file);
    expect((await failed).code).toBe('peer_key_changed');
    expect(w2.got).toEqual([]);

    // The documented fix: forget the pin (what --accept-worker-key does); the next key is pinned.
    expect(p.pins.forget('pin-w')).toBe(true);
    await p.ep.send('pin-w', 't', probe('accepted'));
    await eventually(() => w2.got.includes('accepted'));
    expect(p.pins.check('pin-w', w2.key.publicKey)).toEqual({ status: 'same' });
  });

  it('pinning - a worker refuses a planner whose key changed; the planner is told the fix on the worker', async () => {
    const relay = new MemoryRelay();
    const p1 = await end(relay, 'wpin-p', 'initiator');
    const w = await end(relay, 'wpin-w', 'responder');
    await p1.ep.send('wpin-w', 't', probe('first'));
    await eventually(() => w.got.includes('first'));
    await p1.agent.close();
    const p2 = await end(relay, 'wpin-p', 'initiator');
    const err = await rejection(p2.ep.send('wpin-w', 't', probe('refused')));
    expect(err.code).toBe('peer_key_changed');
    expect(err.message).toMatch(/^wpin-w refused: planner wpin-p presented a different key/);
    expect(err.message).toContain('--accept-planner-key wpin-p');
    expect(err.message).toContain(`presented ${fingerprint(p2.key.publicKey)}`);
    expect(w.got).toEqual(['first']);
  });

  it('pinning - pins that cannot be read refuse the handshake, naming the peer and the error', async () => {
    const relay = new MemoryRelay();
    // A folder where the pins file should be: reading it fails (EISDIR).
    const unreadable = new KnownPeers({ file: tempDir(), peerKind: 'worker', acceptCommand: 'x' });
    const p = await end(relay, 'bad-p', 'initiator', { pins: unreadable });
    const w = await end(relay, 'bad-w', 'responder');
    const err = await rejection(p.ep.send('bad-w', 't', probe('x')));
    expect(err.code).toBe('pins_unreadable');
    expect(err.message).toMatch(/^cannot compare the key of bad-w with its pin: .*EISDIR/);
    expect(w.got).toEqual([]);
  });

  /**
   * A relay that, once `attack.on`, answers the planner's handshake itself with keys of its own, and
   * makes its own message 1 for the worker (`attack.toWorker`, delivered when the test says): what a
   * key-swapping relay does with Noise NN. `done` lists the real ends' messages it managed to process.
   */
  function swappingRelay(planner: string, worker: string, pairingKey?: Uint8Array) {
    const attack = { on: false, done: [] as string[], toWorker: undefined as Uint8Array | undefined };
    const relayKey = generateX25519();
    const fakePairingKey = pairingKey && parsePairingKey(generatePairingKey());
    const relay = new MemoryRelay({
      intercept: (env: Envelope): Envelope[] => {
        if (!attack.on || env.kind !== 'a2a.hs1' || env.to !== worker) return [env];
        const asWorker = new E2eeHandshake({
          role: 'responder',
          localId: worker,
          remoteId: planner,
          staticKey: relayKey,
          pairingKey: fakePairingKey,
        });
        let reply: Uint8Array;
        try {
          asWorker.readMessage(env.payload);
          reply = asWorker.writeMessage();
          attack.done.push('hs1');
        } catch {
          // Without the pairing key the relay cannot read message 1; it forges a reply all the same.
          reply = new E2eeHandshake({
            role: 'initiator',
            localId: worker,
            remoteId: planner,
            pairingKey: fakePairingKey,
          }).writeMessage();
        }
        attack.toWorker = new E2eeHandshake({
          role: 'initiator',
          localId: planner,
          remoteId: worker,
          staticKey: relayKey,
          pairingKey: fakePairingKey,
        }).writeMessage();
        return [{ ...env, from: worker, to: planner, kind: 'a2a.hs2', payload: reply }];
      },
    });
    /** Delivers the relay's own message 1 to the worker, as if from the planner. */
    const impersonatePlanner = (plannerAgent: AgentClient) => {
      attack.on = false;
      plannerAgent.send({ to: worker, channel: 'handshake', kind: 'a2a.hs1', payload: attack.toWorker! });
    };
    return { relay, attack, impersonatePlanner };
  }

  it('relay in the middle - after first contact a key swap is refused by both ends; nothing is read or injected', async () => {
    const { relay, attack, impersonatePlanner } = swappingRelay('mitm-p', 'mitm-w');
    const p = await end(relay, 'mitm-p', 'initiator');
    const w = await end(relay, 'mitm-w', 'responder');
    await p.ep.send('mitm-w', 't', probe('before'));
    await eventually(() => w.got.includes('before'));

    // The relay answers for the worker: the planner sees another key for it and sends nothing.
    attack.on = true;
    p.ep.reset('mitm-w');
    const err = await rejection(p.ep.send('mitm-w', 't', probe('secret-objective')));
    expect(err.code).toBe('peer_key_changed');
    expect(err.message).toContain('worker mitm-w presented a different key');
    expect(attack.done).toEqual(['hs1']);
    // The relay poses as the planner to the worker: refused before anything could be sealed.
    const workerRefused = new Promise<A2aFailure>((res) => w.ep.once('failure', res));
    impersonatePlanner(p.agent);
    const wf = await workerRefused;
    expect(wf.code).toBe('peer_key_changed');
    expect(wf.message).toContain('planner mitm-p presented a different key');
    expect(w.got).toEqual(['before']);
    expect(p.pins.check('mitm-w', w.key.publicKey)).toEqual({ status: 'same' });
    expect(w.pins.check('mitm-p', p.key.publicKey)).toEqual({ status: 'same' });

    // The worker's refusal (plaintext, like any refusal) reaches the planner too.
    await eventually(() => p.trouble.some((t) => t.includes('mitm-w refused: planner mitm-p presented')));
    // The relay stops; the pair handshakes again and works.
    p.ep.reset('mitm-w');
    await p.ep.send('mitm-w', 't', probe('after'));
    await eventually(() => w.got.includes('after'));
  });

  it('relay in the middle - with a pairing key even the first contact cannot be swapped', async () => {
    const pairingKey = parsePairingKey(generatePairingKey());
    const { relay, attack, impersonatePlanner } = swappingRelay('psk-p', 'psk-w', pairingKey);
    const p = await end(relay, 'psk-p', 'initiator', { pairingKey });
    const w = await end(relay, 'psk-w', 'responder', { pairingKey });
    attack.on = true;
    const err = await rejection(p.ep.send('psk-w', 't', probe('secret-objective')));
    // The forged reply is refused; the planner waits for a genuine one, which the relay withholds.
    expect(err.code).toBe('handshake_timeout');
    expect(err.message).toContain('a reply was refused: pairing keys differ');
    const workerRefused = new Promise<A2aFailure>((res) => w.ep.once('failure', res));
    impersonatePlanner(p.agent);
    expect((await workerRefused).code).toBe('pairing_mismatch');
    expect(attack.done).toEqual([]);
    expect(w.got).toEqual([]);
    expect(p.pins.check('psk-w', w.key.publicKey)).toEqual({ status: 'new' });
  });

  it('replay - an old hs1 after a worker restart, a duplicate hs1, stale hs2 and confirmation leave the live pair alone; the next pairing works', async () => {
    const relay = new MemoryRelay({ capture: true });
    const p = await end(relay, 'rp-p', 'initiator');
    const w1 = await end(relay, 'rp-w', 'responder');
    await p.ep.send('rp-w', 't', probe('first'));
    await eventually(() => w1.got.includes('first'));
    const recorded = (kind: string, to: string, channel?: string) =>
      relay.captured.filter((e) => e.kind === kind && e.to === to && (!channel || e.channel === channel));
    const [oldHs1] = recorded('a2a.hs1', 'rp-w');

    // The worker restarts (same key and pins, but it remembers no handshake); the planner pairs again.
    await w1.agent.close();
    const w = await end(relay, 'rp-w', 'responder', { key: w1.key, pins: w1.pins });
    p.ep.reset('rp-w');
    await p.ep.send('rp-w', 't', probe('second'));
    await eventually(() => w.got.includes('second'));
    const back = new Promise<A2aInbound>((res) => p.ep.once('message', res));
    await w.ep.send('rp-p', 't', probe('reply'));
    await back;
    p.trouble.length = 0;
    w.trouble.length = 0;

    const [rawPlanner, rawWorker] = [p.agent, w.agent];
    const replay = (from: AgentClient, e: Envelope) =>
      from.send({ to: e.to, channel: e.channel, seq: e.seq, kind: e.kind, payload: e.payload });
    // The old hs1, which this worker process never saw: answered, but its session never goes live.
    replay(rawPlanner, oldHs1!);
    await eventually(() => recorded('a2a.hs2', 'rp-p').length === 3);
    // The current hs1 again (a duplicate), the stale hs2s, the confirmations: all ignored.
    for (const e of recorded('a2a.hs1', 'rp-w')) replay(rawPlanner, e);
    for (const e of recorded('a2a.hs2', 'rp-p')) replay(rawWorker, e);
    for (const e of recorded('a2a.sealed', 'rp-w', 'handshake')) replay(rawPlanner, e);

    await p.ep.send('rp-w', 't', probe('during'));
    await eventually(() => w.got.includes('during'));
    const reply = new Promise<A2aInbound>((res) => p.ep.once('message', res));
    await w.ep.send('rp-p', 't', probe('reply-2'));
    await reply;
    expect(p.trouble).toEqual([]);
    expect(w.trouble).toEqual([]);
    expect(w.debug).toContain('stale handshake confirmation ignored');

    // The next pairing is not disturbed by the answered replay.
    p.ep.reset('rp-w');
    await p.ep.send('rp-w', 'u', probe('next'));
    await eventually(() => w.got.includes('next'));
    expect(p.trouble.filter((t) => t.startsWith('failure'))).toEqual([]);
    expect(w.trouble.filter((t) => t.startsWith('failure'))).toEqual([]);
  });

  it('idempotent - frames the worker sealed under the session a new handshake replaces are ignored, not violations', async () => {
    let hold: Envelope[] | undefined;
    const relay = new MemoryRelay({
      intercept: (env) => {
        // Holds the planner's frames back (its confirmation first), so the worker keeps sealing under
        // the old session.
        if (hold && env.kind === 'a2a.sealed' && env.from === 'st-p') {
          hold.push(env);
          return [];
        }
        return [env];
      },
    });
    const p = await end(relay, 'st-p', 'initiator');
    const w = await end(relay, 'st-w', 'responder');
    await p.ep.send('st-w', 't', probe('first'));
    await eventually(() => w.got.includes('first'));

    const held: Envelope[] = [];
    hold = held;
    p.ep.reset('st-w');
    await p.ep.send('st-w', 'u', probe('queued'));
    await eventually(() => held.length === 2);
    // The worker has not seen the confirmation: it seals under the session the planner just replaced.
    await w.ep.send('st-p', 't', probe('old-session'));
    await eventually(() => p.debug.includes('frame of a replaced session ignored'));
    expect(p.trouble).toEqual([]);
    // The held frames arrive: the worker takes the new session; from then on both use it.
    hold = undefined;
    for (const e of held)
      p.agent.send({ to: e.to, channel: e.channel, seq: e.seq, kind: e.kind, payload: e.payload });
    await eventually(() => w.got.includes('queued'));
    const back = new Promise<A2aInbound>((res) => p.ep.once('message', res));
    await w.ep.send('st-p', 't', probe('new-session'));
    expect((await back).msg.case).toBe('probe');
    expect(p.trouble).toEqual([]);
    expect(w.trouble).toEqual(['resync']);
  });
});
