/**
 * @module The agent side of the control stream: dial, authenticate, hello, envelopes both ways,
 * keepalive, and one redial loop with jittered exponential backoff. Planner, worker and tunnel all
 * stand on it.
 */
import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { create } from '@bufbuild/protobuf';
import { EnvelopeBatcher } from '../protocol/batcher.js';
import {
  type AgentKindName,
  agentKindFromName,
  DEFAULT_MAX_FRAME_BYTES,
  type DeliveryError,
  decodeRelayFrame,
  EnvelopeSchema,
  ErrorCode,
  encodeAgentFrame,
  envelopeHeaderSize,
  envelopeWireSize,
  HelloSchema,
  LabelUpdateSchema,
  type OutEnvelope,
  type Payload,
  PROTOCOL_VERSION,
  type WireError,
} from '../protocol/control.js';
import { encodeAgentEnvelopes } from '../protocol/envelope-frame.js';
import type { HttpFrame } from '../protocol/http-proxy.js';
import { type Logger, silentLogger } from '../util/log.js';
import { TRACING, trace } from '../util/trace.js';
import { VERSION } from '../util/version.js';
import { describeRefusal, diagnoseDial } from './diagnose.js';
import { type ControlDialer, type ControlTransport, type FatalCode, GrpcDialer } from './transport.js';

export interface AgentOptions {
  /** Relay control addresses (`host:port`), tried in turn. */
  servers: string[];
  apiKey: string;
  agentId: string;
  kind: AgentKindName;
  labels?: Record<string, string>;
  /** TLS on every server; defaults to on for port 443. */
  tls?: boolean;
  /** PEM file of the CA that signed the relay's certificate, when it is not a public one. */
  tlsCaFile?: string;
  /** Kept across reconnects (and, when a caller persists it, across restarts) to take over our own id. */
  sessionToken?: string;
  logger?: Logger;
  /** Bytes queued while disconnected or slow before `send` refuses. */
  maxQueuedBytes?: number;
  /** Retry delays in ms before jitter; the last repeats. */
  backoffMs?: number[];
  /**
   * How often this agent pings the relay's connection (HTTP/2 PING), and how long it waits for the answer
   * before it redials: a relay that went away without closing the connection is noticed within twice this.
   * Default {@link DEFAULT_AGENT_KEEPALIVE_MS}: a relay that stops or crashes closes connections at once,
   * so this only catches a lost machine or network, and a fleet's pings are what an idle relay pays for.
   */
  keepaliveMs?: number;
  /** Opens control streams; gRPC to `servers` by default, a `MemoryRelay` in unit tests. */
  dialer?: ControlDialer;
  /**
   * Give up when the first connection is not up after this long: a `fatal` status whose message says
   * what is wrong ({@link diagnoseDial}). Unset: redial forever. Once connected, it always redials.
   */
  connectTimeoutMs?: number;
}

export const DEFAULT_AGENT_KEEPALIVE_MS = 30_000;

export interface OutboundEnvelope {
  to: string;
  channel: string;
  seq?: bigint;
  kind: string;
  /** Whole, or in parts joined only into the outgoing frame (a sealed frame: one copy fewer). */
  payload: Payload;
}

export interface InboundEnvelope {
  from: string;
  channel: string;
  seq: bigint;
  kind: string;
  payload: Uint8Array;
}

export type AgentStatus =
  | { type: 'connecting'; server: string; attempt: number }
  | { type: 'connected'; server: string; relayId: string; account: string }
  | { type: 'disconnected'; server: string; reason: string; retryInMs: number }
  /**
   * The relay refused us for a reason redialling cannot fix (bad key, bad hello, or an id taken before
   * we ever held it; an id taken while we redial is waited for instead).
   */
  | { type: 'fatal'; code: FatalCode; message: string }
  | { type: 'closed' };

interface AgentEvents {
  envelope: [InboundEnvelope];
  deliveryError: [DeliveryError];
  status: [AgentStatus];
  /** A `/browse` request (or its cancellation) for the service this agent exposes. */
  http: [HttpFrame];
}

/** Local errors of the agent API; these never cross the wire. */
export class AgentError extends Error {
  constructor(
    readonly code: 'closed' | 'too_large' | 'queue_full',
    message: string,
  ) {
    super(message);
    this.name = 'AgentError';
  }
}

/**
 * Retry delays before jitter. Slow growth at first: a relay restart takes about a second, and a fleet that
 * has backed off to several seconds by then comes back late.
 */
export const DEFAULT_BACKOFF_MS = [200, 250, 400, 600, 800, 1000, 1500, 2500, 5000];

/** How long the first redial after a lost stream waits for the relay to come back (see #dialLoop). */
export const WAIT_FOR_RELAY_MS = 10_000;

/** Half to full of the table's delay, so a fleet redialling after a relay restart spreads out. */
const jittered = (ms: number) => Math.round(ms * (0.5 + Math.random() * 0.5));

export class AgentClient extends EventEmitter<AgentEvents> {
  readonly agentId: string;
  readonly sessionToken: string;
  readonly #opts: AgentOptions;
  readonly #log: Logger;
  readonly #dialer: ControlDialer;
  readonly #out: EnvelopeBatcher<OutEnvelope>;
  #labels: Record<string, string>;
  #call: ControlTransport | undefined;
  #connected = false;
  #closing = false;
  #loop: Promise<void> | undefined;
  #wake: (() => void) | undefined;
  #maxFrameBytes = DEFAULT_MAX_FRAME_BYTES;
  #lastError = '';
  #observedAddr = '';
  /** Welcomed at least once: the id is ours, and a relay that finds it taken is asked again. */
  #everConnected = false;
  /** Callers of {@link whenWritable} waiting for the queue to shrink. */
  readonly #writers = new Set<{ limit: number; wake: () => void }>();

  constructor(opts: AgentOptions) {
    super();
    if (opts.servers.length === 0) throw new Error('no relay address: pass --server or set NFLTR_SERVER');
    this.#opts = opts;
    this.agentId = opts.agentId;
    this.sessionToken = opts.sessionToken ?? randomBytes(16).toString('base64url');
    this.#log = opts.logger ?? silentLogger;
    this.#labels = { ...opts.labels };
    this.#dialer =
      opts.dialer ??
      new GrpcDialer({
        tls: opts.tls,
        tlsCaFile: opts.tlsCaFile,
        keepaliveMs: opts.keepaliveMs ?? DEFAULT_AGENT_KEEPALIVE_MS,
      });
    this.#out = new EnvelopeBatcher<OutEnvelope>({
      maxFrameBytes: DEFAULT_MAX_FRAME_BYTES,
      maxQueuedBytes: opts.maxQueuedBytes ?? 64 * 1024 * 1024,
      onFlushed: () => this.#wakeWriters(),
    });
  }

  get connected(): boolean {
    return this.#connected;
  }

  /** The reason of the last failed dial or dropped stream, for error messages while disconnected. */
  get lastError(): string {
    return this.#lastError;
  }

  /** This agent's address as the relay saw it (from the last welcome; empty when it says nothing). */
  get observedAddr(): string {
    return this.#observedAddr;
  }

  get labels(): Record<string, string> {
    return { ...this.#labels };
  }

  /** Starts the dial loop; it runs until {@link close} or a fatal refusal. */
  start(): this {
    this.#loop ??= this.#dialLoop();
    return this;
  }

  /** Resolves on the next `connected`, rejects on `fatal` or `closed`. */
  waitConnected(): Promise<void> {
    if (this.#connected) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const onStatus = (s: AgentStatus) => {
        if (s.type === 'connected') resolve();
        else if (s.type === 'fatal') reject(new Error(s.message));
        else if (s.type === 'closed') reject(new AgentError('closed', 'agent closed'));
        else return;
        this.off('status', onStatus);
      };
      this.on('status', onStatus);
    });
  }

  /**
   * Queues an envelope for the relay. While disconnected it waits in the queue and goes out after the
   * redial. Throws {@link AgentError} when closed, too large for one frame, or the queue is full.
   */
  send(env: OutboundEnvelope): void {
    if (this.#closing) throw new AgentError('closed', 'agent is closed');
    // A message is a plain object: built directly, it costs a tenth of create()'s reflective copy.
    const e: OutEnvelope = {
      $typeName: EnvelopeSchema.typeName,
      to: env.to,
      from: '',
      channel: env.channel,
      seq: env.seq ?? 0n,
      kind: env.kind,
      payload: env.payload,
    };
    this.#admit(envelopeWireSize(e));
    this.#out.enqueue(e);
  }

  /**
   * Throws what {@link send} would for an envelope with a payload of `payloadBytes`, without queueing
   * anything: a caller whose envelope spends something once built (a sealed frame spends its sequence
   * number) checks first, so that a refusal loses nothing.
   */
  checkSend(env: Omit<OutboundEnvelope, 'payload' | 'seq'>, payloadBytes: number): void {
    if (this.#closing) throw new AgentError('closed', 'agent is closed');
    this.#admit(payloadBytes + envelopeHeaderSize(env));
  }

  #admit(size: number): void {
    if (size > this.#maxFrameBytes - 256) {
      throw new AgentError(
        'too_large',
        `envelope of ${size} bytes exceeds the relay's frame limit of ${this.#maxFrameBytes} bytes`,
      );
    }
    if (!this.#out.fits(size)) {
      throw new AgentError(
        'queue_full',
        `send queue full (${this.#out.queuedBytes} bytes waiting for the relay)`,
      );
    }
  }

  /** Bytes queued and not yet handed to the stream; callers use it for flow control. */
  get queuedBytes(): number {
    return this.#out.queuedBytes;
  }

  /**
   * Resolves once at most `maxQueuedBytes` wait in the send queue: at once, or when a write to the
   * relay brings the queue there. Also resolves when the agent closes or `signal` aborts, so a bulk
   * sender (artifacts) never waits on a poll and never hangs: its next step fails on its own terms.
   */
  whenWritable(maxQueuedBytes: number, signal?: AbortSignal): Promise<void> {
    if (this.#out.queuedBytes <= maxQueuedBytes || this.#closing || signal?.aborted) return Promise.resolve();
    return new Promise((resolve) => {
      const writer = {
        limit: maxQueuedBytes,
        wake: () => {
          this.#writers.delete(writer);
          signal?.removeEventListener('abort', writer.wake);
          resolve();
        },
      };
      this.#writers.add(writer);
      signal?.addEventListener('abort', writer.wake, { once: true });
    });
  }

  #wakeWriters(): void {
    for (const w of this.#writers) if (this.#closing || this.#out.queuedBytes <= w.limit) w.wake();
  }

  /** Answers a `/browse` request; false when not connected (the relay fails the request then). */
  sendHttp(frame: HttpFrame): boolean {
    if (!this.#connected) return false;
    this.#write({ case: 'http', value: frame });
    return true;
  }

  /** Replaces the advertised labels; sent at once when connected, and in every later hello. */
  setLabels(labels: Record<string, string>): void {
    this.#labels = { ...labels };
    if (this.#connected)
      this.#write({ case: 'labels', value: create(LabelUpdateSchema, { labels: this.#labels }) });
  }

  async close(): Promise<void> {
    if (this.#closing) return this.#loop;
    this.#closing = true;
    this.#out.clear();
    this.#wakeWriters();
    // A stream not yet welcomed may be waiting for the relay (a redial): it ends only when cancelled.
    if (this.#connected) this.#call?.close();
    else this.#call?.abort();
    this.#wake?.();
    await this.#loop;
    this.#dialer.close();
  }

  #write(frame: Parameters<typeof encodeAgentFrame>[0]): boolean {
    return this.#call?.send(encodeAgentFrame(frame)) ?? false;
  }

  async #dialLoop(): Promise<void> {
    const table = this.#opts.backoffMs ?? DEFAULT_BACKOFF_MS;
    let attempt = 0;
    let index = 0;
    /** The last stream was up (welcomed) before it ended. */
    let lost = false;
    const timeout = this.#opts.connectTimeoutMs;
    const giveUpAt = timeout === undefined ? undefined : Date.now() + timeout;
    while (!this.#closing) {
      const server = this.#opts.servers[index % this.#opts.servers.length]!;
      this.emit('status', { type: 'connecting', server, attempt });
      // The first redial after a lost stream to the one relay we had waits for it to come back rather
      // than failing and backing off while it restarts: our backoff on top of the channel's made a fleet
      // return seconds after its relay did. Bounded, so that a relay that stays away (or now refuses the
      // link) is redialled the ordinary way, each failure logged with its reason. With several relays a
      // dial fails fast, so the loop moves on to the next one.
      const wait = lost && this.#opts.servers.length === 1;
      const outcome = await this.#runStream(
        server,
        this.#everConnected ? undefined : giveUpAt,
        wait ? WAIT_FOR_RELAY_MS : undefined,
      );
      if (this.#closing) break;
      // Before the first welcome, say what is wrong rather than what gRPC saw.
      if (!this.#everConnected && !outcome.fatal) {
        const tls = this.#opts.tls ?? server.endsWith(':443');
        outcome.reason =
          (await diagnoseDial(server, { tls, tlsCaFile: this.#opts.tlsCaFile })) ?? outcome.reason;
        if (this.#closing) break;
        if (giveUpAt !== undefined && Date.now() >= giveUpAt) {
          outcome.fatal = 'UNAVAILABLE';
          outcome.reason = `no connection to the relay within ${timeout! / 1000}s (--connect-timeout; --wait redials forever): ${outcome.reason}`;
        }
      } else if (outcome.fatal && outcome.fatal !== 'ALREADY_EXISTS') {
        outcome.reason = describeRefusal(server, outcome.reason);
      }
      if (outcome.fatal === 'ALREADY_EXISTS' && this.#everConnected) {
        // We held this id: another connection took it while ours was down (a relay restart lets anyone
        // claim a free id). It is ours to take back once that one leaves, so we wait rather than exit.
        this.#log.warn('agent id is held by another connection; redialling until it leaves', {
          agent: this.agentId,
          server,
          holder: outcome.reason,
        });
        outcome.fatal = undefined;
      }
      if (outcome.fatal) {
        this.#lastError = outcome.reason;
        this.#log.error(this.#everConnected ? 'relay refused this agent' : 'cannot connect to the relay', {
          server,
          error: outcome.reason,
        });
        this.emit('status', { type: 'fatal', code: outcome.fatal, message: outcome.reason });
        this.#closing = true;
        break;
      }
      lost = outcome.wasConnected;
      if (lost) attempt = 0;
      // The next dial goes to the next address, also after a stream that was up: when a replica goes
      // away its agents move on to another one at once instead of spending a retry on the same one.
      index++;
      const delay = jittered(outcome.redialAfterMs ?? table[Math.min(attempt, table.length - 1)]!);
      attempt++;
      this.#lastError = `${server}: ${outcome.reason}`;
      this.#log.warn(
        this.#everConnected ? 'relay connection lost; redialling' : 'cannot connect to the relay; redialling',
        {
          server,
          reason: outcome.reason,
          retry_in_ms: delay,
        },
      );
      this.emit('status', { type: 'disconnected', server, reason: outcome.reason, retryInMs: delay });
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, delay);
        this.#wake = () => {
          clearTimeout(t);
          resolve();
        };
      });
      this.#wake = undefined;
    }
    this.emit('status', { type: 'closed' });
  }

  /** Runs one stream to its end and says how it ended. */
  #runStream(
    server: string,
    giveUpAt?: number,
    waitForRelayMs?: number,
  ): Promise<{
    wasConnected: boolean;
    reason: string;
    fatal?: FatalCode;
    redialAfterMs?: number;
  }> {
    return new Promise((resolve) => {
      const call = this.#dialer.open(server, { waitForRelayMs });
      this.#call = call;
      // A dial that hangs (a host that drops packets) ends at the connect deadline.
      const deadline =
        giveUpAt === undefined
          ? undefined
          : setTimeout(() => call.abort(), Math.max(0, giveUpAt - Date.now()));
      let wasConnected = false;
      let redialAfterMs: number | undefined;
      const batchSink = {
        write: (envelopes: OutEnvelope[]) => {
          if (TRACING) for (const e of envelopes) trace(`${this.#opts.kind}.write`, e.channel);
          return call.send(encodeAgentEnvelopes(envelopes));
        },
      };

      let settled = false;
      const finish = (reason: string, fatal?: FatalCode) => {
        if (settled) return;
        settled = true;
        clearTimeout(deadline);
        this.#out.pause();
        this.#connected = false;
        this.#call = undefined;
        resolve({ wasConnected, reason, fatal, redialAfterMs });
      };

      call.onframe = (bytes) => {
        let frame: ReturnType<typeof decodeRelayFrame>;
        try {
          frame = decodeRelayFrame(bytes, this.#maxFrameBytes * 4);
        } catch (err) {
          this.#log.error('relay sent a frame this agent cannot read', { error: (err as WireError).message });
          return;
        }
        const f = frame.frame;
        switch (f.case) {
          case 'welcome':
            clearTimeout(deadline);
            wasConnected = true;
            this.#everConnected = true;
            this.#connected = true;
            this.#maxFrameBytes = f.value.maxFrameBytes || DEFAULT_MAX_FRAME_BYTES;
            this.#lastError = '';
            this.#observedAddr = f.value.observedAddr;
            this.#log.info('connected to relay', { server, relay: f.value.relayId, agent: this.agentId });
            this.emit('status', {
              type: 'connected',
              server,
              relayId: f.value.relayId,
              account: f.value.account,
            });
            this.#out.resume(batchSink);
            return;
          case 'envelopes':
            for (const e of f.value.envelopes) {
              trace(`${this.#opts.kind}.read`, e.channel);
              this.emit('envelope', {
                from: e.from,
                channel: e.channel,
                seq: e.seq,
                kind: e.kind,
                payload: e.payload,
              });
            }
            return;
          case 'deliveryError':
            this.emit('deliveryError', f.value);
            return;
          case 'error':
            this.#log.warn('relay refused a frame', {
              code: ErrorCode[f.value.code],
              error: f.value.message,
            });
            return;
          case 'http':
            this.emit('http', f.value);
            return;
          case 'goaway':
            redialAfterMs = f.value.redialAfterMs;
            this.#log.info('relay going away', { server, reason: f.value.reason });
            return;
        }
      };
      call.ondrain = () => {
        if (this.#connected) this.#out.resume(batchSink);
      };
      call.onclose = (end) => finish(end.reason, end.fatal);
      call.start(this.#opts.apiKey);

      this.#write({
        case: 'hello',
        value: create(HelloSchema, {
          agentId: this.agentId,
          kind: agentKindFromName(this.#opts.kind),
          labels: this.#labels,
          protocolVersion: PROTOCOL_VERSION,
          sessionToken: this.sessionToken,
          clientVersion: VERSION,
        }),
      });
    });
  }
}
