/**
 * The one contract every {@link Bus} keeps, run against each implementation. `newBus` returns a bus
 * on the same medium each time it is called within one suite: each one plays a replica.
 */
import { create } from '@bufbuild/protobuf';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Envelope, EnvelopeSchema, ErrorCode } from '../../src/protocol/control.js';
import { type HttpFrame, HttpFrameSchema } from '../../src/protocol/http-proxy.js';
import type { Bus, BusHandlers, PresenceEvent, Refusal } from '../../src/relay/bus/bus.js';
import { eventually } from '../helpers/processes.js';

export interface BusContractOptions {
  name: string;
  /** Sets up a fresh medium; returns how to open a bus on it. */
  setup: () => Promise<{ newBus: () => Promise<Bus> }>;
  /** Skips the suite, with the reason printed; every skip has one. */
  skip?: string;
}

/** A replica stand-in: records what its bus hands it, and refuses envelopes when told to. */
class Replica implements BusHandlers {
  readonly received: { account: string; agentId: string; env: Envelope }[] = [];
  readonly undelivered: { account: string; env: Envelope; refusal: Refusal }[] = [];
  readonly events: PresenceEvent[] = [];
  refuse: Refusal | undefined;
  resyncs = 0;
  readonly framesIn: { account: string; agentId: string; origin: string; frame: HttpFrame }[] = [];
  readonly framesBack: HttpFrame[] = [];

  constructor(
    readonly id: string,
    readonly bus: Bus,
  ) {}

  envelope(account: string, agentId: string, env: Envelope): Refusal | undefined {
    if (this.refuse) return this.refuse;
    this.received.push({ account, agentId, env });
    return undefined;
  }
  undeliverable(account: string, env: Envelope, refusal: Refusal): void {
    this.undelivered.push({ account, env, refusal });
  }
  presence(event: PresenceEvent): void {
    this.events.push(event);
  }
  resync(): void {
    this.resyncs++;
  }
  httpIn(account: string, agentId: string, origin: string, frame: HttpFrame): void {
    this.framesIn.push({ account, agentId, origin, frame });
  }
  httpBack(frame: HttpFrame): void {
    this.framesBack.push(frame);
  }
}

const chunk = (streamId: string, i: number) =>
  create(HttpFrameSchema, {
    streamId,
    frame: { case: 'data', value: { data: Buffer.from(`chunk ${i}`), end: false } },
  });

const env = (from: string, to: string, seq: number, payload: Uint8Array = Buffer.from(`m${seq}`)) =>
  create(EnvelopeSchema, { from, to, channel: 'c', seq: BigInt(seq), kind: 'k', payload });

export function runBusContract(opts: BusContractOptions): void {
  describe.skipIf(opts.skip !== undefined)(`bus contract: ${opts.name}`, () => {
    let r1: Replica;
    let r2: Replica;
    let r3: Replica;

    beforeAll(async () => {
      const { newBus } = await opts.setup();
      const make = async (id: string) => {
        const r = new Replica(id, await newBus());
        await r.bus.start(id, r);
        return r;
      };
      [r1, r2, r3] = [await make('relay-1'), await make('relay-2'), await make('relay-3')];
    });

    afterAll(async () => {
      await Promise.all([r1, r2, r3].map((r) => r?.bus.close()));
    });

    it('envelopes - reach the replica holding the agent, in order, header and payload intact', async () => {
      await r2.bus.subscribeAgent('acct', 'w1');
      for (let i = 0; i < 500; i++) r1.bus.deliver('acct', env('p1', 'w1', i));
      await eventually(() => r2.received.length === 500, 10_000, '500 envelopes');
      expect(r2.received.map((x) => Number(x.env.seq))).toEqual(Array.from({ length: 500 }, (_, i) => i));
      expect(r2.received[7]).toMatchObject({ account: 'acct', agentId: 'w1' });
      expect(r2.received[7]!.env).toMatchObject({ from: 'p1', to: 'w1', channel: 'c', kind: 'k' });
      expect(Buffer.from(r2.received[7]!.env.payload).toString()).toBe('m7');
      expect(r1.undelivered).toEqual([]);
      expect(r3.received).toEqual([]);
      r2.received.length = 0;
    });

    it('envelopes - one larger than a bus message still arrives whole', async () => {
      await r2.bus.subscribeAgent('acct', 'big');
      const payload = Buffer.alloc(3 * 1024 * 1024 + 17);
      for (let i = 0; i < payload.length; i += 4096) payload[i] = i % 251;
      r1.bus.deliver('acct', env('p1', 'big', 1, payload));
      r1.bus.deliver('acct', env('p1', 'big', 2));
      await eventually(() => r2.received.length === 2, 10_000, 'big envelope');
      expect(Buffer.from(r2.received[0]!.env.payload).equals(payload)).toBe(true);
      expect(r2.received[1]!.env.seq).toBe(2n);
      r2.received.length = 0;
    });

    it('envelopes - to an agent held nowhere: PEER_NOT_FOUND, once per envelope', async () => {
      r1.bus.deliver('acct', env('p1', 'nobody', 1));
      r1.bus.deliver('acct', env('p1', 'nobody', 2));
      await eventually(() => r1.undelivered.length === 2, 5_000, 'not found');
      // A third answer marks the end: a second answer about 1 or 2 would have come before it.
      r1.bus.deliver('acct', env('p1', 'nobody', 3));
      await eventually(() => r1.undelivered.some((u) => u.env.seq === 3n), 5_000, 'the marker refused');
      expect(r1.undelivered).toHaveLength(3);
      expect(r1.undelivered[0]).toMatchObject({
        account: 'acct',
        refusal: { code: ErrorCode.PEER_NOT_FOUND },
      });
      expect(r1.undelivered[0]!.refusal.message).toMatch(/no agent nobody is connected under this account/);
      expect(r1.undelivered.map((u) => u.env.seq)).toEqual([1n, 2n, 3n]);
      r1.undelivered.length = 0;
    });

    it('envelopes - the holder’s refusal flows back to the sender’s replica', async () => {
      await r3.bus.subscribeAgent('acct', 'slow');
      r3.refuse = { code: ErrorCode.PEER_BUSY, message: 'agent slow is not reading fast enough' };
      r1.bus.deliver('acct', env('p1', 'slow', 9));
      await eventually(() => r1.undelivered.length === 1, 5_000, 'refusal');
      expect(r1.undelivered[0]!.refusal).toEqual(r3.refuse);
      expect(r1.undelivered[0]!.env).toMatchObject({ from: 'p1', to: 'slow', seq: 9n });
      r3.refuse = undefined;
      r1.undelivered.length = 0;
    });

    it('browse frames - reach the holder in order and its answers come back in order', async () => {
      await r2.bus.subscribeAgent('acct', 'web');
      for (let i = 0; i < 50; i++) r1.bus.forwardHttp('acct', 'web', chunk('s1', i));
      await eventually(() => r2.framesIn.length === 50, 10_000, '50 frames');
      expect(r2.framesIn[3]).toMatchObject({ account: 'acct', agentId: 'web' });
      const texts = r2.framesIn.map((f) =>
        f.frame.frame.case === 'data' ? Buffer.from(f.frame.frame.value.data).toString() : '',
      );
      expect(texts).toEqual(Array.from({ length: 50 }, (_, i) => `chunk ${i}`));
      const origin = r2.framesIn[0]!.origin;
      for (let i = 0; i < 50; i++) r2.bus.answerHttp(origin, chunk('s1', i));
      await eventually(() => r1.framesBack.length === 50, 10_000, '50 answers');
      expect(r1.framesBack.map((f) => f.streamId)).toEqual(Array(50).fill('s1'));
      expect(r1.framesBack[49]!.frame).toMatchObject({ case: 'data' });
      expect(r3.framesBack).toEqual([]);
      r2.framesIn.length = 0;
      r1.framesBack.length = 0;
    });

    it('browse frames - for an agent held nowhere: a reset agent_not_connected for the stream', async () => {
      r1.bus.forwardHttp('acct', 'nobody', chunk('s2', 0));
      await eventually(() => r1.framesBack.length === 1, 5_000, 'reset');
      expect(r1.framesBack[0]).toMatchObject({
        streamId: 's2',
        frame: { case: 'reset', value: { code: 'agent_not_connected' } },
      });
      r1.framesBack.length = 0;
    });

    it('envelopes - after unsubscribing, the agent is held nowhere', async () => {
      await r3.bus.subscribeAgent('acct', 'leaver');
      r3.bus.unsubscribeAgent('acct', 'leaver');
      r1.bus.deliver('acct', env('p1', 'leaver', 1));
      await eventually(() => r1.undelivered.length === 1, 5_000, 'not found');
      expect(r1.undelivered[0]!.refusal.code).toBe(ErrorCode.PEER_NOT_FOUND);
      expect(r3.received).toEqual([]);
      r1.undelivered.length = 0;
    });

    it('envelopes - an agent moving replicas is reached on the new one; subscribing twice is once', async () => {
      await r2.bus.subscribeAgent('acct', 'mover');
      await r3.bus.subscribeAgent('acct', 'mover');
      await r3.bus.subscribeAgent('acct', 'mover');
      r2.bus.unsubscribeAgent('acct', 'mover');
      await r2.bus.subscribeAgent('acct', 'marker');
      r1.bus.deliver('acct', env('p1', 'mover', 1));
      r1.bus.deliver('acct', env('p1', 'mover', 2));
      // Sent after them: by the time it reaches r2, anything r2 would wrongly get for mover has come.
      r1.bus.deliver('acct', env('p1', 'marker', 3));
      await eventually(() => r3.received.length === 2 && r2.received.length === 1, 5_000, 'moved');
      expect(r3.received.map((x) => x.env.seq)).toEqual([1n, 2n]);
      expect(r2.received.map((x) => [x.agentId, x.env.seq])).toEqual([['marker', 3n]]);
      r2.bus.unsubscribeAgent('acct', 'marker');
      r2.received.length = 0;
      r3.received.length = 0;
    });

    it('accounts - the same agent id in another account is another address', async () => {
      await r2.bus.subscribeAgent('acct-a', 'same');
      await r3.bus.subscribeAgent('acct-b', 'same');
      r1.bus.deliver('acct-b', env('p1', 'same', 1));
      r1.bus.deliver('acct-c', env('p1', 'same', 2));
      // Only this test's accounts are looked at: a late answer about an earlier test's envelope (a
      // replica that had just unsubscribed) may still arrive on a loaded machine.
      const refusedHere = () =>
        r1.undelivered.filter((u) => u.account === 'acct-b' || u.account === 'acct-c');
      await eventually(() => r3.received.length === 1 && refusedHere().length === 1, 5_000, 'isolation');
      expect(r3.received[0]!.account).toBe('acct-b');
      expect(r2.received).toEqual([]);
      expect(refusedHere()[0]).toMatchObject({
        account: 'acct-c',
        refusal: { code: ErrorCode.PEER_NOT_FOUND },
      });
      r3.received.length = 0;
      r1.undelivered.length = 0;
    });

    it('presence - events reach every other replica, not the publisher', async () => {
      const ev: PresenceEvent = {
        type: 'connected',
        from: 'relay-1',
        relayId: 'relay-1',
        account: 'acct',
        agentId: 'w9',
        epoch: 42,
        kind: 'worker',
        labels: { gpu: 'a100' },
        connectedSince: 1_700_000_000_000,
      };
      r1.bus.publish(ev);
      r1.bus.publish({ type: 'heartbeat', from: 'relay-1' });
      await eventually(() => r2.events.length === 2 && r3.events.length === 2, 5_000, 'events');
      expect(r2.events[0]).toEqual(ev);
      expect(r3.events[1]).toEqual({ type: 'heartbeat', from: 'relay-1' });
      // Published by r2 once it had r1's: r1 would have got its own events back before this one.
      r2.bus.publish({ type: 'heartbeat', from: 'relay-2' });
      await eventually(() => r1.events.length > 0, 5_000, "r2's heartbeat at r1");
      expect(r1.events).toEqual([{ type: 'heartbeat', from: 'relay-2' }]);
    });
  });
}
