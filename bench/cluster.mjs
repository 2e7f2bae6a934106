// 5. Cluster: 200 B envelopes between agents on two relay replicas (PostgreSQL store, NATS bus) against
// the same between agents on one replica of the same cluster, measured in the same run. The echo agent
// sits on replica A; one driver dials A (within one replica), another dials B (across two replicas:
// agent → B → NATS → A → agent and back).
import { randomBytes } from 'node:crypto';
import { connect } from 'node:net';
import { join } from 'node:path';
import pg from 'pg';
import { createKey, kill, ROOT, spawnReady, startRelay, summarise } from './common.mjs';
import { drive } from './routing.mjs';

const PAYLOAD = Buffer.alloc(200, 7);
const ECHO = join(ROOT, 'bench', 'echo-servers.mjs');
const PG_URL = process.env.NFLTR_BENCH_POSTGRES ?? 'postgres://postgres@127.0.0.1:5432/test';
const NATS_URL = process.env.NFLTR_BENCH_NATS ?? 'nats://127.0.0.1:4222';

const answers = (url, port) =>
  new Promise((res) => {
    const u = new URL(url);
    const s = connect({ host: u.hostname, port: Number(u.port || port) });
    const done = (ok) => {
      s.destroy();
      res(ok);
    };
    s.setTimeout(1500, () => done(false));
    s.once('connect', () => done(true)).once('error', () => done(false));
  });

let drivers = 0;
async function driver(relay, key) {
  const { AgentClient } = await import('../dist/agent/index.js');
  const agent = new AgentClient({
    servers: [relay.grpcAddr],
    apiKey: key,
    agentId: `bench-driver-${++drivers}`,
    kind: 'planner',
  });
  await agent.start().waitConnected();
  return {
    send: (seq) =>
      agent.send({ to: 'bench-echo', channel: 'b', seq: BigInt(seq), kind: 'bench', payload: PAYLOAD }),
    onReply: (cb) => agent.on('envelope', (e) => cb(Number(e.seq))),
    close: () => agent.close(),
  };
}

async function measure(relay, key, opts) {
  const rates = [];
  const lat = [];
  for (let r = 0; r < opts.repeats; r++) {
    const t = await driver(relay, key);
    rates.push((await drive(t, { total: opts.total, window: opts.window })).rate);
    await t.close();
    const l = await driver(relay, key);
    lat.push(await drive(l, { total: opts.pings, window: 1 }));
    await l.close();
  }
  return {
    rate: summarise(rates),
    p50_ms: summarise(lat.map((x) => x.p50)),
    p99_ms: summarise(lat.map((x) => x.p99)),
  };
}

/** Returns undefined, with the reason on stderr, when PostgreSQL or NATS does not answer. */
export async function benchCluster({ repeats = 3, total = 50_000, window = 1000, pings = 2000 } = {}) {
  for (const [name, url, port] of [
    ['PostgreSQL', PG_URL, 5432],
    ['NATS', NATS_URL, 4222],
  ]) {
    if (!(await answers(url, port))) {
      process.stderr.write(`cluster: skipped: ${name} is unreachable at ${url}\n`);
      return undefined;
    }
  }
  const schema = `nfltr_bench_${randomBytes(5).toString('hex')}`;
  const admin = new pg.Client({ connectionString: PG_URL });
  await admin.connect();
  await admin.query(`CREATE SCHEMA ${schema}`);
  const store = `${PG_URL}${PG_URL.includes('?') ? '&' : '?'}options=${encodeURIComponent(`-c search_path=${schema}`)}`;
  const bus = `${NATS_URL}?prefix=${schema}`;
  const args = ['--store', store, '--bus', bus];
  const children = [];
  try {
    const key = await createKey({ store }, 'bench');
    const a = await startRelay({ args, key });
    children.push(a.child);
    const b = await startRelay({ args, key });
    children.push(b.child);
    const echo = await spawnReady([ECHO, 'agent', a.grpcAddr, key]);
    children.push(echo.child);
    const opts = { repeats, total, window, pings };
    const within = await measure(a, key, opts);
    const across = await measure(b, key, opts);
    return { within, across, params: opts };
  } finally {
    for (const c of children.reverse()) await kill(c);
    await admin.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
    await admin.end();
  }
}
