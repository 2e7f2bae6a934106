// 1. Routing: 200 B envelopes agent → relay → agent (three processes), against a raw grpc-js bidi echo
// and a raw ws echo between two processes. Throughput with a window of messages in flight; latency as
// ping-pong round trips with one in flight.
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import WebSocket from 'ws';
import { kill, percentile, ROOT, spawnReady, startRelay, summarise } from './common.mjs';

const PAYLOAD = Buffer.alloc(200, 7);
export const ECHO = join(ROOT, 'bench', 'echo-servers.mjs');

/**
 * Drives a transport: `send(seq)` sends one message, `onReply(cb)` calls cb(seq) per echo.
 * Returns round trips/s and the RTT percentiles.
 */
export async function drive({ send, onReply }, { total, window }) {
  const sentAt = new Float64Array(total);
  const rtts = [];
  let next = 0;
  let done = 0;
  const start = performance.now();
  await new Promise((resolve) => {
    onReply((seq) => {
      rtts.push(performance.now() - sentAt[seq]);
      done++;
      if (done === total) return resolve();
      if (next < total) {
        sentAt[next] = performance.now();
        send(next++);
      }
    });
    while (next < Math.min(window, total)) {
      sentAt[next] = performance.now();
      send(next++);
    }
  });
  const seconds = (performance.now() - start) / 1000;
  rtts.sort((a, b) => a - b);
  return { rate: total / seconds, p50: percentile(rtts, 50), p99: percentile(rtts, 99) };
}

export function grpcTransport(port) {
  const id = (b) => b;
  const client = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  const call = client.makeBidiStreamRequest('/bench.Echo/Echo', id, id, new grpc.Metadata(), {});
  call.on('error', () => {}); // the echo server is killed at the end of the section
  const buf = Buffer.from(PAYLOAD);
  return {
    send: (seq) => {
      const b = Buffer.from(buf);
      b.writeUInt32BE(seq, 0);
      call.write(b);
    },
    onReply: (cb) => call.on('data', (b) => cb(b.readUInt32BE(0))),
    close: () => {
      call.end();
      client.close();
    },
  };
}

async function wsTransport(port) {
  const ws = new WebSocket(`ws://127.0.0.1:${port}`);
  await new Promise((res) => ws.once('open', res));
  return {
    send: (seq) => {
      const b = Buffer.from(PAYLOAD);
      b.writeUInt32BE(seq, 0);
      ws.send(b);
    },
    onReply: (cb) => ws.on('message', (b) => cb(b.readUInt32BE(0))),
    close: () => ws.close(),
  };
}

async function relayTransport(relay) {
  const { AgentClient } = await import('../dist/agent/index.js');
  const agent = new AgentClient({
    servers: [relay.grpcAddr],
    apiKey: relay.key,
    agentId: 'bench-driver',
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

async function measure(make, opts) {
  const rates = [];
  const lat = [];
  for (let r = 0; r < opts.repeats; r++) {
    const t = await make();
    rates.push((await drive(t, { total: opts.total, window: opts.window })).rate);
    t.close();
    const l = await make();
    lat.push(await drive(l, { total: opts.pings, window: 1 }));
    l.close();
  }
  return {
    rate: summarise(rates),
    p50_ms: summarise(lat.map((x) => x.p50)),
    p99_ms: summarise(lat.map((x) => x.p99)),
  };
}

export async function benchRouting({ repeats = 3, total = 100_000, window = 1000, pings = 2000 } = {}) {
  const opts = { repeats, total, window, pings };
  const g = await spawnReady([ECHO, 'grpc']);
  const grpcRaw = await measure(() => grpcTransport(g.info.port), opts);
  await kill(g.child);

  const w = await spawnReady([ECHO, 'ws']);
  const wsRaw = await measure(() => wsTransport(w.info.port), opts);
  await kill(w.child);

  const relay = await startRelay();
  const e = await spawnReady([ECHO, 'agent', relay.grpcAddr, relay.key]);
  const nfltr = await measure(() => relayTransport(relay), opts);
  await kill(e.child);
  await kill(relay.child);

  return { nfltr, grpcRaw, wsRaw, params: opts };
}
