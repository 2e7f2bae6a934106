/**
 * @module `/browse/<agent_id>/<path>`: the relay terminates a browser's (or curl's) HTTP request and
 * forwards it as HTTP proxy frames on the agent's control stream (proto/nfltr/v1/http.proto). Bodies
 * stream both ways under a per-request window, so a request holds at most one window of the relay's
 * memory (charged to the account like envelopes). An upgrade request (WebSocket) that the service
 * accepts becomes a raw byte stream both ways under the same windows. An agent held by another
 * replica is reached over the bus: this replica keeps the caller's side, the holder relays the frames
 * to and from the agent's stream. A request ends when the caller's API key is revoked. This path is
 * not end-to-end encrypted: the relay sees the request and response (docs/security.md).
 */
import { randomBytes } from 'node:crypto';
import {
  type IncomingMessage,
  type ServerResponse,
  STATUS_CODES,
  validateHeaderName,
  validateHeaderValue,
} from 'node:http';
import type { Duplex, Readable } from 'node:stream';
import { create } from '@bufbuild/protobuf';
import {
  HTTP_CHUNK_BYTES,
  HTTP_ROUTES_LABEL,
  HTTP_WINDOW_BYTES,
  type HttpFrame,
  HttpFrameSchema,
  type HttpHeader,
  headerList,
  headerObject,
  requestProblem,
  statusOfProxyError,
} from '../protocol/http-proxy.js';
import type { Logger } from '../util/log.js';
import type { Cluster } from './cluster.js';
import type { AgentConnection } from './connection.js';
import { decodeSegment } from './http-api.js';
import type { Revocations } from './revocation.js';

/** What the control service hands to `/browse`. */
export interface BrowseFrames {
  onFrame(conn: AgentConnection, f: HttpFrame): void;
  onClosed(conn: AgentConnection): void;
}

/** Header a caller sets to change the per-request timeout (milliseconds); never forwarded. */
export const TIMEOUT_HEADER = 'x-nfltr-timeout-ms';

interface Pending {
  onFrame(f: HttpFrame): void;
  fail(code: string, message: string): void;
}

/** A stream this replica relays for the replica that took the request (`origin` on the bus). */
interface Relayed {
  origin: string;
  /** The agent answered 101: the stream outlives the response body. */
  upgraded: boolean;
}

/** The caller of a `/browse` request, as its API key authenticated it. */
export interface BrowseCaller {
  account: string;
  keyId: string;
  /** The header that carried the key: it goes no further than the relay. */
  keyHeader: string;
}

const resetFrame = (streamId: string, code: string, message: string): HttpFrame =>
  create(HttpFrameSchema, { streamId, frame: { case: 'reset', value: { code, message } } });

const errorBody = (code: string, message: string) => `${JSON.stringify({ error: { code, message } })}\n`;

/** A whole JSON error response as HTTP/1.1 text, for a socket no Node response object wraps. */
export function rawErrorResponse(status: number, code: string, message: string): string {
  const body = errorBody(code, message);
  return `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ''}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`;
}

/**
 * Where a response goes: Node's response object, or the raw socket of an upgrade request. `head`
 * throws on what HTTP cannot carry (an agent's bad header or status); the caller answers for it.
 */
interface Downstream {
  head(status: number, headers: readonly HttpHeader[], upgrade: string): void;
  write(data: Uint8Array, written: () => void): void;
  end(trailers: readonly HttpHeader[]): void;
  error(code: string, message: string): void;
  onClose(listener: () => void): void;
}

function checkHead(status: number, headers: readonly HttpHeader[]): void {
  if (!Number.isInteger(status) || status < 100 || status > 599)
    throw new Error(`the agent answered status ${status}`);
  for (const h of headers) {
    validateHeaderName(h.name);
    validateHeaderValue(h.name, h.value);
  }
}

const toResponse = (res: ServerResponse): Downstream => ({
  head(status, headers) {
    checkHead(status, headers);
    res.writeHead(status, headerObject(headers));
  },
  write: (data, written) => void res.write(data, written),
  end(trailers) {
    if (trailers.length > 0) res.addTrailers(headerObject(trailers));
    res.end();
  },
  error(code, message) {
    if (res.headersSent) return void res.destroy(new Error(message));
    res.writeHead(statusOfProxyError(code), { 'content-type': 'application/json', connection: 'close' });
    res.end(errorBody(code, message));
  },
  onClose: (listener) => void res.on('close', listener),
});

/**
 * The socket of an upgrade request, written as HTTP/1.1 by hand: a 101 keeps it open for raw bytes;
 * any other answer is delimited by closing the connection (trailers cannot be carried).
 */
function toSocket(socket: Duplex): Downstream {
  let started = false;
  return {
    head(status, headers, upgrade) {
      checkHead(status, headers);
      if (status === 101) validateHeaderValue('upgrade', upgrade);
      const lines = [
        `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ''}`,
        ...(status === 101 ? ['connection: upgrade', `upgrade: ${upgrade}`] : ['connection: close']),
        ...headers.map((h) => `${h.name}: ${h.value}`),
      ];
      started = true;
      socket.write(`${lines.join('\r\n')}\r\n\r\n`);
    },
    write: (data, written) => void socket.write(data, written),
    end: () => void socket.end(),
    error(code, message) {
      if (started) return void socket.destroy();
      started = true;
      socket.end(rawErrorResponse(statusOfProxyError(code), code, message));
    },
    onClose: (listener) => void socket.on('close', listener),
  };
}

export class Browse implements BrowseFrames {
  readonly #cluster: Cluster;
  readonly #log: Logger;
  readonly #defaultTimeoutMs: number;
  readonly #revocations: Revocations | undefined;
  /** Requests taken here, for agents held here. */
  readonly #streams = new Map<AgentConnection, Map<string, Pending>>();
  /** Requests taken here, for agents another replica holds; by stream id. */
  readonly #remote = new Map<string, Pending>();
  /** Requests another replica took, for agents held here. */
  readonly #relayed = new Map<AgentConnection, Map<string, Relayed>>();

  /** Registers itself as the cluster's receiver of `/browse` frames from other replicas. */
  constructor(opts: { cluster: Cluster; logger: Logger; timeoutMs: number; revocations?: Revocations }) {
    this.#cluster = opts.cluster;
    this.#log = opts.logger;
    this.#defaultTimeoutMs = opts.timeoutMs;
    this.#revocations = opts.revocations;
    opts.cluster.http = {
      httpIn: (account, agentId, origin, f) => this.#relayIn(account, agentId, origin, f),
      httpBack: (f) => this.#remote.get(f.streamId)?.onFrame(f),
    };
  }

  onFrame(conn: AgentConnection, f: HttpFrame): void {
    const local = this.#streams.get(conn)?.get(f.streamId);
    if (local) return local.onFrame(f);
    const relayed = this.#relayed.get(conn);
    const r = relayed?.get(f.streamId);
    if (!r) return;
    const v = f.frame;
    if (v.case === 'response' && v.value.status === 101) r.upgraded = true;
    if (v.case === 'reset' || (v.case === 'data' && v.value.end && !r.upgraded)) relayed!.delete(f.streamId);
    this.#cluster.answerHttp(r.origin, f);
  }

  onClosed(conn: AgentConnection): void {
    const gone = `agent ${conn.identity.agentId} disconnected before the response was complete`;
    const streams = this.#streams.get(conn);
    this.#streams.delete(conn);
    for (const p of streams?.values() ?? []) p.fail('agent_gone', gone);
    const relayed = this.#relayed.get(conn);
    this.#relayed.delete(conn);
    for (const [streamId, r] of relayed ?? [])
      this.#cluster.answerHttp(r.origin, resetFrame(streamId, 'agent_gone', gone));
  }

  /** The relay is shutting down: every request taken here ends (upgraded sockets are not the server's). */
  close(): void {
    const message = 'the relay is shutting down; retry on another replica';
    for (const p of [
      ...this.#remote.values(),
      ...[...this.#streams.values()].flatMap((m) => [...m.values()]),
    ])
      p.fail('relay_shutting_down', message);
  }

  /** A frame another replica forwards for an agent held here: on to the agent's stream. */
  #relayIn(account: string, agentId: string, origin: string, f: HttpFrame): void {
    const conn = this.#cluster.local.lookup(account, agentId);
    const answer = (code: string, message: string) =>
      this.#cluster.answerHttp(origin, resetFrame(f.streamId, code, message));
    let streams = conn && this.#relayed.get(conn);
    if (f.frame.case === 'request') {
      if (!conn) return answer('agent_not_connected', `agent ${agentId} is not connected under this account`);
      if (!streams) {
        streams = new Map();
        this.#relayed.set(conn, streams);
      }
      streams.set(f.streamId, { origin, upgraded: false });
    }
    if (!conn || !streams?.has(f.streamId)) return;
    if (f.frame.case === 'reset') streams.delete(f.streamId);
    if (conn.sendHttp(f)) return;
    streams.delete(f.streamId);
    answer('agent_busy', `the relay's buffer for agent ${agentId} is full`);
  }

  /** Serves one `/browse` request of an authenticated caller. */
  handle(req: IncomingMessage, res: ServerResponse, caller: BrowseCaller): void {
    const hasBody =
      req.headers['content-length'] !== undefined
        ? req.headers['content-length'] !== '0'
        : req.headers['transfer-encoding'] !== undefined;
    this.#forward(req, caller, toResponse(res), hasBody ? { body: req } : {});
  }

  /**
   * Serves one `/browse` upgrade request (WebSocket): the service's 101 turns `socket` into a byte
   * stream to the service's; `head` holds bytes the client sent after its request.
   */
  upgrade(req: IncomingMessage, socket: Duplex, head: Buffer, caller: BrowseCaller): void {
    const protocol = String(req.headers.upgrade ?? '');
    this.#forward(req, caller, toSocket(socket), { upgrade: { protocol, socket, head } });
  }

  #forward(
    req: IncomingMessage,
    { account, keyId, keyHeader }: BrowseCaller,
    down: Downstream,
    carry: { body?: Readable; upgrade?: { protocol: string; socket: Duplex; head: Buffer } },
  ): void {
    const url = req.url ?? '/';
    const m = /^\/browse\/([^/?]+)(.*)$/.exec(url);
    const agentId = decodeSegment(m?.[1] ?? '');
    const path = m?.[2] ? (m[2].startsWith('?') ? `/${m[2]}` : m[2]) : '/';
    const method = req.method ?? 'GET';
    if (agentId === undefined) return down.error('bad_request', 'malformed escape in the agent id');
    const problem = requestProblem(method, path);
    if (!agentId || problem)
      return down.error('bad_request', problem ?? 'expected /browse/<agent_id>/<path>');
    const timeoutText = req.headers[TIMEOUT_HEADER];
    const timeoutMs = timeoutText === undefined ? this.#defaultTimeoutMs : Number(timeoutText);
    if (!Number.isInteger(timeoutMs) || timeoutMs <= 0)
      return down.error(
        'bad_request',
        `${TIMEOUT_HEADER}: expected a positive number of milliseconds, got ${JSON.stringify(timeoutText)}`,
      );

    const conn = this.#cluster.local.lookup(account, agentId);
    const remote = conn
      ? undefined
      : this.#cluster
          .peers(account)
          .find((p) => p.agentId === agentId && p.relayId !== this.#cluster.relayId);
    if (!conn && !remote)
      return down.error('agent_not_connected', `agent ${agentId} is not connected under this account`);
    // The agent's own claim; an agent that serves nothing would leave the request to time out.
    const labels = conn ? conn.labels : remote!.labels;
    if (labels[HTTP_ROUTES_LABEL] === undefined)
      return down.error(
        'not_exposed',
        `agent ${agentId} exposes no HTTP service: run \`nfltr http\` there, or start the worker with --expose`,
      );
    const streamId = randomBytes(8).toString('hex');
    let streams: Map<string, Pending>;
    let sendFrame: (f: HttpFrame) => boolean;
    if (conn) {
      streams = this.#streams.get(conn) ?? new Map<string, Pending>();
      this.#streams.set(conn, streams);
      sendFrame = (f) => conn.sendHttp(f);
    } else {
      streams = this.#remote;
      sendFrame = (f) => {
        this.#cluster.forwardHttp(account, agentId, f);
        return true;
      };
    }
    const send = (f: HttpFrame['frame']) => sendFrame(create(HttpFrameSchema, { streamId, frame: f }));
    const reset = (code: string, message: string) =>
      send({ case: 'reset', value: { $typeName: 'nfltr.v1.HttpReset', code, message } });

    let finished = false;
    let credit = HTTP_WINDOW_BYTES;
    /** What the client sends the service: the request body, or the upgraded socket after a 101. */
    let source: Readable | undefined;
    const finish = () => {
      finished = true;
      clearTimeout(timer);
      streams.delete(streamId);
      unwatch?.();
      source?.off('data', onData);
    };
    const fail = (code: string, message: string) => {
      if (finished) return;
      finish();
      reset('cancelled', message);
      down.error(code, message);
    };
    // Revoking the caller's key ends its requests too, downloads and WebSockets included.
    const unwatch = this.#revocations?.add(keyId, (details) => fail('unauthenticated', details));
    const timer = setTimeout(
      () => fail('timeout', `agent ${agentId} did not answer within ${timeoutMs} ms (${TIMEOUT_HEADER})`),
      timeoutMs + 1_000,
    );
    const sendData = (chunk: Uint8Array, end: boolean, trailers: HttpHeader[] = []) => {
      if (finished) return;
      if (!send({ case: 'data', value: { $typeName: 'nfltr.v1.HttpData', data: chunk, end, trailers } }))
        return fail('agent_busy', `the relay's buffer for agent ${agentId} is full`);
      credit -= chunk.byteLength;
    };
    const onData = (chunk: Buffer) => {
      for (let at = 0; at < chunk.byteLength; at += HTTP_CHUNK_BYTES)
        sendData(chunk.subarray(at, at + HTTP_CHUNK_BYTES), false);
      if (credit <= 0) source?.pause();
    };
    const carryFrom = (from: Readable, trailers: () => HttpHeader[]) => {
      source = from;
      from.on('data', onData);
      from.on('end', () => sendData(new Uint8Array(), true, trailers()));
    };
    streams.set(streamId, {
      fail,
      onFrame: (f) => {
        if (finished) return;
        const v = f.frame;
        switch (v.case) {
          case 'window':
            credit += v.value.bytes;
            if (credit > 0) source?.resume();
            return;
          case 'response': {
            clearTimeout(timer);
            const { status, headers, upgrade } = v.value;
            try {
              down.head(status, headers, upgrade);
            } catch (err) {
              return fail(
                'bad_response',
                `agent ${agentId} answered what HTTP cannot carry: ${(err as Error).message}`,
              );
            }
            const up = carry.upgrade;
            if (status === 101 && up) {
              // An upgraded connection may idle as long as its two ends like: no HTTP request timeout.
              (up.socket as Duplex & { setTimeout?(ms: number): void }).setTimeout?.(0);
              if (up.head.byteLength > 0) onData(up.head);
              carryFrom(up.socket, () => []);
            }
            return;
          }
          case 'data': {
            const n = v.value.data.byteLength;
            if (n > 0)
              down.write(v.value.data, () =>
                send({ case: 'window', value: { $typeName: 'nfltr.v1.HttpWindow', bytes: n } }),
              );
            if (!v.value.end) return;
            // An upgraded stream is over when the client closes too (half-close); a response now.
            if (!carry.upgrade) finish();
            down.end(v.value.trailers);
            return;
          }
          case 'reset':
            finish();
            down.error(v.value.code, v.value.message);
            return;
        }
      },
    });
    down.onClose(() => {
      if (finished) return;
      finish();
      reset('cancelled', 'the client went away');
    });

    const upgrade = carry.upgrade?.protocol ?? '';
    const headers = headerList(req.headers, [keyHeader, TIMEOUT_HEADER]);
    if (
      !send({
        case: 'request',
        value: {
          $typeName: 'nfltr.v1.HttpRequestHead',
          method,
          path,
          headers,
          timeoutMs,
          hasBody: carry.body !== undefined,
          upgrade,
        },
      })
    )
      return fail('agent_busy', `the relay's buffer for agent ${agentId} is full`);
    this.#log.debug('browse', { agent: agentId, method, path, ...(upgrade ? { upgrade } : {}) });
    if (carry.body) carryFrom(carry.body, () => headerList(req.trailers));
  }
}
