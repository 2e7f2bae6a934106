/**
 * @module Composes a relay replica: store, bus, presence (the cluster), the gRPC control service, the
 * HTTP API, transport keepalive, presence heartbeat and revocation sweeps, and draining shutdown.
 */
import { randomBytes } from 'node:crypto';
import { appendFileSync, readFileSync } from 'node:fs';
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { hostname } from 'node:os';
import { create } from '@bufbuild/protobuf';
import * as grpc from '@grpc/grpc-js';
import { DEFAULT_MAX_FRAME_BYTES, type Envelope, GoawaySchema } from '../protocol/control.js';
import { relayServiceDefinition } from '../protocol/grpc.js';
import type { Logger } from '../util/log.js';
import { listenForAgents } from './agent-listener.js';
import { AiSessions } from './ai-sessions.js';
import { Browse } from './browse.js';
import type { Bus } from './bus/bus.js';
import { LocalBus } from './bus/local/index.js';
import { Cluster } from './cluster.js';
import { createControlHandler } from './control-service.js';
import { HoldQueue } from './hold.js';
import { createHttpHandler, createUpgradeHandler } from './http-api.js';
import { Accounting } from './limits.js';
import { Orchestration } from './orchestration.js';
import type { Presence } from './presence.js';
import { memoryReclaimer } from './reclaim.js';
import { Revocations } from './revocation.js';
import type { Store } from './store/store.js';

/**
 * The relay's PING only finds agents gone without closing their connection (power cut, partition);
 * an agent that exits or crashes closes it at once. At 10 000 idle agents every PING exchange costs the
 * relay tens of µs of kernel and HTTP/2 work, so it is rare: with the agents' own (30 s, see
 * AgentOptions.keepaliveMs) the fleet's idle cost stays under 1 % of a core (`npm run bench`).
 */
export const DEFAULT_KEEPALIVE_INTERVAL_MS = 60_000;
export const DEFAULT_KEEPALIVE_TIMEOUT_MS = 90_000;
/** How long envelopes for a reconnecting agent are held: a relay restart takes about a second. */
export const DEFAULT_HOLD_WINDOW_MS = 10_000;
/** What one agent, one account and one client address may cost this relay. */
export interface RelayLimits {
  /** Bytes of envelopes buffered for one agent that reads slowly (`--agent-buffer`). */
  agentBufferBytes: number;
  /** Bytes of delivery and frame errors unread by one agent before its stream is ended (`--control-backlog`). */
  controlBacklogBytes: number;
  /** Bytes buffered for all of one account's agents on this replica (`--account-buffer`). */
  accountBufferBytes: number;
  /** Bytes held for one account's reconnecting agents (`--hold-bytes`). */
  holdBytes: number;
  /** Open HTTP connections from one client address (`--http-max-conns-per-ip`). */
  httpConnsPerIp: number;
  /** Time a client has to send a request's headers (`--http-headers-timeout`). */
  httpHeadersTimeoutMs: number;
  /** Time a client has to send a whole request (`--http-request-timeout`). */
  httpRequestTimeoutMs: number;
  /** An idle keep-alive connection is closed after this (`--http-idle-timeout`). */
  httpIdleTimeoutMs: number;
}

const MiB = 1024 * 1024;

/**
 * An agent's buffer covers the artifact window of several transfers at once (8 MiB each); an account's
 * covers several slow agents; both are far below what the relay's host has, so one account cannot
 * starve the others.
 */
export const DEFAULT_LIMITS: RelayLimits = {
  agentBufferBytes: 64 * MiB,
  controlBacklogBytes: 1 * MiB,
  accountBufferBytes: 256 * MiB,
  holdBytes: 64 * MiB,
  httpConnsPerIp: 128,
  httpHeadersTimeoutMs: 5_000,
  httpRequestTimeoutMs: 30_000,
  httpIdleTimeoutMs: 5_000,
};

export interface RelayOptions {
  store: Store;
  /** How replicas reach each other; the in-process bus (a relay alone) by default. The caller closes it. */
  bus?: Bus;
  logger: Logger;
  grpcAddr: string;
  httpAddr: string;
  /** The gRPC address agents are told to dial (`--advertise-grpc`), when a proxy stands in front. */
  advertiseGrpc?: string;
  tls?: { certFile: string; keyFile: string };
  maxFrameBytes?: number;
  /** How often each agent's connection is pinged (HTTP/2 PING, answered by the agent's HTTP/2 stack). */
  keepaliveIntervalMs?: number;
  /** A connection silent this long (its PING unanswered) is dropped from presence; above the interval. */
  keepaliveTimeoutMs?: number;
  /** How often the store's revocation count is checked (a revocation waits for it: keep it short). */
  revocationPollMs?: number;
  /** Memory bounds; see {@link DEFAULT_LIMITS}. */
  limits?: Partial<RelayLimits>;
  /** Appends every routed envelope (header and base64 payload) to this file as JSON lines. */
  captureFile?: string;
  /** How long envelopes for a reconnecting agent are held before PEER_NOT_FOUND (0: never). */
  holdWindowMs?: number;
  /** How often this replica refreshes its presence rows and tells the others it is alive. */
  presenceHeartbeatMs?: number;
  /** A replica silent this long is dead: its agents leave every replica's presence. */
  presenceTtlMs?: number;
}

export interface Relay {
  readonly relayId: string;
  readonly grpcPort: number;
  readonly httpPort: number;
  /** The agents this replica holds. */
  readonly presence: Presence;
  readonly cluster: Cluster;
  readonly accounting: Accounting;
  /** Stops accepting, tells every agent to redial elsewhere, closes listeners. */
  drain(reason?: string): Promise<void>;
}

/** Splits `host:port`; a bare `:port` binds every interface. */
export function splitHostPort(addr: string, flag: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(addr);
  const port = m ? Number(m[3]) : Number.NaN;
  if (!m || port > 65535) throw new Error(`${flag}: expected host:port, got ${JSON.stringify(addr)}`);
  return { host: m[1] ?? (m[2] || '0.0.0.0'), port };
}

/** What the relay sees of each envelope, written where an auditor (or a test) can read it. */
function captureTo(file: string) {
  return (env: Envelope) =>
    appendFileSync(
      file,
      `${JSON.stringify({ from: env.from, to: env.to, channel: env.channel, seq: String(env.seq), kind: env.kind, payload: Buffer.from(env.payload).toString('base64') })}\n`,
    );
}

export async function startRelay(opts: RelayOptions): Promise<Relay> {
  const { store, logger } = opts;
  const relayId = `${hostname()}-${randomBytes(3).toString('hex')}`;
  const maxFrameBytes = opts.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES;
  const keepaliveIntervalMs = opts.keepaliveIntervalMs ?? DEFAULT_KEEPALIVE_INTERVAL_MS;
  const keepaliveTimeoutMs = opts.keepaliveTimeoutMs ?? DEFAULT_KEEPALIVE_TIMEOUT_MS;
  if (keepaliveTimeoutMs <= keepaliveIntervalMs) {
    throw new Error(
      `--keepalive-timeout (${keepaliveTimeoutMs} ms) must be longer than --keepalive-interval (${keepaliveIntervalMs} ms)`,
    );
  }
  const bus = opts.bus ?? new LocalBus();
  const presenceHeartbeatMs = opts.presenceHeartbeatMs ?? 5_000;
  const presenceTtlMs = opts.presenceTtlMs ?? 20_000;
  if (presenceTtlMs < 2 * presenceHeartbeatMs) {
    throw new Error(
      `--presence-ttl (${presenceTtlMs} ms) must be at least twice --presence-heartbeat (${presenceHeartbeatMs} ms)`,
    );
  }
  const limits = { ...DEFAULT_LIMITS, ...opts.limits };
  if (limits.httpRequestTimeoutMs < limits.httpHeadersTimeoutMs) {
    throw new Error(
      `--http-request-timeout (${limits.httpRequestTimeoutMs} ms) must not be shorter than --http-headers-timeout (${limits.httpHeadersTimeoutMs} ms)`,
    );
  }
  const accounting = new Accounting(
    { bufferBytes: limits.accountBufferBytes, holdBytes: limits.holdBytes },
    memoryReclaimer(logger),
  );
  const hold = new HoldQueue({ windowMs: opts.holdWindowMs ?? DEFAULT_HOLD_WINDOW_MS, accounting });
  const cluster = new Cluster({
    relayId,
    store,
    bus,
    hold,
    accounting,
    logger: logger.child('cluster'),
    presenceTtlMs,
    onRouted: opts.captureFile ? captureTo(opts.captureFile) : undefined,
  });
  await cluster.start();
  const presence = cluster.local;
  // Alone, replica rows in the store are left over from earlier runs of this relay: none is alive.
  if (!bus.shared) await store.forgetReplicas();
  const revocationPollMs = opts.revocationPollMs ?? 250;
  const revocations = new Revocations({
    store,
    relayId,
    logger: logger.child('revocation'),
    pollMs: revocationPollMs,
  });
  await revocations.poll();
  let accepting = true;

  const ai = new AiSessions({
    cluster,
    store,
    logger: logger.child('ai'),
    capture: opts.captureFile ? captureTo(opts.captureFile) : undefined,
  });
  const tls = opts.tls && { cert: readFileSync(opts.tls.certFile), key: readFileSync(opts.tls.keyFile) };

  const browse = new Browse({
    cluster,
    logger: logger.child('browse'),
    timeoutMs: limits.httpRequestTimeoutMs,
    revocations,
  });
  const grpcServer = new grpc.Server({
    // Frames a little over our bound still reach our decoder, which answers with a precise error.
    'grpc.max_receive_message_length': maxFrameBytes * 2,
    'grpc.max_send_message_length': maxFrameBytes * 2,
    // Keepalive is HTTP/2 PING, timed and answered below our code: an idle agent costs the relay no
    // frame, decode or callback of its own. A PING goes out an interval after the last answer, so a
    // dead agent is dropped at most keepaliveTimeoutMs after it last answered.
    'grpc.keepalive_time_ms': keepaliveIntervalMs,
    'grpc.keepalive_timeout_ms': keepaliveTimeoutMs - keepaliveIntervalMs,
    // Channelz bookkeeping per connection is memory and work a fleet of idle agents pays for nothing.
    'grpc.enable_channelz': 0,
  });
  grpcServer.addService(relayServiceDefinition, {
    connect: createControlHandler({
      store,
      cluster,
      logger: logger.child('control'),
      relayId,
      keepaliveIntervalMs,
      helloTimeoutMs: 10_000,
      maxFrameBytes,
      agentBufferBytes: limits.agentBufferBytes,
      controlBacklogBytes: limits.controlBacklogBytes,
      accepting: () => accepting,
      hold,
      accounting,
      revocations,
      ai,
      browse,
    }),
  });
  const g = splitHostPort(opts.grpcAddr, '--grpc-addr');
  const creds = tls
    ? grpc.ServerCredentials.createSsl(null, [{ cert_chain: tls.cert, private_key: tls.key }], false)
    : grpc.ServerCredentials.createInsecure();
  const grpcListener = await listenForAgents(grpcServer, creds, g, opts.grpcAddr, logger);
  const grpcPort = (grpcListener.address() as AddressInfo).port;

  const apiHandler = createHttpHandler({
    store,
    cluster,
    logger: logger.child('http'),
    relayId,
    storeKind: store.kind,
    busKind: bus.kind,
    accounting,
    browse,
    discovery: opts.advertiseGrpc
      ? { grpc_port: grpcPort, grpc_addr: opts.advertiseGrpc }
      : { grpc_port: grpcPort, tls: !!tls },
  });
  const orchestration = new Orchestration({ store, cluster, logger: logger.child('orchestration') });
  const httpHandler: typeof apiHandler = (req, res) => {
    if (!ai.handle(req, res) && !orchestration.handle(req, res)) apiHandler(req, res);
  };
  // Node checks the headers and request timeouts only every connectionsCheckingInterval (30 s by
  // default): a client trickling headers would hold its socket that long.
  const httpOptions = {
    headersTimeout: limits.httpHeadersTimeoutMs,
    requestTimeout: limits.httpRequestTimeoutMs,
    keepAliveTimeout: limits.httpIdleTimeoutMs,
    connectionsCheckingInterval: Math.min(1_000, limits.httpHeadersTimeoutMs),
  };
  const httpServer: HttpServer = tls
    ? createHttpsServer({ ...tls, ...httpOptions }, httpHandler)
    : createHttpServer(httpOptions, httpHandler);
  // A socket idle this long (no request, or a request that stalls mid-body) is closed.
  httpServer.setTimeout(limits.httpRequestTimeoutMs, (socket) => socket.destroy());
  capConnectionsPerIp(httpServer, limits.httpConnsPerIp, logger);
  const browseUpgrade = createUpgradeHandler({ store, browse });
  httpServer.on('upgrade', (req, socket, head) => {
    if (!ai.upgrade(req, socket, head) && !browseUpgrade(req, socket, head)) socket.destroy();
  });
  const h = splitHostPort(opts.httpAddr, '--http-addr');
  await new Promise<void>((resolve, reject) => {
    httpServer.once('error', (err) => reject(new Error(`--http-addr ${opts.httpAddr}: ${err.message}`)));
    httpServer.listen(h.port, h.host, resolve);
  });
  const httpPort = (httpServer.address() as AddressInfo).port;

  let polling = false;
  const revocation = setInterval(async () => {
    if (polling) return;
    polling = true;
    try {
      await revocations.poll();
    } catch (err) {
      logger.warn('revocation check failed', { error: (err as Error).message });
    } finally {
      polling = false;
    }
  }, revocationPollMs);
  revocation.unref();

  let beating = false;
  const heartbeat = setInterval(async () => {
    if (beating) return;
    beating = true;
    try {
      await cluster.heartbeat();
    } catch (err) {
      logger.warn('presence heartbeat failed', { error: (err as Error).message });
    } finally {
      beating = false;
    }
  }, presenceHeartbeatMs);
  heartbeat.unref();

  logger.info('relay listening', {
    relay_id: relayId,
    grpc: `${g.host}:${grpcPort}`,
    http: `${h.host}:${httpPort}`,
    tls: !!tls,
    store: store.kind,
    bus: bus.kind,
  });

  let drained: Promise<void> | undefined;
  const drain = (reason = 'relay shutting down') =>
    (drained ??= (async () => {
      accepting = false;
      grpcListener.close();
      clearInterval(revocation);
      clearInterval(heartbeat);
      const conns = presence.all();
      for (const conn of conns) {
        conn.sendControl({ case: 'goaway', value: create(GoawaySchema, { reason, redialAfterMs: 100 }) });
        presence.remove(conn);
        bus.unsubscribeAgent(conn.identity.account, conn.identity.agentId);
        conn.close();
      }
      logger.info('draining', { agents: conns.length, reason });
      await cluster.goodbye(conns);
      await store.forgetReplicas(relayId).catch(() => {});
      await new Promise<void>((resolve) => {
        const force = setTimeout(() => {
          grpcServer.forceShutdown();
          resolve();
        }, 3_000);
        force.unref();
        grpcServer.tryShutdown(() => {
          clearTimeout(force);
          resolve();
        });
      });
      ai.close();
      orchestration.close();
      browse.close();
      httpServer.closeAllConnections();
      await new Promise<void>((resolve) => httpServer.close(() => resolve()));
      if (!opts.bus) await bus.close();
    })());

  return { relayId, grpcPort, httpPort, presence, cluster, accounting, drain };
}

/** Refuses a client address its connection past `max` (closed at once, before any request is read). */
function capConnectionsPerIp(server: HttpServer, max: number, logger: Logger): void {
  const open = new Map<string, number>();
  let refused = 0;
  server.on('connection', (socket: Socket) => {
    const ip = socket.remoteAddress ?? '?';
    const n = open.get(ip) ?? 0;
    if (n >= max) {
      // Logged once per burst, not per socket: the flood must not turn into a log flood.
      if (refused++ % 1000 === 0)
        logger.warn('refusing HTTP connections over the per-address cap', { ip, max, refused });
      socket.destroy();
      return;
    }
    open.set(ip, n + 1);
    socket.once('close', () => {
      const left = (open.get(ip) ?? 1) - 1;
      if (left > 0) open.set(ip, left);
      else open.delete(ip);
    });
  });
}
