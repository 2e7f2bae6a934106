/**
 * @module The seam between {@link AgentClient} and the wire: one control stream as encoded frames in and
 * out, after the MCP SDK's Transport and nats.js's transport interface. gRPC is the adapter the product
 * runs; `memory-relay.ts` is the in-memory pair that unit tests of A2A, planner and worker logic run on.
 */
import { readFileSync } from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import { CONNECT_METHOD_PATH, DEFAULT_MAX_FRAME_BYTES } from '../protocol/control.js';
import { HTTP2_WINDOW_BYTES } from '../protocol/grpc.js';

/** Refusals of the relay that redialling cannot fix (named as the gRPC status names them). */
export type FatalCode =
  | 'UNAUTHENTICATED'
  | 'ALREADY_EXISTS'
  | 'INVALID_ARGUMENT'
  | 'FAILED_PRECONDITION'
  | 'PERMISSION_DENIED'
  /** Not the relay's: the agent gave up a first connection at its `--connect-timeout`. */
  | 'UNAVAILABLE';

/** How a stream ended: a reason in words, and the code when the relay refused us for good. */
export interface TransportEnd {
  reason: string;
  fatal?: FatalCode;
}

/** One control stream. Callbacks are set before {@link start}; `onclose` fires once, whatever the cause. */
export interface ControlTransport {
  /** Opens the stream, authenticated with the bearer key. */
  start(apiKey: string): void;
  /** Writes one encoded agent frame; false when the stream's buffer is full (wait for `ondrain`). */
  send(frame: Uint8Array): boolean;
  /** Half-closes our side; the relay's end of the stream follows as `onclose`. */
  close(): void;
  /** Drops the stream at once (a dial that hangs); `onclose` follows. */
  abort(): void;
  onframe?: (frame: Uint8Array) => void;
  ondrain?: () => void;
  onclose?: (end: TransportEnd) => void;
}

export interface DialOptions {
  /**
   * Wait up to this long for the relay to be reachable instead of failing while it is not: the
   * connection is redialled underneath on the transport's own jittered backoff (a refused TCP connect
   * each, no stream, no error), and the stream opens the moment the relay is back. Past it with no
   * connection made or under way, the stream ends. Once connected, the relay's hello timeout bounds the
   * rest.
   */
  waitForRelayMs?: number;
}

/** Opens streams to relay addresses; an agent owns one and closes it when it closes. */
export interface ControlDialer {
  open(server: string, opts?: DialOptions): ControlTransport;
  close(): void;
}

export interface GrpcDialerOptions {
  /** TLS on every server; defaults to on for port 443. */
  tls?: boolean;
  tlsCaFile?: string;
  keepaliveMs: number;
}

const FATAL: ReadonlySet<string> = new Set<FatalCode>([
  'UNAUTHENTICATED',
  'ALREADY_EXISTS',
  'INVALID_ARGUMENT',
  'FAILED_PRECONDITION',
  'PERMISSION_DENIED',
]);

/**
 * A TCP connect refused by a relay that is down costs the agent little and the relay nothing, so a
 * second's cap lets a fleet back within about a second of a restart however long the relay was away.
 */
export const RECONNECT_BACKOFF_CAP_MS = 1_000;

const identity = (b: Buffer) => b;
/** A Buffer over the same memory: gRPC wants Buffers, and a copy per frame costs more than the codec. */
const asBuffer = (b: Uint8Array): Buffer =>
  Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.byteLength);

/** The control stream over grpc-js: one channel per relay address, kept across redials. */
export class GrpcDialer implements ControlDialer {
  readonly #opts: GrpcDialerOptions;
  readonly #clients = new Map<string, grpc.Client>();

  constructor(opts: GrpcDialerOptions) {
    this.#opts = opts;
  }

  open(server: string, opts: DialOptions = {}): ControlTransport {
    const client = this.#client(server);
    let call: grpc.ClientDuplexStream<Buffer, Buffer> | undefined;
    let ended = false;
    const t: ControlTransport = {
      start: (apiKey) => {
        const md = new grpc.Metadata();
        md.set('authorization', `Bearer ${apiKey}`);
        const wait = opts.waitForRelayMs;
        if (wait !== undefined) md.setOptions({ waitForReady: true });
        call = client.makeBidiStreamRequest(CONNECT_METHOD_PATH, identity, identity, md, {});
        const end = (e: TransportEnd) => {
          if (ended) return;
          ended = true;
          clearTimeout(waiting);
          t.onclose?.(e);
        };
        // A connection under way is given the next period too: a relay admitting a fleet accepts
        // connections long before it answers them, and giving up on one sends it to the back of the queue.
        const check = () => {
          const state = client.getChannel().getConnectivityState(false);
          if (state === grpc.connectivityState.READY) return;
          if (state === grpc.connectivityState.CONNECTING) {
            waiting = setTimeout(check, wait);
            return;
          }
          end({ reason: `relay not reachable within ${wait! / 1000}s` });
          call?.cancel();
        };
        let waiting = wait === undefined ? undefined : setTimeout(check, wait);
        call.on('data', (bytes: Buffer) => t.onframe?.(bytes));
        call.on('drain', () => t.ondrain?.());
        call.on('error', (err: grpc.ServiceError) => {
          const name = grpc.status[err.code] ?? String(err.code);
          end({
            reason: `${name}: ${err.details || err.message}`,
            fatal: FATAL.has(name) ? (name as FatalCode) : undefined,
          });
        });
        call.on('end', () => end({ reason: 'stream ended by relay' }));
        call.on('close', () => end({ reason: 'stream closed' }));
      },
      send: (frame) => call?.write(asBuffer(frame)) ?? false,
      close: () => call?.end(),
      abort: () => call?.cancel(),
    };
    return t;
  }

  close(): void {
    for (const c of this.#clients.values()) c.close();
    this.#clients.clear();
  }

  #client(server: string): grpc.Client {
    let client = this.#clients.get(server);
    if (!client) {
      const tls = this.#opts.tls ?? server.endsWith(':443');
      const creds = tls
        ? grpc.credentials.createSsl(this.#opts.tlsCaFile ? readFileSync(this.#opts.tlsCaFile) : null)
        : grpc.credentials.createInsecure();
      client = new grpc.Client(server, creds, {
        'grpc.max_receive_message_length': DEFAULT_MAX_FRAME_BYTES * 4,
        'grpc.max_send_message_length': DEFAULT_MAX_FRAME_BYTES * 4,
        // The channel's own reconnect (±20 % jitter, ×1.6 a time) must not be slower than the agent's
        // first retry; a redial that waits for the relay (DialOptions.waitForReady) rides on it, so its
        // cap is how late a fleet notices a relay that came back after a long outage.
        'grpc.initial_reconnect_backoff_ms': 100,
        'grpc.max_reconnect_backoff_ms': RECONNECT_BACKOFF_CAP_MS,
        'grpc-node.flow_control_window': HTTP2_WINDOW_BYTES,
        // The relay sends no keepalive frame of its own (see the relay's keepalive); the transport's
        // PING tells a dead relay from a quiet one, and a lost PING fails the stream so we redial.
        'grpc.keepalive_time_ms': this.#opts.keepaliveMs,
        'grpc.keepalive_timeout_ms': this.#opts.keepaliveMs,
        // Our own connection, not one shared by every client in the process: keepalive and reconnect
        // state are this agent's, and a fleet held in one process opens a connection per agent.
        'grpc.use_local_subchannel_pool': 1,
      });
      this.#clients.set(server, client);
    }
    return client;
  }
}
