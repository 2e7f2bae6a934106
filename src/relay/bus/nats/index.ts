/**
 * @module The NATS {@link Bus}: relay replicas behind one address route through a NATS server (core
 * NATS, no JetStream). Subjects, all under a prefix (`nfltr` unless `?prefix=` says otherwise):
 *
 * - `<p>.agent.<account>.<agent>`: envelopes for one agent, subscribed by the replica holding it.
 *   Both tokens are base64url, so every account and agent id is a safe, distinct token. The payload is
 *   an `EnvelopeBatch` (protobuf, the control stream's own encoding); a batch larger than the server's
 *   `max_payload` goes as parts, each with an `Nfltr-Part: i/n` header. Every message carries a reply
 *   subject of the sending replica.
 * - `<p>.reply.<replica-token>.<n>`: answers about batch n. The server's no-responders status (503)
 *   means nobody holds the agent: PEER_NOT_FOUND, decided by NATS interest at the moment of publish.
 *   A holder that refuses envelopes answers JSON `{"refused":[{"i":0,"code":3,"message":"…"}]}`.
 * - `<p>.presence`: the change feed, one JSON {@link PresenceEvent} per message.
 * - `/browse` frames for an agent held elsewhere go on its agent subject too, marked by the header
 *   `Nfltr-Http: 1`, payload one `HttpFrame`, with the reply subject `<p>.reply.<replica-token>.h.<stream>`
 *   where the holder sends the answers (each an `HttpFrame`). No responders there: nobody holds the agent.
 *
 * Envelopes to one agent in one event-loop turn go as one batch, as on the control stream.
 */
import { randomBytes } from 'node:crypto';
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { connect, headers, type Msg, type NatsConnection, type Subscription } from '@nats-io/transport-node';
import {
  type Envelope,
  EnvelopeBatchSchema,
  ErrorCode,
  envelopeWireSize,
} from '../../../protocol/control.js';
import { type HttpFrame, HttpFrameSchema, notConnectedReset } from '../../../protocol/http-proxy.js';
import type { Logger } from '../../../util/log.js';
import { type Bus, type BusHandlers, notFoundMessage, type PresenceEvent, type Refusal } from '../bus.js';

const token = (s: string) => Buffer.from(s).toString('base64url');
const PART_HEADER = 'Nfltr-Part';
/** Marks a `/browse` frame on an agent subject. */
const HTTP_HEADER = 'Nfltr-Http';
/** A holder's answer: the agent left this replica, so none of the batch was delivered. */
const NOT_HERE = JSON.stringify({ notHere: true });
/** Room for NATS's own framing and headers inside `max_payload`. */
const PART_OVERHEAD = 512;

interface Pending {
  account: string;
  envs: Envelope[];
}

interface PartialBatch {
  parts: (Uint8Array | undefined)[];
  got: number;
  at: number;
}

export interface NatsBusOptions {
  logger: Logger;
  /** Subject prefix; several relay clusters (or test runs) can share one NATS server under different ones. */
  prefix?: string;
  /** How long a sent batch is remembered to answer "not found" or a refusal for it. */
  pendingMs?: number;
  /** Bytes of sent batches remembered at most; past it the oldest generation is forgotten early. */
  pendingBytes?: number;
}

/** Parses `nats://[user[:pass]@]host:port[,host:port…][?prefix=p]` into connection options. */
export function parseNatsUrl(url: string): {
  servers: string[];
  user?: string;
  pass?: string;
  token?: string;
  prefix?: string;
} {
  const m = /^nats:\/\/(?:([^@/]*)@)?([^/?]+)\/?(?:\?(.*))?$/i.exec(url.trim());
  if (!m) throw new Error(`--bus: expected nats://host:4222, got ${JSON.stringify(url)}`);
  const [, auth, hosts, query] = m;
  const servers = hosts!.split(',').map((h) => h.trim());
  const params = new URLSearchParams(query ?? '');
  const prefix = params.get('prefix') ?? undefined;
  if (prefix !== undefined && !/^[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*$/.test(prefix)) {
    throw new Error(
      `--bus: ?prefix= must be NATS subject tokens (letters, digits, _ -), got ${JSON.stringify(prefix)}`,
    );
  }
  if (!auth) return { servers, prefix };
  const colon = auth.indexOf(':');
  if (colon < 0) return { servers, token: decodeURIComponent(auth), prefix };
  return {
    servers,
    user: decodeURIComponent(auth.slice(0, colon)),
    pass: decodeURIComponent(auth.slice(colon + 1)),
    prefix,
  };
}

export class NatsBus implements Bus {
  readonly kind = 'nats';
  readonly shared = true;
  readonly #nc: NatsConnection;
  readonly #log: Logger;
  readonly #prefix: string;
  readonly #replyPrefix: string;
  readonly #subs = new Map<string, Subscription>();
  /** Batches sent in this turn, per subject; flushed on the next turn. */
  readonly #out = new Map<string, Pending>();
  #flushScheduled = false;
  /** Sent batches by number, in two generations: a batch is remembered for one to two `pendingMs`. */
  #pending = new Map<number, Pending>();
  #pendingOld = new Map<number, Pending>();
  #pendingBytes = 0;
  readonly #maxPendingBytes: number;
  #nextId = 0;
  readonly #partials = new Map<string, PartialBatch>();
  readonly #timer: NodeJS.Timeout;
  #handlers: BusHandlers | undefined;
  #relayId = '';
  #closed = false;

  private constructor(nc: NatsConnection, opts: NatsBusOptions) {
    this.#nc = nc;
    this.#log = opts.logger;
    this.#prefix = opts.prefix ?? 'nfltr';
    this.#replyPrefix = `${this.#prefix}.reply.${randomBytes(8).toString('hex')}`;
    this.#maxPendingBytes = opts.pendingBytes ?? 64 * 1024 * 1024;
    this.#timer = setInterval(() => this.#rotate(), opts.pendingMs ?? 2_000);
    this.#timer.unref();
  }

  /** Connects to the NATS server(s); fails within a few seconds, naming the URL, when none answers. */
  static async connect(url: string, opts: NatsBusOptions): Promise<NatsBus> {
    const parsed = parseNatsUrl(url);
    let nc: NatsConnection;
    try {
      nc = await connect({
        servers: parsed.servers,
        user: parsed.user,
        pass: parsed.pass,
        token: parsed.token,
        name: 'nfltr-relay',
        timeout: 5_000,
        maxReconnectAttempts: -1,
        reconnectTimeWait: 250,
      });
    } catch (err) {
      throw new Error(`--bus ${parsed.servers.join(',')}: cannot connect to NATS: ${(err as Error).message}`);
    }
    return new NatsBus(nc, { ...opts, prefix: opts.prefix ?? parsed.prefix });
  }

  async start(relayId: string, handlers: BusHandlers): Promise<void> {
    this.#relayId = relayId;
    this.#handlers = handlers;
    this.#nc.subscribe(`${this.#replyPrefix}.>`, { callback: (_err, msg) => this.#onReply(msg) });
    this.#nc.subscribe(`${this.#prefix}.presence`, { callback: (_err, msg) => this.#onPresence(msg) });
    await this.#nc.flush();
    void this.#watchStatus();
  }

  async #watchStatus(): Promise<void> {
    for await (const s of this.#nc.status()) {
      switch (s.type) {
        case 'disconnect':
          this.#log.warn('bus disconnected; reconnecting', { server: String(s.server) });
          break;
        case 'reconnect':
          this.#log.info('bus reconnected; reloading presence', { server: String(s.server) });
          this.#handlers?.resync();
          break;
        default:
          break;
      }
    }
  }

  #agentSubject(account: string, agentId: string): string {
    return `${this.#prefix}.agent.${token(account)}.${token(agentId)}`;
  }

  async subscribeAgent(account: string, agentId: string): Promise<void> {
    const subject = this.#agentSubject(account, agentId);
    if (this.#subs.has(subject)) return;
    const sub: Subscription = this.#nc.subscribe(subject, {
      callback: (_err, msg) => {
        if (msg.headers?.get(HTTP_HEADER)) return this.#onHttp(account, agentId, subject, sub, msg);
        if (this.#subs.get(subject) === sub) return this.#onEnvelopes(account, agentId, msg);
        // Draining after unsubscribeAgent: published before the server saw our UNSUB. Subscribed again
        // meanwhile: the new subscription has it too. Otherwise, say so rather than drop it silently.
        if (!this.#subs.has(subject) && msg.reply) this.#nc.publish(msg.reply, NOT_HERE);
      },
    });
    this.#subs.set(subject, sub);
    // Once the server has our SUB, every later publish anywhere reaches us.
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      this.#nc.flush(),
      new Promise((_, reject) => {
        timer = setTimeout(
          () => reject(new Error('NATS did not confirm the subscription within 5 s')),
          5_000,
        );
      }),
    ]).finally(() => clearTimeout(timer));
  }

  unsubscribeAgent(account: string, agentId: string): void {
    const subject = this.#agentSubject(account, agentId);
    const sub = this.#subs.get(subject);
    this.#subs.delete(subject);
    // Drain, not unsubscribe: what other replicas published before the server saw the UNSUB still
    // reaches the callback, which answers "not here", so nothing is lost without a word.
    sub?.drain().catch(() => {});
  }

  deliver(account: string, env: Envelope): void {
    if (this.#closed) {
      this.#handlers?.undeliverable(account, env, {
        code: ErrorCode.PEER_GONE,
        message: 'relay is shutting down; envelope not sent',
      });
      return;
    }
    const subject = this.#agentSubject(account, env.to);
    let batch = this.#out.get(subject);
    if (!batch) {
      batch = { account, envs: [] };
      this.#out.set(subject, batch);
    }
    batch.envs.push(env);
    if (!this.#flushScheduled) {
      this.#flushScheduled = true;
      setImmediate(() => this.#flush());
    }
  }

  #flush(): void {
    this.#flushScheduled = false;
    const maxPayload = (this.#nc.info?.max_payload ?? 1024 * 1024) - PART_OVERHEAD;
    for (const [subject, batch] of this.#out) {
      // Split into batches that fit; a lone envelope larger than max_payload goes in parts.
      let start = 0;
      let bytes = 0;
      for (let i = 0; i <= batch.envs.length; i++) {
        const size = i < batch.envs.length ? envelopeWireSize(batch.envs[i]!) + 8 : 0;
        if (i === batch.envs.length || (i > start && bytes + size > maxPayload)) {
          this.#send(subject, { account: batch.account, envs: batch.envs.slice(start, i) }, maxPayload);
          start = i;
          bytes = 0;
        }
        bytes += size;
      }
    }
    this.#out.clear();
  }

  #send(subject: string, batch: Pending, maxPayload: number): void {
    if (batch.envs.length === 0) return;
    const id = this.#nextId++;
    this.#pending.set(id, batch);
    const reply = `${this.#replyPrefix}.${id}`;
    const data = toBinary(EnvelopeBatchSchema, create(EnvelopeBatchSchema, { envelopes: batch.envs }));
    // Remembering a batch keeps its payloads alive; bound that by bytes as well as by time.
    this.#pendingBytes += data.length;
    if (this.#pendingBytes > this.#maxPendingBytes) this.#rotate();
    try {
      if (data.length <= maxPayload) {
        this.#nc.publish(subject, data, { reply });
        return;
      }
      const n = Math.ceil(data.length / maxPayload);
      for (let i = 0; i < n; i++) {
        const h = headers();
        h.set(PART_HEADER, `${i}/${n}`);
        this.#nc.publish(subject, data.subarray(i * maxPayload, (i + 1) * maxPayload), { reply, headers: h });
      }
    } catch (err) {
      this.#pending.delete(id);
      const refusal = {
        code: ErrorCode.PEER_GONE,
        message: `relay bus refused the envelope: ${(err as Error).message}`,
      };
      for (const env of batch.envs) this.#handlers?.undeliverable(batch.account, env, refusal);
    }
  }

  forwardHttp(account: string, agentId: string, frame: HttpFrame): void {
    if (this.#closed) return this.#handlers?.httpBack(notConnectedReset(frame.streamId, agentId));
    const h = headers();
    h.set(HTTP_HEADER, '1');
    const reply = `${this.#replyPrefix}.h.${frame.streamId}`;
    this.#nc.publish(this.#agentSubject(account, agentId), toBinary(HttpFrameSchema, frame), {
      reply,
      headers: h,
    });
  }

  answerHttp(origin: string, frame: HttpFrame): void {
    if (!this.#closed) this.#nc.publish(origin, toBinary(HttpFrameSchema, frame));
  }

  /** A `/browse` frame for an agent subscribed here; one that left (draining) is answered not connected. */
  #onHttp(account: string, agentId: string, subject: string, sub: Subscription, msg: Msg): void {
    if (!msg.reply?.startsWith(`${this.#prefix}.reply.`)) return;
    let frame: HttpFrame;
    try {
      frame = fromBinary(HttpFrameSchema, msg.data);
    } catch {
      return this.#log.warn('bus: unreadable HTTP frame dropped', { subject });
    }
    if (this.#subs.get(subject) === sub) return this.#handlers?.httpIn(account, agentId, msg.reply, frame);
    if (!this.#subs.has(subject)) this.answerHttp(msg.reply, notConnectedReset(frame.streamId, agentId));
  }

  /** Answers for a `/browse` stream this replica forwarded (`rest` is `h.<stream>`). */
  #onHttpReply(rest: string, msg: Msg): void {
    const streamId = rest.slice(2);
    if (msg.headers?.code === 503) return this.#handlers?.httpBack(notConnectedReset(streamId, ''));
    try {
      this.#handlers?.httpBack(fromBinary(HttpFrameSchema, msg.data));
    } catch {
      this.#log.warn('bus: unreadable HTTP answer dropped', { stream: streamId });
    }
  }

  /** Envelopes for an agent this replica holds. */
  #onEnvelopes(account: string, agentId: string, msg: Msg): void {
    const handlers = this.#handlers;
    if (!handlers) return;
    let data: Uint8Array | undefined = msg.data;
    const part = msg.headers?.get(PART_HEADER);
    if (part) data = this.#reassemble(msg.reply ?? '', part, msg.data);
    if (!data) return;
    let envs: Envelope[];
    try {
      envs = fromBinary(EnvelopeBatchSchema, data).envelopes;
    } catch (err) {
      this.#log.warn('bus: unreadable envelope batch dropped', {
        subject: msg.subject,
        error: (err as Error).message,
      });
      return;
    }
    const refused: { i: number; code: ErrorCode; message: string }[] = [];
    for (let i = 0; i < envs.length; i++) {
      const r = handlers.envelope(account, agentId, envs[i]!);
      if (r) refused.push({ i, code: r.code, message: r.message });
    }
    if (refused.length > 0 && msg.reply) this.#nc.publish(msg.reply, JSON.stringify({ refused }));
  }

  #reassemble(reply: string, part: string, chunk: Uint8Array): Uint8Array | undefined {
    const m = /^(\d+)\/(\d+)$/.exec(part);
    if (!m) return undefined;
    const i = Number(m[1]);
    const n = Number(m[2]);
    let p = this.#partials.get(reply);
    if (!p) {
      p = { parts: new Array(n), got: 0, at: Date.now() };
      this.#partials.set(reply, p);
    }
    if (i >= n || p.parts.length !== n || p.parts[i]) return undefined;
    // Copy: the connection reuses its read buffer.
    p.parts[i] = Uint8Array.from(chunk);
    if (++p.got < n) return undefined;
    this.#partials.delete(reply);
    return Buffer.concat(p.parts as Uint8Array[]);
  }

  /** Answers about batches this replica sent. */
  #onReply(msg: Msg): void {
    const rest = msg.subject.slice(this.#replyPrefix.length + 1);
    if (rest.startsWith('h.')) return this.#onHttpReply(rest, msg);
    const id = Number(rest);
    const batch = this.#pending.get(id) ?? this.#pendingOld.get(id);
    if (!batch || !this.#handlers) return;
    // No responders: nobody holds the agent.
    if (msg.headers?.code === 503) return this.#notFound(id, batch);
    let body: { refused?: { i: number; code: ErrorCode; message: string }[]; notHere?: boolean };
    try {
      body = JSON.parse(Buffer.from(msg.data).toString('utf8'));
    } catch {
      return;
    }
    if (body.notHere) {
      this.#notFound(id, batch);
      return;
    }
    for (const r of body.refused ?? []) {
      const env = batch.envs[r.i];
      if (env)
        this.#handlers.undeliverable(batch.account, env, { code: r.code, message: r.message } as Refusal);
    }
  }

  /** Every part of a batch gets its own answer; the batch is answered once. */
  #notFound(id: number, batch: Pending): void {
    this.#pending.delete(id);
    this.#pendingOld.delete(id);
    for (const env of batch.envs) {
      this.#handlers?.undeliverable(batch.account, env, {
        code: ErrorCode.PEER_NOT_FOUND,
        message: notFoundMessage(env.to),
      });
    }
  }

  #onPresence(msg: Msg): void {
    let ev: PresenceEvent;
    try {
      ev = JSON.parse(Buffer.from(msg.data).toString('utf8')) as PresenceEvent;
    } catch {
      this.#log.warn('bus: unreadable presence event dropped');
      return;
    }
    if (ev.from !== this.#relayId) this.#handlers?.presence(ev);
  }

  publish(event: PresenceEvent): void {
    if (this.#closed) return;
    this.#nc.publish(`${this.#prefix}.presence`, JSON.stringify(event));
  }

  #rotate(): void {
    this.#pendingOld = this.#pending;
    this.#pending = new Map();
    this.#pendingBytes = 0;
    const cutoff = Date.now() - 30_000;
    for (const [k, p] of this.#partials) if (p.at < cutoff) this.#partials.delete(k);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#flush();
    this.#closed = true;
    clearInterval(this.#timer);
    try {
      await this.#nc.drain();
    } catch {
      await this.#nc.close().catch(() => {});
    }
    this.#handlers = undefined;
  }
}
