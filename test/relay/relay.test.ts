import { execFileSync } from 'node:child_process';
import { connect, createServer, type Socket } from 'node:net';
import { join } from 'node:path';
import { create } from '@bufbuild/protobuf';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AgentClient, type AgentStatus, type InboundEnvelope } from '../../src/agent/index.js';
import {
  AgentKind,
  CONNECT_METHOD_PATH,
  type DeliveryError,
  decodeRelayFrame,
  ErrorCode,
  encodeAgentFrame,
  HelloSchema,
  LabelUpdateSchema,
  PROTOCOL_VERSION,
  type RelayFrame,
} from '../../src/protocol/control.js';
import {
  createKey,
  eventually,
  nfltr,
  type RelayProcess,
  selfSignedCert,
  startRelayProcess,
  tempDir,
} from '../helpers/processes.js';

const agents: AgentClient[] = [];
function agent(
  relay: RelayProcess,
  apiKey: string,
  agentId: string,
  labels: Record<string, string> = {},
  kind: 'worker' | 'planner' = 'worker',
) {
  const a = new AgentClient({ servers: [relay.grpcAddr], apiKey, agentId, kind, labels });
  agents.push(a);
  return a.start();
}

async function peers(relay: RelayProcess, key: string, header: 'ApiKey' | 'Bearer' | 'X-Api-Key' = 'ApiKey') {
  const headers: Record<string, string> =
    header === 'X-Api-Key' ? { 'x-api-key': key } : { authorization: `${header} ${key}` };
  const res = await fetch(`${relay.httpUrl}/api/v1/peers`, { headers });
  return {
    status: res.status,
    body: (await res.json()) as {
      peers: {
        agent_id: string;
        labels: Record<string, string>;
        kind: string;
        connected_since: string;
        last_seen: string;
        relay_id: string;
      }[];
    } & { error?: { code: string; message: string } },
  };
}

const nextEnvelope = (a: AgentClient) => new Promise<InboundEnvelope>((res) => a.once('envelope', res));
const nextDeliveryError = (a: AgentClient) =>
  new Promise<DeliveryError>((res) => a.once('deliveryError', res));
const fatalOf = (a: AgentClient) =>
  new Promise<Extract<AgentStatus, { type: 'fatal' }>>((res) =>
    a.on('status', (s) => {
      if (s.type === 'fatal') res(s);
    }),
  );

/** A raw control stream, for frames the real agent would never send. */
function rawStream(relay: RelayProcess, key: string) {
  const client = new grpc.Client(relay.grpcAddr, grpc.credentials.createInsecure(), {
    'grpc.max_send_message_length': 64 * 1024 * 1024,
  });
  const md = new grpc.Metadata();
  md.set('authorization', `Bearer ${key}`);
  const id = (b: Buffer) => b;
  const call = client.makeBidiStreamRequest(CONNECT_METHOD_PATH, id, id, md, {});
  const frames: RelayFrame[] = [];
  let status: grpc.StatusObject | undefined;
  call.on('data', (b: Buffer) => frames.push(decodeRelayFrame(b, 64 * 1024 * 1024)));
  call.on('error', () => {});
  call.on('status', (s: grpc.StatusObject) => {
    status = s;
  });
  return { client, call, frames, status: () => status };
}

/**
 * A TCP proxy to the relay whose open links can be frozen: bytes stop both ways and neither end hears
 * of a close, the half-open link a lost network or a hung host leaves behind. New links still pass.
 */
async function freezableProxy(relay: RelayProcess) {
  let open: [Socket, Socket][] = [];
  const frozen: Socket[] = [];
  const server = createServer((down) => {
    const up = connect(relay.grpcPort, '127.0.0.1');
    for (const s of [down, up]) s.on('error', () => {});
    down.pipe(up).pipe(down);
    open.push([down, up]);
  });
  await new Promise<void>((res) => server.listen(0, '127.0.0.1', res));
  const port = (server.address() as { port: number }).port;
  return {
    addr: `127.0.0.1:${port}`,
    freeze() {
      for (const [down, up] of open) {
        down.unpipe(up);
        up.unpipe(down);
        down.pause();
        up.pause();
        frozen.push(down, up);
      }
      open = [];
    },
    close() {
      for (const s of [...open.flat(), ...frozen]) s.destroy();
      server.close();
    },
  };
}

const hello = (agentId: string) =>
  Buffer.from(
    encodeAgentFrame({
      case: 'hello',
      value: create(HelloSchema, {
        agentId,
        kind: AgentKind.WORKER,
        protocolVersion: PROTOCOL_VERSION,
        sessionToken: 'raw-token',
      }),
    }),
  );

describe('relay', () => {
  let relay: RelayProcess;
  let keyA: string;
  let keyB: string;

  beforeAll(async () => {
    const dataDir = tempDir();
    keyA = await createKey(dataDir, 'acct-a');
    keyB = await createKey(dataDir, 'acct-b');
    relay = await startRelayProcess({
      dataDir,
      args: ['--keepalive-interval', '200ms', '--keepalive-timeout', '1500ms'],
    });
  });

  afterAll(async () => {
    await Promise.all(agents.map((a) => a.close()));
    await relay?.stop();
  });

  it('keys - create prints the key alone; list never shows it', async () => {
    // The secret is base64url, so it may hold '_' itself: it is what follows the id, not a split part.
    const secret = /^nfk_[0-9a-f]{16}_([A-Za-z0-9_-]{43})$/.exec(keyA)?.[1] ?? '';
    expect(secret).toHaveLength(43);
    const list = await nfltr(['keys', 'list', '--json', '--data-dir', relay.dataDir]);
    expect(list.code).toBe(0);
    const parsed = JSON.parse(list.stdout) as { keys: { id: string; account: string }[] };
    expect(parsed.keys.map((k) => k.account).sort()).toEqual(['acct-a', 'acct-b']);
    expect(list.stdout).not.toContain(secret);
    const text = await nfltr(['keys', 'list', '--data-dir', relay.dataDir]);
    expect(text.stdout).toMatch(/^ID\s+ACCOUNT\s+CREATED\s+LAST USED\s+REVOKED/);
  });

  it('healthz - says only ok without a key; details of the caller’s account with one', async () => {
    const res = await fetch(`${relay.httpUrl}/healthz`);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ status: 'ok' });
    const a = agent(relay, keyB, 'health-b');
    await a.waitConnected();
    const withKey = await fetch(`${relay.httpUrl}/healthz`, { headers: { authorization: `ApiKey ${keyB}` } });
    expect(await withKey.json()).toMatchObject({
      status: 'ok',
      relay_id: expect.any(String),
      agents: 1,
      store: 'sqlite',
      buffered_bytes: 0,
      held_bytes: 0,
    });
    const wrong = await fetch(`${relay.httpUrl}/healthz`, { headers: { authorization: 'ApiKey nope' } });
    expect(wrong.status).toBe(401);
    await a.close();
  });

  it('routing - two agents of one account exchange envelopes both ways, with from stamped', async () => {
    const a1 = agent(relay, keyA, 'a1', { zone: 'eu' });
    const a2 = agent(relay, keyA, 'a2');
    await Promise.all([a1.waitConnected(), a2.waitConnected()]);
    const got2 = nextEnvelope(a2);
    a1.send({ to: 'a2', channel: 'c1', seq: 7n, kind: 'test.ping', payload: Buffer.from('hello a2') });
    const e2 = await got2;
    expect(e2).toMatchObject({ from: 'a1', channel: 'c1', seq: 7n, kind: 'test.ping' });
    expect(Buffer.from(e2.payload).toString()).toBe('hello a2');
    const got1 = nextEnvelope(a1);
    a2.send({ to: 'a1', channel: 'c1', seq: 8n, kind: 'test.pong', payload: Buffer.from('hello a1') });
    expect(Buffer.from((await got1).payload).toString()).toBe('hello a1');
  });

  it('routing - many envelopes keep their order', async () => {
    const s = agent(relay, keyA, 'order-s');
    const r = agent(relay, keyA, 'order-r');
    await Promise.all([s.waitConnected(), r.waitConnected()]);
    const seqs: bigint[] = [];
    const done = new Promise<void>((res) =>
      r.on('envelope', (e) => {
        seqs.push(e.seq);
        if (seqs.length === 2000) res();
      }),
    );
    for (let i = 0; i < 2000; i++)
      s.send({ to: 'order-r', channel: 'x', seq: BigInt(i), kind: 'k', payload: Buffer.alloc(200) });
    await done;
    expect(seqs).toEqual(Array.from({ length: 2000 }, (_, i) => BigInt(i)));
  });

  it('routing - an envelope to an unknown agent gets PEER_NOT_FOUND', async () => {
    const a = agent(relay, keyA, 'lonely');
    await a.waitConnected();
    const err = nextDeliveryError(a);
    a.send({ to: 'nobody', channel: 'c', seq: 1n, kind: 'k', payload: new Uint8Array() });
    expect(await err).toMatchObject({ to: 'nobody', seq: 1n, code: ErrorCode.PEER_NOT_FOUND });
  });

  it('hold - an envelope for an agent that is reconnecting waits for it', async () => {
    const a = agent(relay, keyA, 'holder-a');
    const b1 = agent(relay, keyA, 'holder-b');
    await Promise.all([a.waitConnected(), b1.waitConnected()]);
    await b1.close();
    await eventually(
      async () => !(await peers(relay, keyA)).body.peers.some((p) => p.agent_id === 'holder-b'),
    );
    a.send({ to: 'holder-b', channel: 'c', seq: 3n, kind: 'k', payload: Buffer.from('held') });
    const b2 = agent(relay, keyA, 'holder-b');
    expect(Buffer.from((await nextEnvelope(b2)).payload).toString()).toBe('held');
  });

  it('accounts - B cannot see nor reach A’s agents', async () => {
    const a = agent(relay, keyA, 'a-secret');
    const b = agent(relay, keyB, 'b1');
    await Promise.all([a.waitConnected(), b.waitConnected()]);
    const bPeers = await peers(relay, keyB);
    expect(bPeers.body.peers.map((p) => p.agent_id)).toEqual(['b1']);
    let leaked = false;
    a.on('envelope', () => {
      leaked = true;
    });
    const err = nextDeliveryError(b);
    b.send({ to: 'a-secret', channel: 'c', seq: 1n, kind: 'k', payload: Buffer.from('x') });
    expect((await err).code).toBe(ErrorCode.PEER_NOT_FOUND);
    expect(leaked).toBe(false);
    // The same id may exist in another account.
    const bTwin = agent(relay, keyB, 'a-secret');
    await bTwin.waitConnected();
  });

  it('peers - lists id, kind, labels and times under all three header forms', async () => {
    const a = agent(relay, keyA, 'labelled', { gpu: 'a100', repo: 'payments' }, 'planner');
    await a.waitConnected();
    for (const header of ['ApiKey', 'Bearer', 'X-Api-Key'] as const) {
      const { status, body } = await peers(relay, keyA, header);
      expect(status).toBe(200);
      const p = body.peers.find((x) => x.agent_id === 'labelled');
      expect(p).toMatchObject({ kind: 'planner', labels: { gpu: 'a100', repo: 'payments' } });
      expect(Date.parse(p!.connected_since)).toBeGreaterThan(0);
      expect(Date.parse(p!.last_seen)).toBeGreaterThan(0);
      const health = (await (
        await fetch(`${relay.httpUrl}/healthz`, { headers: { 'x-api-key': keyA } })
      ).json()) as { relay_id: string };
      expect(p!.relay_id).toBe(health.relay_id);
      expect((body as unknown as { claims: string }).claims).toMatch(/coord\.\* included.*own claims/);
    }
  });

  it('peers - label updates show without reconnecting', async () => {
    const a = agent(relay, keyA, 'loady', { 'coord.load_pct': '0' });
    await a.waitConnected();
    let reconnects = 0;
    a.on('status', (s) => {
      if (s.type === 'connected') reconnects++;
    });
    a.setLabels({ 'coord.load_pct': '50' });
    await eventually(
      async () =>
        (await peers(relay, keyA)).body.peers.find((p) => p.agent_id === 'loady')?.labels[
          'coord.load_pct'
        ] === '50',
    );
    expect(reconnects).toBe(0);
  });

  it('auth - missing, malformed, wrong and revoked keys get distinct messages', async () => {
    const missing = await peers(relay, '', 'X-Api-Key');
    expect(missing.status).toBe(401);
    expect(missing.body.error?.message).toMatch(/missing API key/);
    const malformed = await peers(relay, 'not-a-key');
    expect(malformed.body.error?.message).toMatch(/malformed/);
    const wrong = await peers(relay, `${keyA.slice(0, -4)}AAAA`);
    expect(wrong.status).toBe(401);
    expect(wrong.body.error?.message).toMatch(/not recognised/);

    const grpcMissing = agent(relay, '', 'no-key');
    expect((await fatalOf(grpcMissing)).message).toMatch(
      /missing API key: pass --api-key or set NFLTR_API_KEY/,
    );
    const grpcWrong = agent(relay, `${keyA.slice(0, -4)}AAAA`, 'wrong-key');
    const wrongFatal = await fatalOf(grpcWrong);
    expect(wrongFatal.code).toBe('UNAUTHENTICATED');
    expect(wrongFatal.message).toMatch(/not recognised.*--api-key/);
  });

  it('auth - a revoked key is refused at once and its live streams are closed', async () => {
    const key = await createKey(relay.dataDir, 'acct-r');
    const a = agent(relay, key, 'doomed');
    await a.waitConnected();
    const fatal = fatalOf(a);
    const list = JSON.parse(
      (await nfltr(['keys', 'list', '--json', '--account', 'acct-r', '--data-dir', relay.dataDir])).stdout,
    ) as {
      keys: { id: string }[];
    };
    const revoke = await nfltr(['keys', 'revoke', list.keys[0]!.id, '--data-dir', relay.dataDir]);
    expect(revoke.code).toBe(0);
    expect((await fatal).message).toMatch(/revoked/);
    const http = await peers(relay, key);
    expect(http.status).toBe(401);
    expect(http.body.error?.message).toMatch(/was revoked at/);
    const unknown = await nfltr(['keys', 'revoke', 'feedfeedfeedfeed', '--data-dir', relay.dataDir]);
    expect(unknown.code).not.toBe(0);
    expect(unknown.stderr).toMatch(/no API key with id/);
  });

  it('identity - a live id is refused with ALREADY_EXISTS naming --name; the same session takes over', async () => {
    const first = agent(relay, keyA, 'unique-id');
    await first.waitConnected();
    const second = agent(relay, keyA, 'unique-id');
    const fatal = await fatalOf(second);
    expect(fatal.code).toBe('ALREADY_EXISTS');
    expect(fatal.message).toMatch(/--name/);
    expect(first.connected).toBe(true);

    const takeover = new AgentClient({
      servers: [relay.grpcAddr],
      apiKey: keyA,
      agentId: 'unique-id',
      kind: 'worker',
      sessionToken: first.sessionToken,
    });
    agents.push(takeover);
    await takeover.start().waitConnected();
  });

  it('frames - malformed and oversized frames are refused and the relay keeps serving', async () => {
    const a = agent(relay, keyA, 'survivor-a');
    const b = agent(relay, keyA, 'survivor-b');
    await Promise.all([a.waitConnected(), b.waitConnected()]);

    const raw = rawStream(relay, keyA);
    raw.call.write(hello('raw-agent'));
    await eventually(() => raw.frames.some((f) => f.frame.case === 'welcome'));
    raw.call.write(Buffer.from([0xff, 0xff, 0xff, 0x0f, 0x01]));
    await eventually(() => raw.frames.some((f) => f.frame.case === 'error'), 15_000, 'frame error');
    const malformed = raw.frames.find((f) => f.frame.case === 'error')!;
    expect(malformed.frame.value).toMatchObject({ code: ErrorCode.INVALID_ARGUMENT });
    expect((malformed.frame.value as { message: string }).message).toMatch(/malformed frame/);

    // Just over the 4 MiB bound: a precise error and the stream stays up. (Waits allow for 4 and 20 MiB
    // crossing a loaded machine; they end as soon as the answer is in.)
    raw.call.write(Buffer.alloc(4 * 1024 * 1024 + 10, 1));
    await eventually(
      () => raw.frames.filter((f) => f.frame.case === 'error').length === 2,
      15_000,
      'oversize error',
    );
    const oversize = raw.frames.filter((f) => f.frame.case === 'error')[1]!;
    expect((oversize.frame.value as { message: string }).message).toMatch(
      /exceeds the limit of 4194304 bytes/,
    );
    expect(raw.status()).toBeUndefined();

    // Far over: gRPC ends this one stream, cleanly.
    raw.call.write(Buffer.alloc(20 * 1024 * 1024, 1));
    await eventually(() => raw.status(), 15_000, 'stream status');
    expect(raw.status()!.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    raw.client.close();

    const got = nextEnvelope(b);
    a.send({ to: 'survivor-b', channel: 'c', seq: 1n, kind: 'k', payload: Buffer.from('still here') });
    expect(Buffer.from((await got).payload).toString()).toBe('still here');
  });

  it('frames - anything before hello, or a bad hello, ends the stream with INVALID_ARGUMENT', async () => {
    const raw = rawStream(relay, keyA);
    raw.call.write(
      Buffer.from(encodeAgentFrame({ case: 'labels', value: create(LabelUpdateSchema, { labels: {} }) })),
    );
    await eventually(() => raw.status(), 5000);
    expect(raw.status()).toMatchObject({ code: grpc.status.INVALID_ARGUMENT });
    expect(raw.status()!.details).toMatch(/first frame must be hello/);
    raw.client.close();

    const bad = agent(relay, keyA, 'bad id with spaces');
    const fatal = await fatalOf(bad);
    expect(fatal.code).toBe('INVALID_ARGUMENT');
    expect(fatal.message).toMatch(/--name/);
  });

  it('keepalive - an idle agent stays; one whose link goes silent is dropped from presence', async () => {
    const proxy = await freezableProxy(relay);
    // The agent's own keepalive is slow here, so that only the relay's can end the stream.
    const a = new AgentClient({
      servers: [proxy.addr],
      apiKey: keyA,
      agentId: 'silent-agent',
      kind: 'worker',
      keepaliveMs: 60_000,
    });
    agents.push(a);
    await a.start().waitConnected();
    const present = async () =>
      (await peers(relay, keyA)).body.peers.some((p) => p.agent_id === 'silent-agent');
    // Idle past --keepalive-timeout 1500ms without a frame either way: the relay's PINGs keep it.
    await new Promise((r) => setTimeout(r, 2500));
    expect(await present()).toBe(true);
    proxy.freeze();
    const frozenAt = Date.now();
    await eventually(async () => !(await present()), 6000, 'drop');
    expect(Date.now() - frozenAt).toBeGreaterThan(1000); // by the keepalive timeout, not a leaked close
    proxy.close(); // first: the agent hears of the close only once the link is gone
    await a.close();
  });

  it('keepalive - an agent notices a relay that stopped answering, and redials', async () => {
    const proxy = await freezableProxy(relay);
    const a = new AgentClient({
      servers: [proxy.addr],
      apiKey: keyA,
      agentId: 'stranded-agent',
      kind: 'worker',
      keepaliveMs: 300,
      backoffMs: [100],
    });
    agents.push(a);
    await a.start().waitConnected();
    const statuses: AgentStatus['type'][] = [];
    a.on('status', (s) => statuses.push(s.type));
    proxy.freeze();
    await eventually(() => statuses.includes('disconnected'), 5000, 'notice');
    // The redial opens a new link through the proxy and takes over the id from the frozen stream.
    await eventually(() => statuses.includes('connected'), 5000, 'redial');
    await a.close();
    proxy.close();
  });
});

describe('relay lifecycle', () => {
  /** A relay of its own (data dir, key) and a worker on it, connected. */
  async function relayWithWorker(agentId: string, backoffMs: number[]) {
    const dataDir = tempDir();
    const key = await createKey(dataDir, 'acct');
    const relay = await startRelayProcess({ dataDir });
    const a = new AgentClient({ servers: [relay.grpcAddr], apiKey: key, agentId, kind: 'worker', backoffMs });
    await a.start().waitConnected();
    return { relay, a };
  }

  it('redial - an agent comes back after a relay restart with its current labels', async () => {
    const dataDir = tempDir();
    const key = await createKey(dataDir, 'acct');
    let relay = await startRelayProcess({ dataDir });
    const { grpcPort, httpPort } = relay;
    const a = new AgentClient({
      servers: [relay.grpcAddr],
      apiKey: key,
      agentId: 'phoenix',
      kind: 'worker',
      labels: { v: '1' },
    });
    await a.start().waitConnected();
    a.setLabels({ v: '2', zone: 'eu' });
    await eventually(async () => (await peers(relay, key)).body.peers[0]?.labels.v === '2');
    expect(await relay.stop('SIGKILL')).toBe(null);
    await eventually(() => !a.connected, 5000);
    relay = await startRelayProcess({ dataDir, grpcPort, httpPort });
    await eventually(
      async () => (await peers(relay, key)).body.peers.find((p) => p.agent_id === 'phoenix'),
      10_000,
      'reappear',
    );
    expect((await peers(relay, key)).body.peers[0]!.labels).toEqual({ v: '2', zone: 'eu' });
    await a.close();
    await relay.stop();
  });

  it('redial - with its relay down, an agent waits on its link (no failed dial per retry) and close() ends the wait', async () => {
    const { relay, a } = await relayWithWorker('patient', [50]);
    const statuses: AgentStatus['type'][] = [];
    a.on('status', (s) => statuses.push(s.type));
    expect(await relay.stop('SIGKILL')).toBe(null);
    // A listener that drops every connection on the relay's port: each one is a redial of the agent's link.
    let dials = 0;
    const refuser = createServer((socket) => {
      dials++;
      socket.destroy();
    });
    await new Promise<void>((r) => refuser.listen(relay.grpcPort, '127.0.0.1', r));
    try {
      await eventually(() => dials >= 3, 10_000, 'three redials of the link');
      expect(statuses.filter((t) => t === 'disconnected')).toHaveLength(1);
      await a.close();
      expect(statuses.at(-1)).toBe('closed');
    } finally {
      await new Promise((r) => refuser.close(r));
    }
  });

  it('drain - SIGTERM tells agents to redial and exits 0', async () => {
    const { relay, a } = await relayWithWorker('drained', [60_000]);
    const disconnected = new Promise<AgentStatus>((res) =>
      a.on('status', (s) => s.type === 'disconnected' && res(s)),
    );
    expect(await relay.stop('SIGTERM')).toBe(0);
    expect(relay.stderr()).toMatch(/draining agents=1/);
    // Goaway's suggested delay (100 ms) replaces the agent's own backoff table.
    const s = (await disconnected) as Extract<AgentStatus, { type: 'disconnected' }>;
    expect(s.retryInMs).toBeLessThanOrEqual(100);
    await a.close();
  });

  it('dev - creates and then reuses the dev key, and prints the agent commands', async () => {
    const dataDir = tempDir();
    const first = await startRelayProcess({ dataDir, args: ['--dev'] });
    await eventually(() => first.stderr().includes('start a planner'));
    await first.stop();
    const key = (await import('node:fs')).readFileSync(join(dataDir, 'dev-api-key'), 'utf8').trim();
    expect(first.stderr()).toContain(key);
    expect(first.stderr()).toMatch(/nfltr worker --server 127\.0\.0\.1:\d+/);
    expect(first.stderr()).toMatch(/nfltr mcp --proxy-url http:\/\/127\.0\.0\.1:\d+ --server/);
    const second = await startRelayProcess({ dataDir, args: ['--dev'] });
    await eventually(() => second.stderr().includes('start a planner'));
    expect(second.stderr()).toContain(key);
    expect((await peers(second, key)).status).toBe(200);
    await second.stop();
  });

  it('tls - serves TLS on both listeners', async () => {
    const dir = tempDir();
    selfSignedCert(dir);
    const key = await createKey(dir, 'acct');
    const relay = await startRelayProcess({
      dataDir: dir,
      args: ['--tls-cert', join(dir, 'cert.pem'), '--tls-key', join(dir, 'key.pem')],
    });
    const a = new AgentClient({
      servers: [`localhost:${relay.grpcPort}`],
      apiKey: key,
      agentId: 'tls-agent',
      kind: 'worker',
      tls: true,
      tlsCaFile: join(dir, 'cert.pem'),
    });
    await a.start().waitConnected();
    const out = execFileSync(
      'curl',
      [
        '-s',
        '--cacert',
        join(dir, 'cert.pem'),
        '-H',
        `X-Api-Key: ${key}`,
        `https://localhost:${relay.httpPort}/api/v1/peers`,
      ],
      { encoding: 'utf8' },
    );
    expect(JSON.parse(out).peers[0].agent_id).toBe('tls-agent');
    await a.close();
    await relay.stop();
  });
});
