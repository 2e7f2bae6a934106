/**
 * The relay abuse cases, each against a real relay process on loopback. A case tries its attack
 * `tried` times and counts `bypasses`: times a bound, timeout or rule did not hold. `npm test` runs
 * them small (test/abuse/relay-abuse.test.ts); `npm run abuse` runs them larger and prints the table
 * (test/abuse/suite.ts). `scale` multiplies the counts.
 */
import { connect, type Socket } from 'node:net';
import { create } from '@bufbuild/protobuf';
import { AgentClient, type AgentStatus, type InboundEnvelope } from '../../src/agent/index.js';
import {
  type AgentKind,
  agentIdProblem,
  agentKindName,
  DEFAULT_MAX_FRAME_BYTES,
  decodeAgentFrame,
  EnvelopeSchema,
  ErrorCode,
  encodeAgentFrame,
  LabelUpdateSchema,
  labelsProblem,
  PROTOCOL_VERSION,
} from '../../src/protocol/control.js';
import { encodeAgentEnvelopes } from '../../src/protocol/envelope-frame.js';
import { createLogger } from '../../src/util/log.js';
import {
  createKey,
  eventually,
  nfltr,
  type RelayProcess,
  startRelayProcess,
  tempDir,
} from '../helpers/processes.js';
import {
  badLabelsFrame,
  envelopesFrame,
  gate,
  health,
  helloFrame,
  MiB,
  peerIds,
  rawAgent,
  rawStream,
  sleep,
  stalledAgent,
  watchBuffers,
} from './harness.js';

export interface AbuseContext {
  relay: RelayProcess;
  /** A key of the account under attack. */
  key: string;
  limits: {
    agentBuffer: number;
    accountBuffer: number;
    holdBytes: number;
    headersTimeoutMs: number;
    connsPerIp: number;
  };
  holdWindowMs: number;
  scale: number;
}

export interface CaseResult {
  tried: number;
  bypasses: number;
  detail: string;
}

export type AbuseCase = (ctx: AbuseContext) => Promise<CaseResult>;

const agents: AgentClient[] = [];
function agent(
  relay: RelayProcess,
  key: string,
  agentId: string,
  extra: Partial<ConstructorParameters<typeof AgentClient>[0]> = {},
) {
  const a = new AgentClient({ servers: [relay.grpcAddr], apiKey: key, agentId, kind: 'worker', ...extra });
  agents.push(a);
  return a.start();
}

/** Closes every agent the cases opened. */
export async function closeAgents(): Promise<void> {
  await Promise.all(agents.splice(0).map((a) => a.close()));
}

const gone = async (relay: RelayProcess, key: string, id: string, ms = 10_000) => {
  try {
    await eventually(async () => !(await peerIds(relay, key)).includes(id), ms, `${id} to leave`);
    return true;
  } catch {
    return false;
  }
};

/** Refused label updates as fast as the stream takes them, frame errors never read: the relay must end it. */
export const refusedLabelsFlood: AbuseCase = async ({ relay, key, scale }) => {
  const s = await stalledAgent(relay, key, 'abuse-labeller');
  let sent = 0;
  for (; sent < 20_000 * scale; sent++) if (!(await s.write(badLabelsFrame(sent)))) break;
  const ended = await gone(relay, key, 'abuse-labeller');
  s.close();
  return {
    tried: sent,
    bypasses: ended ? 0 : 1,
    detail: ended ? `${sent} sent; the relay ended the stream (control backlog)` : 'still connected',
  };
};

/** Envelopes to ids nobody holds, never reading the delivery errors. */
export const unknownPeerFlood: AbuseCase = async ({ relay, key, scale }) => {
  const s = await stalledAgent(relay, key, 'abuse-lost');
  let sent = 0;
  for (let i = 0; i < 40 * scale; i++) {
    const batch = Array.from({ length: 500 }, (_, j) => ({
      to: `nobody-${i}-${j}`,
      payload: Buffer.alloc(32),
    }));
    if (!(await s.write(envelopesFrame(batch)))) break;
    sent += batch.length;
  }
  const ended = await gone(relay, key, 'abuse-lost');
  s.close();
  return {
    tried: sent,
    bypasses: ended ? 0 : 1,
    detail: ended ? `${sent} sent; the relay ended the stream (control backlog)` : 'still connected',
  };
};

/** Eight receivers that never read, sent 1 MiB envelopes: buffers stay within the account's bound. */
export const slowReceivers: AbuseCase = async ({ relay, key, limits, scale }) => {
  const receivers = await Promise.all(
    Array.from({ length: 8 }, (_, i) => stalledAgent(relay, key, `abuse-slow-${i}`)),
  );
  const sender = agent(relay, key, 'abuse-fast');
  await sender.waitConnected();
  let busy = 0;
  sender.on('deliveryError', (e) => {
    if (e.code === ErrorCode.PEER_BUSY) busy++;
  });
  const count = 16 * 8 * scale;
  const payload = Buffer.alloc(MiB - 1024, 7);
  const { maxBuffered } = await watchBuffers(relay, key, async () => {
    for (let i = 0; i < count; i++) {
      await sender.whenWritable(8 * MiB);
      sender.send({ to: `abuse-slow-${i % 8}`, channel: 'bulk', seq: BigInt(i), kind: 'k', payload });
    }
    await eventually(() => sender.queuedBytes === 0, 20_000, 'the sender to flush');
    await sleep(300);
  });
  // A receiver that starts reading learns that envelopes for it were dropped, and why.
  const frames = receivers[0]!.read();
  const told = await eventually(
    () => frames.some((f) => f.frame.case === 'error' && f.frame.value.code === ErrorCode.PEER_BUSY),
    20_000,
    'the slow receiver to be told',
  )
    .then(() => true)
    .catch(() => false);
  for (const r of receivers) r.close();
  const drained = await eventually(
    async () => (await health(relay, key)).buffered_bytes === 0,
    10_000,
    'buffers to empty',
  )
    .then(() => true)
    .catch(() => false);
  const over = maxBuffered > limits.accountBuffer;
  return {
    tried: count,
    bypasses: (over ? 1 : 0) + (busy === 0 ? 1 : 0) + (drained ? 0 : 1) + (told ? 0 : 1),
    detail: `max buffered ${(maxBuffered / MiB).toFixed(1)} MiB of ${limits.accountBuffer / MiB}; ${busy} PEER_BUSY; receivers ${told ? 'told' : 'not told'}`,
  };
};

/** 1 MiB envelopes for an agent that just left, within --hold-window: the hold stays within --hold-bytes. */
export const holdFlood: AbuseCase = async ({ relay, key, limits, holdWindowMs, scale }) => {
  const leaver = agent(relay, key, 'abuse-leaver');
  const sender = agent(relay, key, 'abuse-holder');
  await Promise.all([leaver.waitConnected(), sender.waitConnected()]);
  let busy = 0;
  let notFound = 0;
  sender.on('deliveryError', (e) => {
    if (e.code === ErrorCode.PEER_BUSY) busy++;
    if (e.code === ErrorCode.PEER_NOT_FOUND) notFound++;
  });
  await leaver.close();
  await gone(relay, key, 'abuse-leaver');
  const count = Math.ceil((limits.holdBytes / MiB) * 1.5) * scale;
  const payload = Buffer.alloc(MiB - 1024, 3);
  const leftAt = Date.now();
  let sentAt = 0;
  const { maxHeld } = await watchBuffers(relay, key, async () => {
    for (let i = 0; i < count; i++) {
      await sender.whenWritable(8 * MiB);
      sender.send({ to: 'abuse-leaver', channel: 'held', seq: BigInt(i), kind: 'k', payload });
    }
    sentAt = Date.now();
    await eventually(() => busy + notFound > 0, 10_000, 'a refusal');
  });
  // A flood sent within the window must have met the bound; a loaded machine may send it slower.
  const metBound = busy > 0 || sentAt - leftAt > holdWindowMs;
  // Everything held expires with the window and is reported.
  await eventually(
    () => busy + notFound >= count,
    holdWindowMs + 10_000,
    'every held envelope to be reported',
  );
  const held = (await health(relay, key)).held_bytes;
  return {
    tried: count,
    bypasses: (maxHeld > limits.holdBytes ? 1 : 0) + (metBound ? 0 : 1) + (held !== 0 ? 1 : 0),
    detail: `max held ${(maxHeld / MiB).toFixed(1)} MiB of ${limits.holdBytes / MiB}; ${busy} PEER_BUSY, ${notFound} expired`,
  };
};

/** HTTP clients trickling headers, more of them than one address may open: all closed within the timeout. */
export const slowloris: AbuseCase = async ({ relay, limits, scale }) => {
  const n = Math.max(limits.connsPerIp + 10, 50) * scale;
  const sockets: Socket[] = [];
  const closedAt = new Map<Socket, number>();
  const start = Date.now();
  for (let i = 0; i < n; i++) {
    const s = connect(relay.httpPort, '127.0.0.1');
    s.on('error', () => {});
    s.on('close', () => closedAt.set(s, Date.now()));
    s.write('GET /healthz HTTP/1.1\r\nHost: relay\r\n');
    sockets.push(s);
  }
  const trickle = setInterval(() => {
    for (const s of sockets) if (!s.destroyed) s.write('X');
  }, 300);
  await sleep(limits.headersTimeoutMs + 2_500);
  clearInterval(trickle);
  const open = sockets.filter((s) => !closedAt.has(s)).length;
  const refusedAtOnce = [...closedAt.values()].filter((t) => t - start < 1_000).length;
  for (const s of sockets) s.destroy();
  return {
    tried: n,
    bypasses: open + (refusedAtOnce < n - limits.connsPerIp ? 1 : 0),
    detail: `${refusedAtOnce} refused at once (cap ${limits.connsPerIp}), the rest closed by the headers timeout; ${open} still open after ${limits.headersTimeoutMs + 2_500} ms`,
  };
};

/** Deterministic pseudo-random bytes, so a failing run can be repeated. */
function rng(seed: number) {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 0x100000000;
  };
}

/** Whether the relay must welcome a stream opening with these bytes. */
function validHello(bytes: Buffer): boolean {
  try {
    const f = decodeAgentFrame(bytes, DEFAULT_MAX_FRAME_BYTES).frame;
    if (f.case !== 'hello') return false;
    const h = f.value;
    return (
      !agentIdProblem(h.agentId) &&
      !labelsProblem(h.labels) &&
      agentKindName(h.kind) !== undefined &&
      h.sessionToken.length > 0 &&
      h.sessionToken.length <= 128 &&
      h.protocolVersion === PROTOCOL_VERSION
    );
  } catch {
    return false;
  }
}

/** Valid frames bit-flipped, truncated, spliced and random, before and after hello. */
export const fuzzFrames: AbuseCase = async ({ relay, key, scale }) => {
  const rand = rng(42);
  const seeds = [
    helloFrame('fuzz-x'),
    badLabelsFrame(7),
    encodeAgentFrame({
      case: 'labels',
      value: create(LabelUpdateSchema, { labels: { a: 'b', 'coord.x': '1' } }),
    }),
    envelopesFrame([
      { to: 'abuse-fuzz-peer', payload: Buffer.from('hello') },
      { to: 'x', payload: Buffer.alloc(0) },
    ]),
  ];
  const mutate = (): Buffer => {
    const base = Buffer.from(seeds[Math.floor(rand() * seeds.length)]!);
    switch (Math.floor(rand() * 4)) {
      case 0:
        for (let i = 0; i < 1 + rand() * 4; i++)
          base[Math.floor(rand() * base.length)]! ^= 1 << Math.floor(rand() * 8);
        return base;
      case 1:
        return base.subarray(0, Math.floor(rand() * base.length));
      case 2:
        return Buffer.concat([
          base,
          Buffer.from(Array.from({ length: Math.floor(rand() * 64) }, () => Math.floor(rand() * 256))),
        ]);
      default:
        return Buffer.from(Array.from({ length: Math.floor(rand() * 128) }, () => Math.floor(rand() * 256)));
    }
  };
  const peer = await rawAgent(relay, key, 'abuse-fuzz-peer');
  const s = await rawAgent(relay, key, 'abuse-fuzzer');
  let tried = 0;
  for (let i = 0; i < 5_000 * scale; i++) {
    if (!(await s.write(mutate()))) break;
    tried++;
  }
  // Before hello: every stream must end, none welcomed unless its frame is a valid hello.
  let welcomed = 0;
  const early = Array.from({ length: 20 * scale }, () => rawStream(relay, key));
  const firsts = early.map(() => mutate());
  await Promise.all(early.map((e, i) => e.write(firsts[i]!)));
  await Promise.all(early.map((e) => Promise.race([e.ended, sleep(12_000)])));
  for (const [i, e] of early.entries()) {
    if (e.frames.some((f) => f.frame.case === 'welcome') && !validHello(firsts[i]!)) welcomed++;
    e.close();
  }
  tried += early.length;
  s.close();
  peer.close();
  return { tried, bypasses: welcomed, detail: `${welcomed} welcomed without a valid hello` };
};

/** Frames over the bound: refused precisely (small excess) or the stream reset (large). */
export const oversizedFrames: AbuseCase = async ({ relay, key, scale }) => {
  let bypasses = 0;
  let tried = 0;
  for (let i = 0; i < 2 * scale; i++) {
    const s = await rawAgent(relay, key, `abuse-big-${i}`);
    await s.write(Buffer.alloc(DEFAULT_MAX_FRAME_BYTES + 10, 1));
    await eventually(() => s.frames.some((f) => f.frame.case === 'error'), 5_000, 'frame error').catch(
      () => bypasses++,
    );
    await s.write(Buffer.alloc(3 * DEFAULT_MAX_FRAME_BYTES, 1));
    const ended = await Promise.race([s.ended, sleep(5_000).then(() => undefined)]);
    if (!ended) bypasses++;
    tried += 2;
    s.close();
  }
  return { tried, bypasses, detail: 'small excess: FrameError; 3x the bound: RESOURCE_EXHAUSTED' };
};

const varint = (n: number) => {
  const out: number[] = [];
  while (n > 0x7f) {
    out.push((n & 0x7f) | 0x80);
    n >>>= 7;
  }
  out.push(n);
  return Buffer.from(out);
};

/** Envelopes carrying fields the relay does not know: dropped, and no frame grows past the bound. */
export const unknownFields: AbuseCase = async ({ relay, key, scale }) => {
  const recv = await rawAgent(relay, key, 'abuse-uf-recv');
  const sizes: number[] = [];
  recv.call.on('data', (b: Buffer) => sizes.push(b.byteLength));
  const send = await rawAgent(relay, key, 'abuse-uf-send');
  const n = 12 * scale;
  const junk = Buffer.concat([varint(3 * MiB), Buffer.alloc(3 * MiB, 9)]);
  for (let i = 0; i < n; i++) {
    const env = create(EnvelopeSchema, {
      to: 'abuse-uf-recv',
      channel: 'c',
      seq: BigInt(i),
      kind: 'k',
      payload: Buffer.from('x'),
    });
    env.$unknown = [{ no: 99, wireType: 2, data: junk }];
    await send.write(encodeAgentEnvelopes([env]));
  }
  await eventually(
    () =>
      recv.frames.flatMap((f) => (f.frame.case === 'envelopes' ? f.frame.value.envelopes : [])).length >= n,
    15_000,
    'delivery',
  );
  const envs = recv.frames.flatMap((f) => (f.frame.case === 'envelopes' ? f.frame.value.envelopes : []));
  const carried = envs.filter((e) => (e.$unknown?.length ?? 0) > 0).length;
  const oversize = sizes.filter((b) => b > DEFAULT_MAX_FRAME_BYTES).length;
  recv.close();
  send.close();
  return {
    tried: n,
    bypasses: carried + oversize,
    detail: `${carried} envelopes delivered with unknown fields; largest frame built ${Math.max(...sizes)} bytes`,
  };
};

/** Another key of the account wants a live worker's id, with and without its leaked session token, and across a relay restart. */
export const squatting: AbuseCase = async () => {
  const dataDir = tempDir();
  const owner = await createKey(dataDir, 'abuse-sq');
  const squatterKey = await createKey(dataDir, 'abuse-sq');
  let relay = await startRelayProcess({ dataDir });
  const { grpcPort, httpPort } = relay;
  let bypasses = 0;
  const statuses: AgentStatus[] = [];
  const lines: string[] = [];
  // The holder dials through a gate, so that after the restart the squatter is first back on any machine.
  const holderGate = await gate(grpcPort);
  const holder = agent(relay, owner, 'sq-worker', {
    servers: [holderGate.addr],
    backoffMs: [1500, 1500, 1500],
    logger: createLogger('holder', { sink: (l) => lines.push(l) }),
  });
  holder.on('status', (s) => statuses.push(s));
  await holder.waitConnected();
  const fatal = (a: AgentClient) =>
    new Promise<string>((res) => a.on('status', (s) => s.type === 'fatal' && res(s.code)));

  const plain = agent(relay, squatterKey, 'sq-worker');
  if ((await fatal(plain)) !== 'ALREADY_EXISTS' || !holder.connected) bypasses++;
  const leaked = agent(relay, squatterKey, 'sq-worker', { sessionToken: holder.sessionToken });
  if ((await fatal(leaked)) !== 'ALREADY_EXISTS' || !holder.connected) bypasses++;

  // The relay restarts and the squatter is first back.
  holderGate.shut();
  await relay.stop('SIGKILL');
  relay = await startRelayProcess({ dataDir, grpcPort, httpPort });
  const squatter = agent(relay, squatterKey, 'sq-worker', { backoffMs: [50] });
  await squatter.waitConnected();
  holderGate.open();
  await eventually(
    () => statuses.some((s) => s.type === 'disconnected' && /ALREADY_EXISTS/.test(s.reason)),
    10_000,
    'the holder to be refused',
  );
  await sleep(2_000);
  if (statuses.some((s) => s.type === 'fatal')) bypasses++;
  await squatter.close();
  const back = await eventually(() => holder.connected, 15_000, 'the holder back')
    .then(() => true)
    .catch(() => false);
  if (!back) bypasses++;
  const logged = lines.some((l) =>
    /agent id is held by another connection; redialling until it leaves agent=sq-worker/.test(l),
  );
  if (!logged) bypasses++;
  await holder.close();
  holderGate.close();
  await relay.stop();
  return {
    tried: 3,
    bypasses,
    detail: `live id kept against another key (twice); holder ${back ? 'redialled and got its id back' : 'did not get its id back'}${logged ? ', with a log naming the id' : ', without a log'}`,
  };
};

/** Envelopes flow from a key while it is revoked: none may arrive after `keys revoke` returns. */
export const revokeRace: AbuseCase = async ({ relay, scale }) => {
  let tried = 0;
  let bypasses = 0;
  for (let round = 0; round < scale; round++) {
    const account = `abuse-rev-${round}`;
    const doomedKey = await createKey(relay.dataDir, account);
    const witnessKey = await createKey(relay.dataDir, account);
    const sender = agent(relay, doomedKey, 'rev-sender');
    const recv = agent(relay, witnessKey, 'rev-recv');
    await Promise.all([sender.waitConnected(), recv.waitConnected()]);
    const arrivals: number[] = [];
    recv.on('envelope', (_e: InboundEnvelope) => arrivals.push(Date.now()));
    let sending = true;
    const pump = (async () => {
      for (let seq = 0n; sending; seq++) {
        try {
          sender.send({ to: 'rev-recv', channel: 'c', seq, kind: 'k', payload: Buffer.alloc(64) });
          tried++;
        } catch {
          return;
        }
        if (seq % 20n === 0n) await sleep(1);
      }
    })();
    await eventually(() => arrivals.length > 50, 5_000, 'envelopes flowing');
    const id = /^nfk_([0-9a-f]{16})_/.exec(doomedKey)![1]!;
    const r = await nfltr(['keys', 'revoke', id, '--data-dir', relay.dataDir]);
    const returnedAt = Date.now();
    const stillListed = (await peerIds(relay, witnessKey)).includes('rev-sender');
    await sleep(500);
    sending = false;
    await pump;
    // Bytes already on the loopback socket when the command returned may still land for a moment.
    const late = arrivals.filter((t) => t > returnedAt + 100).length;
    if (r.code !== 0 || stillListed || late > 0) bypasses++;
    await recv.close();
    await sender.close();
  }
  return {
    tried,
    bypasses,
    detail: 'no envelope of the key delivered, and its stream gone, once keys revoke returned',
  };
};

/** Kind 99 in hello: refused with a precise INVALID_ARGUMENT. */
export const unknownKind: AbuseCase = async ({ relay, key }) => {
  const s = rawStream(relay, key);
  await s.write(helloFrame('abuse-kind', 99 as AgentKind));
  const end = await Promise.race([s.ended, sleep(5_000).then(() => undefined)]);
  s.close();
  const ok = end !== undefined && /agent kind 99/.test(end.details);
  return { tried: 1, bypasses: ok ? 0 : 1, detail: end?.details ?? 'not refused' };
};

export const CASES: Record<string, AbuseCase> = {
  'refused label updates, frame errors unread': refusedLabelsFlood,
  'envelopes to unknown peers, errors unread': unknownPeerFlood,
  'slow receivers of 1 MiB envelopes': slowReceivers,
  'hold-window flood': holdFlood,
  slowloris: slowloris,
  'fuzzed control frames': fuzzFrames,
  'oversized frames': oversizedFrames,
  'unknown envelope fields': unknownFields,
  'agent kind 99': unknownKind,
  'id squatting': squatting,
  'revoke race': revokeRace,
};
