/**
 * The abuse suite's tools: raw control streams that send what a real agent never would (and may never
 * read), the relay's RSS from /proc, and the account's buffers as `/healthz` reports them to a key.
 * Loopback only: every case targets a relay process started by the suite.
 */
import { readFileSync } from 'node:fs';
import { connect as http2Connect } from 'node:http2';
import { type AddressInfo, connect, createServer, type Socket } from 'node:net';
import { create } from '@bufbuild/protobuf';
import * as grpc from '@grpc/grpc-js';
import {
  AgentKind,
  CONNECT_METHOD_PATH,
  decodeRelayFrame,
  EnvelopeSchema,
  encodeAgentFrame,
  HelloSchema,
  LabelUpdateSchema,
  PROTOCOL_VERSION,
  type RelayFrame,
} from '../../src/protocol/control.js';
import { encodeAgentEnvelopes } from '../../src/protocol/envelope-frame.js';
import type { RelayProcess } from '../helpers/processes.js';

export const MiB = 1024 * 1024;

/** Resident memory of a process, in MiB. */
export const rssMiB = (pid: number): number =>
  Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) / 1024;

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Samples a relay's RSS until stopped; `peak` is the largest sample. */
export function rssSampler(relay: RelayProcess, everyMs = 50) {
  const pid = relay.child.pid!;
  let peak = rssMiB(pid);
  const timer = setInterval(() => {
    try {
      peak = Math.max(peak, rssMiB(pid));
    } catch {
      // the relay exited: the crash is reported by the case
    }
  }, everyMs);
  return {
    get peak() {
      return peak;
    },
    stop: () => clearInterval(timer),
  };
}

export interface HealthDetails {
  agents: number;
  buffered_bytes: number;
  held_bytes: number;
  drops: Record<string, number>;
}

export async function health(relay: RelayProcess, key: string): Promise<HealthDetails> {
  const res = await fetch(`${relay.httpUrl}/healthz`, { headers: { 'x-api-key': key } });
  return (await res.json()) as HealthDetails;
}

/** Polls the account's buffers while `during` runs; returns the largest seen. */
export async function watchBuffers<T>(
  relay: RelayProcess,
  key: string,
  during: () => Promise<T>,
): Promise<{ result: T; maxBuffered: number; maxHeld: number }> {
  let maxBuffered = 0;
  let maxHeld = 0;
  let on = true;
  const poller = (async () => {
    while (on) {
      try {
        const h = await health(relay, key);
        maxBuffered = Math.max(maxBuffered, h.buffered_bytes);
        maxHeld = Math.max(maxHeld, h.held_bytes);
      } catch {
        // a busy relay may refuse a poll; the next one counts
      }
      await sleep(50);
    }
  })();
  try {
    const result = await during();
    return { result, maxBuffered, maxHeld };
  } finally {
    on = false;
    await poller;
  }
}

export async function peerIds(relay: RelayProcess, key: string): Promise<string[]> {
  const res = await fetch(`${relay.httpUrl}/api/v1/peers`, { headers: { 'x-api-key': key } });
  return ((await res.json()) as { peers: { agent_id: string }[] }).peers.map((p) => p.agent_id);
}

export interface RawStream {
  call: grpc.ClientDuplexStream<Buffer, Buffer>;
  /** Frames read. */
  frames: RelayFrame[];
  /** The stream's end as the client saw it: a status, or an error when reset. */
  ended: Promise<{ code: number; details: string }>;
  /** Writes respecting the stream's backpressure; false once the stream is gone. */
  write(bytes: Buffer): Promise<boolean>;
  close(): void;
}

/** A control stream on its own connection, for frames the real agent never sends. */
export function rawStream(relay: RelayProcess, key: string): RawStream {
  const client = new grpc.Client(relay.grpcAddr, grpc.credentials.createInsecure(), {
    'grpc.max_send_message_length': 64 * MiB,
    'grpc.max_receive_message_length': 64 * MiB,
    'grpc.use_local_subchannel_pool': 1,
  });
  const md = new grpc.Metadata();
  md.set('authorization', `Bearer ${key}`);
  const id = (b: Buffer) => b;
  const call = client.makeBidiStreamRequest(CONNECT_METHOD_PATH, id, id, md, {});
  const frames: RelayFrame[] = [];
  let gone = false;
  const ended = new Promise<{ code: number; details: string }>((resolve) => {
    call.on('status', (s: grpc.StatusObject) => resolve({ code: s.code, details: s.details }));
    call.on('error', (e: grpc.ServiceError) => resolve({ code: e.code, details: e.details }));
  });
  void ended.then(() => {
    gone = true;
  });
  call.on('data', (b: Buffer) => frames.push(decodeRelayFrame(b, 64 * MiB)));
  return {
    call,
    frames,
    ended,
    write: async (bytes) => {
      if (gone || call.destroyed) return false;
      if (!call.write(bytes)) {
        await Promise.race([new Promise((r) => call.once('drain', r)), ended, sleep(2_000)]);
      }
      return !gone;
    },
    close: () => {
      call.cancel();
      client.close();
    },
  };
}

export const helloFrame = (agentId: string, kind: AgentKind = AgentKind.WORKER, token = `tok-${agentId}`) =>
  encodeAgentFrame({
    case: 'hello',
    value: create(HelloSchema, { agentId, kind, protocolVersion: PROTOCOL_VERSION, sessionToken: token }),
  });

/** Opens a raw stream, sends hello and waits until the relay lists the agent. */
export async function rawAgent(relay: RelayProcess, key: string, agentId: string): Promise<RawStream> {
  const s = rawStream(relay, key);
  await s.write(helloFrame(agentId));
  const deadline = Date.now() + 10_000;
  for (;;) {
    if ((await peerIds(relay, key)).includes(agentId)) return s;
    if (Date.now() > deadline) throw new Error(`raw agent ${agentId} was not admitted`);
    await sleep(20);
  }
}

/** A label update the relay refuses (the key has a space), answered by a FrameError each time. */
export const badLabelsFrame = (n: number) =>
  encodeAgentFrame({
    case: 'labels',
    value: create(LabelUpdateSchema, { labels: { [`bad key ${n}`]: 'x' } }),
  });

export const envelopesFrame = (envs: { to: string; channel?: string; seq?: bigint; payload: Uint8Array }[]) =>
  encodeAgentEnvelopes(
    envs.map((e) =>
      create(EnvelopeSchema, {
        to: e.to,
        channel: e.channel ?? 'abuse',
        seq: e.seq ?? 1n,
        kind: 'k',
        payload: e.payload,
      }),
    ),
  );

/**
 * A control stream spoken over plain HTTP/2 that never reads what the relay sends, not even into its
 * transport: nothing is consumed, so no flow-control window is given back and the relay's writes stop.
 * (A gRPC client keeps taking messages off the connection into its own memory.)
 */
export async function stalledAgent(relay: RelayProcess, key: string, agentId: string) {
  const session = http2Connect(`http://127.0.0.1:${relay.grpcPort}`);
  session.on('error', () => {});
  const req = session.request({
    ':method': 'POST',
    ':path': CONNECT_METHOD_PATH,
    'content-type': 'application/grpc',
    te: 'trailers',
    authorization: `Bearer ${key}`,
  });
  req.on('error', () => {});
  req.pause();
  let gone = false;
  req.on('close', () => {
    gone = true;
  });
  const write = async (frame: Buffer): Promise<boolean> => {
    if (gone) return false;
    const prefix = Buffer.alloc(5);
    prefix.writeUInt32BE(frame.byteLength, 1);
    if (!req.write(Buffer.concat([prefix, frame]))) {
      await Promise.race([new Promise((r) => req.once('drain', r)), sleep(2_000)]);
    }
    return !gone;
  };
  await write(helloFrame(agentId));
  const deadline = Date.now() + 10_000;
  while (!(await peerIds(relay, key)).includes(agentId)) {
    if (Date.now() > deadline) throw new Error(`stalled agent ${agentId} was not admitted`);
    await sleep(20);
  }
  return {
    write,
    /** True once the relay ended or reset the stream. */
    get ended() {
      return gone;
    },
    /** Starts reading at last; frames read so far are decoded into the returned array as they come. */
    read(): RelayFrame[] {
      const frames: RelayFrame[] = [];
      let buf = Buffer.alloc(0);
      req.on('data', (chunk: Buffer) => {
        buf = Buffer.concat([buf, chunk]);
        while (buf.length >= 5 && buf.length >= 5 + buf.readUInt32BE(1)) {
          const len = buf.readUInt32BE(1);
          frames.push(decodeRelayFrame(buf.subarray(5, 5 + len), 64 * MiB));
          buf = buf.subarray(5 + len);
        }
      });
      req.resume();
      return frames;
    },
    close: () => session.destroy(),
  };
}

/** A TCP forwarder to a port on loopback that refuses connections while shut: it decides who reaches a relay first. */
export interface Gate {
  addr: string;
  shut(): void;
  open(): void;
  close(): void;
}

export async function gate(port: number): Promise<Gate> {
  let shut = false;
  const sockets = new Set<Socket>();
  const server = createServer((inbound) => {
    if (shut) return inbound.destroy();
    const outbound = connect(port, '127.0.0.1');
    const end = () => {
      inbound.destroy();
      outbound.destroy();
      sockets.delete(inbound);
    };
    sockets.add(inbound);
    for (const s of [inbound, outbound]) s.on('error', end).on('close', end);
    inbound.pipe(outbound).pipe(inbound);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    addr: `127.0.0.1:${(server.address() as AddressInfo).port}`,
    shut: () => {
      shut = true;
    },
    open: () => {
      shut = false;
    },
    close: () => {
      server.close();
      for (const s of sockets) s.destroy();
    },
  };
}
