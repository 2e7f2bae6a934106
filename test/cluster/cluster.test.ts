/**
 * Three relay replicas as one relay, on the machine's PostgreSQL (store) and NATS (bus), each a real
 * `nfltr relay` process. Short presence flags keep the expiry cases quick.
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AgentClient, type AgentStatus, type InboundEnvelope } from '../../src/agent/index.js';
import { type DeliveryError, ErrorCode } from '../../src/protocol/control.js';
import {
  createStoreKey,
  eventually,
  nfltr,
  type RelayProcess,
  startRelayProcess,
} from '../helpers/processes.js';
import { freshNatsUrl, freshSchema, serviceSkipReason } from '../relay/services.js';

const skip = (await serviceSkipReason('PostgreSQL')) ?? (await serviceSkipReason('NATS'));

interface Peer {
  agent_id: string;
  kind: string;
  labels: Record<string, string>;
  relay_id: string;
}

const HEARTBEAT_MS = 500;
const TTL_MS = 2_000;

describe.skipIf(skip !== undefined)('cluster: three replicas on PostgreSQL + NATS', () => {
  let schema: Awaited<ReturnType<typeof freshSchema>>;
  let busUrl: string;
  const relays: RelayProcess[] = [];
  const ids: string[] = [];
  const agents: AgentClient[] = [];
  let keyA: string;
  let keyB: string;

  const startReplica = async () => {
    const r = await startRelayProcess({
      args: [
        '--store',
        schema.url,
        '--bus',
        busUrl,
        '--presence-heartbeat',
        `${HEARTBEAT_MS}ms`,
        '--presence-ttl',
        `${TTL_MS}ms`,
        '--keepalive-interval',
        '500ms',
        '--keepalive-timeout',
        '3s',
        '--hold-window',
        '3s',
      ],
    });
    // /healthz tells a relay's id only to a key holder; its start line tells it to its operator.
    const started = /relay listening relay_id=(\S+) .* store=(\S+) bus=(\S+)/.exec(r.stderr());
    expect(started?.slice(2)).toEqual(['postgres', 'nats']);
    return { r, id: started![1]! };
  };

  const keysCreate = (account: string) => createStoreKey(schema.url, account);

  const agent = (
    servers: RelayProcess[],
    apiKey: string,
    agentId: string,
    extra: { sessionToken?: string; backoffMs?: number[] } = {},
  ) => {
    const a = new AgentClient({
      servers: servers.map((r) => r.grpcAddr),
      apiKey,
      agentId,
      kind: 'worker',
      backoffMs: [100, 200, 400],
      ...extra,
    });
    agents.push(a);
    a.on('status', (s) => {
      if (s.type === 'connected') relayIds.set(a, s.relayId);
    });
    return a.start();
  };

  const peers = async (relay: RelayProcess, key: string) => {
    const res = await fetch(`${relay.httpUrl}/api/v1/peers`, { headers: { authorization: `ApiKey ${key}` } });
    return { status: res.status, peers: ((await res.json()) as { peers?: Peer[] }).peers ?? [] };
  };

  /** The replica each agent last connected to, as its welcome said. */
  const relayIds = new Map<AgentClient, string>();
  const connectedTo = async (a: AgentClient) => {
    await a.waitConnected();
    return relayIds.get(a);
  };
  const nextEnvelope = (a: AgentClient) => new Promise<InboundEnvelope>((res) => a.once('envelope', res));
  const nextDeliveryError = (a: AgentClient) =>
    new Promise<DeliveryError>((res) => a.once('deliveryError', res));
  const fatalOf = (a: AgentClient) =>
    new Promise<Extract<AgentStatus, { type: 'fatal' }>>((res) =>
      a.on('status', (s) => {
        if (s.type === 'fatal') res(s);
      }),
    );

  beforeAll(async () => {
    schema = await freshSchema();
    busUrl = freshNatsUrl();
    // The first replica migrates the schema; the others start against it at once.
    const first = await startReplica();
    const rest = await Promise.all([startReplica(), startReplica()]);
    for (const x of [first, ...rest]) {
      relays.push(x.r);
      ids.push(x.id);
    }
    keyA = await keysCreate('acct-a');
    keyB = await keysCreate('acct-b');
  });

  afterAll(async () => {
    await Promise.all(agents.map((a) => a.close()));
    await Promise.all(relays.map((r) => r.stop()));
    await schema?.drop();
  });

  it('migrate - the relays created a versioned schema once; migrate alone is then a no-op', async () => {
    const c = new pg.Client({ connectionString: schema.url });
    await c.connect();
    const { rows } = await c.query<{ version: number }>(
      'SELECT version FROM nfltr_migrations ORDER BY version',
    );
    await c.end();
    expect(rows.map((r) => r.version)).toEqual([1, 2, 3]);
    const again = await nfltr(['relay', 'migrate', '--store', schema.url]);
    expect(again.code).toBe(0);
    expect(again.stderr).toMatch(/postgres store .* is at schema version 3; nothing to do/);
    expect(again.stderr).not.toContain('password');
  });

  it('keys - a key made with nfltr keys --store works on every replica', async () => {
    for (const r of relays) expect((await peers(r, keyA)).status).toBe(200);
    const list = await nfltr(['keys', 'list', '--json', '--store', schema.url]);
    const keys = (JSON.parse(list.stdout) as { keys: { account: string }[] }).keys;
    expect(keys.map((k) => k.account).sort()).toEqual(['acct-a', 'acct-b']);
  });

  it('routing - agents on different replicas exchange envelopes both ways, in order', async () => {
    const p = agent([relays[0]!], keyA, 'r-planner');
    const w = agent([relays[2]!], keyA, 'r-worker');

    expect(await connectedTo(p)).toBe(ids[0]);
    expect(await connectedTo(w)).toBe(ids[2]);
    const got = nextEnvelope(w);
    p.send({ to: 'r-worker', channel: 'c1', seq: 1n, kind: 'test.ping', payload: Buffer.from('to worker') });
    expect(await got).toMatchObject({ from: 'r-planner', channel: 'c1', seq: 1n, kind: 'test.ping' });
    const back = nextEnvelope(p);
    w.send({
      to: 'r-planner',
      channel: 'c1',
      seq: 2n,
      kind: 'test.pong',
      payload: Buffer.from('to planner'),
    });
    expect(Buffer.from((await back).payload).toString()).toBe('to planner');

    const seqs: bigint[] = [];
    const all = new Promise<void>((res) =>
      w.on('envelope', (e) => {
        if (e.channel !== 'bulk') return;
        seqs.push(e.seq);
        if (seqs.length === 2000) res();
      }),
    );
    for (let i = 0; i < 2000; i++)
      p.send({ to: 'r-worker', channel: 'bulk', seq: BigInt(i), kind: 'k', payload: Buffer.alloc(200) });
    await all;
    expect(seqs).toEqual(Array.from({ length: 2000 }, (_, i) => BigInt(i)));
  });

  it('routing - an envelope to an agent held nowhere gets PEER_NOT_FOUND', async () => {
    const p = agent([relays[1]!], keyA, 'nf-sender');
    await p.waitConnected();
    const err = nextDeliveryError(p);
    p.send({ to: 'nobody-anywhere', channel: 'c', seq: 5n, kind: 'k', payload: new Uint8Array() });
    expect(await err).toMatchObject({ to: 'nobody-anywhere', seq: 5n, code: ErrorCode.PEER_NOT_FOUND });
  });

  it('peers - every replica lists each agent of the account once, with its replica; B sees only B', async () => {
    const on = [
      agent([relays[0]!], keyA, 'p-one'),
      agent([relays[1]!], keyA, 'p-two'),
      agent([relays[2]!], keyA, 'p-three'),
    ];
    const b = agent([relays[1]!], keyB, 'b-only');
    await Promise.all([...on, b].map((a) => a.waitConnected()));
    const want = { 'p-one': ids[0], 'p-two': ids[1], 'p-three': ids[2] };
    for (const r of relays) {
      await eventually(
        async () => {
          const list = (await peers(r, keyA)).peers.filter((x) => x.agent_id.startsWith('p-'));
          return list.length === 3 && list.every((x) => want[x.agent_id as keyof typeof want] === x.relay_id);
        },
        5_000,
        `peers on ${r.httpUrl}`,
      );
      const all = (await peers(r, keyA)).peers.map((x) => x.agent_id);
      expect(new Set(all).size).toBe(all.length);
      expect(all).not.toContain('b-only');
      expect((await peers(r, keyB)).peers.map((x) => x.agent_id)).toEqual(['b-only']);
    }
    // B cannot reach A's agents either.
    let leaked = false;
    on[2]!.on('envelope', () => {
      leaked = true;
    });
    const err = nextDeliveryError(b);
    b.send({ to: 'p-three', channel: 'c', seq: 1n, kind: 'k', payload: Buffer.from('x') });
    expect((await err).code).toBe(ErrorCode.PEER_NOT_FOUND);
    expect(leaked).toBe(false);
  });

  it('peers - a label change on one replica shows on the others', async () => {
    const a = agent([relays[2]!], keyA, 'labeller');
    await a.waitConnected();
    a.setLabels({ 'coord.load_pct': '75' });
    for (const r of relays.slice(0, 2)) {
      await eventually(
        async () =>
          (await peers(r, keyA)).peers.find((x) => x.agent_id === 'labeller')?.labels['coord.load_pct'] ===
          '75',
        5_000,
        'labels',
      );
    }
  });

  it('identity - a live id on another replica gets ALREADY_EXISTS naming --name; its own session takes over', async () => {
    const first = agent([relays[0]!], keyA, 'only-one');
    await first.waitConnected();
    const dup = agent([relays[1]!], keyA, 'only-one');
    const fatal = await fatalOf(dup);
    expect(fatal.code).toBe('ALREADY_EXISTS');
    expect(fatal.message).toMatch(/--name/);
    expect(first.connected).toBe(true);
    // Another key of the account, even with the holder's session token, never displaces it.
    const otherKey = await keysCreate('acct-a');
    const leaked = agent([relays[2]!], otherKey, 'only-one', { sessionToken: first.sessionToken });
    expect((await fatalOf(leaked)).code).toBe('ALREADY_EXISTS');
    expect(first.connected).toBe(true);

    // The same session token (a redial of the same agent) takes the id over on another replica, and
    // the replica holding the older stream closes it.
    const slow = agent([relays[0]!], keyA, 'taken-over', { backoffMs: [60_000] });
    await slow.waitConnected();
    const dropped = new Promise<Extract<AgentStatus, { type: 'disconnected' }>>((res) =>
      slow.on('status', (s) => s.type === 'disconnected' && res(s)),
    );
    const takeover = agent([relays[1]!], keyA, 'taken-over', { sessionToken: slow.sessionToken });
    expect(await connectedTo(takeover)).toBe(ids[1]);
    expect((await dropped).reason).toMatch(/ABORTED: replaced by a newer connection of the same agent/);
    for (const r of relays) {
      await eventually(
        async () => {
          const mine = (await peers(r, keyA)).peers.filter((x) => x.agent_id === 'taken-over');
          return mine.length === 1 && mine[0]!.relay_id === ids[1];
        },
        5_000,
        'takeover in presence',
      );
    }
  });

  it('keys - a revocation through nfltr keys closes streams on every replica and is refused at once', async () => {
    const key = await keysCreate('acct-r');
    const witness = await keysCreate('acct-r');
    const a = agent([relays[1]!], key, 'doomed');
    await a.waitConnected();
    const fatal = fatalOf(a);
    const list = JSON.parse(
      (await nfltr(['keys', 'list', '--json', '--account', 'acct-r', '--store', schema.url])).stdout,
    ) as {
      keys: { id: string }[];
    };
    const doomedKey = list.keys.find((k) => key.startsWith(`nfk_${k.id}_`))!.id;
    // Envelopes flow from the doomed key to an agent on another replica while it is revoked.
    const recv = agent([relays[2]!], witness, 'revoke-witness');
    await recv.waitConnected();
    const arrivals: number[] = [];
    recv.on('envelope', () => arrivals.push(Date.now()));
    let pumping = true;
    const pump = (async () => {
      for (let seq = 0n; pumping; seq++) {
        try {
          a.send({ to: 'revoke-witness', channel: 'c', seq, kind: 'k', payload: Buffer.alloc(64) });
        } catch {
          return; // closed once refused
        }
        if (seq % 20n === 0n) await new Promise((r) => setTimeout(r, 1));
      }
    })();
    await eventually(() => arrivals.length > 20, 5_000, 'envelopes across replicas');
    expect((await nfltr(['keys', 'revoke', doomedKey, '--store', schema.url])).code).toBe(0);
    const returnedAt = Date.now();
    // Effective before the command returned: the replica that held the stream holds it no more, and
    // nothing of the key arrives afterwards (beyond what was already on the wire for a moment).
    expect((await peers(relays[1]!, witness)).peers.map((p) => p.agent_id)).not.toContain('doomed');
    await new Promise((r) => setTimeout(r, 500));
    pumping = false;
    await pump;
    expect(arrivals.filter((t) => t > returnedAt + 150)).toEqual([]);
    expect((await fatal).message).toMatch(/revoked/);
    for (const r of relays) expect((await peers(r, key)).status).toBe(401);
  });

  it('failover - the replica holding an agent is killed: it redials another and keeps working', async () => {
    const p = agent([relays[0]!], keyA, 'f-planner');
    const w = agent([relays[2]!, relays[0]!], keyA, 'f-worker');
    await p.waitConnected();
    expect(await connectedTo(w)).toBe(ids[2]);
    await eventually(async () =>
      (await peers(relays[0]!, keyA)).peers.some((x) => x.agent_id === 'f-worker'),
    );

    expect(await relays[2]!.stop('SIGKILL')).toBe(null);
    // Sent while the worker has no replica: held, then delivered where it reconnects.
    const held = nextEnvelope(w);
    p.send({ to: 'f-worker', channel: 'c', seq: 1n, kind: 'k', payload: Buffer.from('during failover') });
    await eventually(() => w.connected && relayIds.get(w) === ids[0], 10_000, 'worker on replica 1');
    expect(Buffer.from((await held).payload).toString()).toBe('during failover');

    const after = nextEnvelope(p);
    w.send({ to: 'f-planner', channel: 'c', seq: 2n, kind: 'k', payload: Buffer.from('after failover') });
    expect(Buffer.from((await after).payload).toString()).toBe('after failover');
    for (const r of relays.slice(0, 2)) {
      await eventually(
        async () => {
          const mine = (await peers(r, keyA)).peers.filter((x) => x.agent_id === 'f-worker');
          return mine.length === 1 && mine[0]!.relay_id === ids[0];
        },
        5_000,
        'one f-worker, on replica 1',
      );
    }
  });

  it('expiry - a replica killed without goodbye has its agents leave the others’ presence within the TTL', async () => {
    const stuck = agent([relays[1]!], keyA, 'stuck-on-two');
    await stuck.waitConnected();
    await eventually(async () =>
      (await peers(relays[0]!, keyA)).peers.some((x) => x.agent_id === 'stuck-on-two'),
    );
    const killedAt = Date.now();
    await relays[1]!.stop('SIGKILL');
    await eventually(
      async () => !(await peers(relays[0]!, keyA)).peers.some((x) => x.agent_id === 'stuck-on-two'),
      15_000,
      'expiry',
    );
    const took = Date.now() - killedAt;
    expect(took).toBeLessThan(TTL_MS + 3 * HEARTBEAT_MS + 1_000);
    // Its row is gone from the store too.
    const c = new pg.Client({ connectionString: schema.url });
    await c.connect();
    await eventually(async () => {
      const { rows } = await c.query(`SELECT 1 FROM presence WHERE agent_id = 'stuck-on-two'`);
      return rows.length === 0;
    }, 5_000);
    await c.end();
  });
});
