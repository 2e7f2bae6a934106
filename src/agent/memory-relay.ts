/**
 * @module An in-memory relay behind the {@link ControlTransport} seam, for unit tests of A2A, planner and
 * worker logic without a relay process. It keeps the relay's contract as agents see it: hello checked
 * and welcomed, one live stream per id (the same session token takes over, another is refused), the
 * sender stamped on every envelope, and a DeliveryError for an envelope it cannot deliver. Frames cross
 * it encoded, so the codec runs as on the wire; delivery is asynchronous and in order. No limits, holds
 * or accounting: those are the real relay's, tested against the process.
 */
import { create } from '@bufbuild/protobuf';
import {
  DEFAULT_MAX_FRAME_BYTES,
  DeliveryErrorSchema,
  decodeAgentFrame,
  type Envelope,
  ErrorCode,
  encodeRelayFrame,
  envelopeProblem,
  FrameErrorSchema,
  type Hello,
  helloProblem,
  notFoundMessage,
  PROTOCOL_VERSION,
  type RelayFrame,
  WelcomeSchema,
  type WireError,
} from '../protocol/control.js';
import { encodeRelayEnvelopes } from '../protocol/envelope-frame.js';
import type { ControlDialer, ControlTransport, TransportEnd } from './transport.js';

export interface MemoryRelayOptions {
  /** API key → account. Without it every non-empty key is admitted to account `memory`. */
  keys?: Record<string, string>;
  maxFrameBytes?: number;
  relayId?: string;
  /** Records every routed envelope (as delivered, sender stamped) in {@link MemoryRelay.captured}. */
  capture?: boolean;
  /**
   * A relay in the middle, for tests of what a hostile relay can do: gets each envelope (sender stamped)
   * and returns what to deliver instead (nothing drops it; any `from` and `to` of the same account).
   */
  intercept?: (env: Envelope) => Envelope[];
}

interface Conn {
  account: string;
  hello?: Hello;
  transport: ControlTransport;
  /** Ends the stream as the relay would: once, asynchronously, with a reason. */
  end(e: TransportEnd): void;
  deliver(frame: Uint8Array): void;
}

export class MemoryRelay {
  readonly captured: Envelope[] = [];
  readonly #opts: MemoryRelayOptions;
  readonly #maxFrameBytes: number;
  /** `account/agentId` → the admitted stream. */
  readonly #agents = new Map<string, Conn>();
  readonly #open = new Set<Conn>();

  constructor(opts: MemoryRelayOptions = {}) {
    this.#opts = opts;
    this.#maxFrameBytes = opts.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES;
  }

  /** A dialer for `AgentOptions.dialer`; the server addresses it is given are ignored. */
  dialer(): ControlDialer {
    return { open: () => this.#connect(), close: () => {} };
  }

  /** Ids of the agents admitted now, across accounts. */
  get agents(): string[] {
    return [...this.#agents.values()].map((c) => c.hello!.agentId);
  }

  /** Ends every stream as a relay restart does (not fatal: agents redial and are welcomed again). */
  restart(reason = 'UNAVAILABLE: relay restarted'): void {
    for (const c of [...this.#open]) c.end({ reason });
  }

  /** Ends one agent's stream, as a lost connection does. */
  disconnect(agentId: string, reason = 'UNAVAILABLE: connection lost'): void {
    for (const c of [...this.#agents.values()]) if (c.hello!.agentId === agentId) c.end({ reason });
  }

  #connect(): ControlTransport {
    let ended = false;
    const conn: Conn = {
      account: '',
      transport: {
        start: (apiKey) => {
          const account = this.#opts.keys ? this.#opts.keys[apiKey] : apiKey ? 'memory' : undefined;
          if (account === undefined) {
            return conn.end({ reason: 'UNAUTHENTICATED: unknown API key', fatal: 'UNAUTHENTICATED' });
          }
          conn.account = account;
          this.#open.add(conn);
        },
        send: (bytes) => {
          if (ended) return false;
          const copy = Uint8Array.from(bytes);
          setImmediate(() => {
            if (!ended) this.#onFrame(conn, copy);
          });
          return true;
        },
        close: () => conn.end({ reason: 'stream ended by relay' }),
        abort: () => conn.end({ reason: 'stream cancelled' }),
      },
      end: (e) => {
        if (ended) return;
        ended = true;
        this.#open.delete(conn);
        if (conn.hello) {
          const key = `${conn.account}/${conn.hello.agentId}`;
          if (this.#agents.get(key) === conn) this.#agents.delete(key);
        }
        setImmediate(() => conn.transport.onclose?.(e));
      },
      deliver: (frame) =>
        setImmediate(() => {
          if (!ended) conn.transport.onframe?.(frame);
        }),
    };
    return conn.transport;
  }

  #onFrame(conn: Conn, bytes: Uint8Array): void {
    let frame: ReturnType<typeof decodeAgentFrame>['frame'];
    try {
      frame = decodeAgentFrame(bytes, this.#maxFrameBytes).frame;
    } catch (err) {
      const e = err as WireError;
      return this.#send(conn, {
        case: 'error',
        value: create(FrameErrorSchema, { code: e.code, message: e.message }),
      });
    }
    if (!conn.hello) {
      if (frame.case !== 'hello') {
        return conn.end({
          reason: `INVALID_ARGUMENT: first frame must be hello, got ${frame.case}`,
          fatal: 'INVALID_ARGUMENT',
        });
      }
      return this.#onHello(conn, frame.value);
    }
    switch (frame.case) {
      case 'envelopes':
        for (const env of frame.value.envelopes) this.#route(conn, env);
        return;
      case 'labels':
        conn.hello.labels = { ...frame.value.labels };
        return;
      case 'hello':
        return conn.end({ reason: 'INVALID_ARGUMENT: a second hello', fatal: 'INVALID_ARGUMENT' });
      default:
        return;
    }
  }

  #onHello(conn: Conn, hello: Hello): void {
    const problem = helloProblem(hello);
    if (problem) return conn.end({ reason: `INVALID_ARGUMENT: ${problem}`, fatal: 'INVALID_ARGUMENT' });
    if (hello.protocolVersion !== PROTOCOL_VERSION) {
      return conn.end({
        reason: `FAILED_PRECONDITION: protocol version ${hello.protocolVersion} is not supported`,
        fatal: 'FAILED_PRECONDITION',
      });
    }
    const key = `${conn.account}/${hello.agentId}`;
    const live = this.#agents.get(key);
    if (live && live.hello!.sessionToken !== hello.sessionToken) {
      return conn.end({
        reason: `ALREADY_EXISTS: agent id ${hello.agentId} is held by another connection`,
        fatal: 'ALREADY_EXISTS',
      });
    }
    live?.end({ reason: 'ABORTED: replaced by a newer connection of the same agent' });
    conn.hello = hello;
    this.#agents.set(key, conn);
    this.#send(conn, {
      case: 'welcome',
      value: create(WelcomeSchema, {
        agentId: hello.agentId,
        account: conn.account,
        protocolVersion: PROTOCOL_VERSION,
        maxFrameBytes: this.#maxFrameBytes,
        relayId: this.#opts.relayId ?? 'memory',
      }),
    });
  }

  #route(from: Conn, env: Envelope): void {
    const refuse = (code: ErrorCode, message: string) =>
      this.#send(from, {
        case: 'deliveryError',
        value: create(DeliveryErrorSchema, {
          to: env.to,
          channel: env.channel,
          seq: env.seq,
          kind: env.kind,
          code,
          message,
        }),
      });
    const problem = envelopeProblem(env);
    if (problem) return refuse(ErrorCode.INVALID_ARGUMENT, problem);
    const to = this.#agents.get(`${from.account}/${env.to}`);
    if (!to) return refuse(ErrorCode.PEER_NOT_FOUND, notFoundMessage(env.to));
    const stamped: Envelope = { ...env, from: from.hello!.agentId };
    if (this.#opts.capture) this.captured.push(stamped);
    if (!this.#opts.intercept) return to.deliver(encodeRelayEnvelopes([stamped]));
    for (const out of this.#opts.intercept(stamped)) {
      this.#agents.get(`${from.account}/${out.to}`)?.deliver(encodeRelayEnvelopes([out]));
    }
  }

  #send(conn: Conn, frame: RelayFrame['frame']): void {
    conn.deliver(encodeRelayFrame(frame));
  }
}
