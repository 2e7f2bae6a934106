/**
 * @module The service end of HTTP proxy frames (proto/nfltr/v1/http.proto): requests from `/browse`
 * (control stream) or from a peer's `proxy_request` (A2A channel) are made to local HTTP services by
 * route, and their responses streamed back under the same flow-control window, so a body of any size
 * passes with at most one window held here.
 */

import { type ClientRequest, type IncomingMessage, request } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { Duplex, Readable, Writable } from 'node:stream';
import { create } from '@bufbuild/protobuf';
import {
  HTTP_CHUNK_BYTES,
  HTTP_ROUTES_LABEL,
  HTTP_WINDOW_BYTES,
  type HttpFrame,
  HttpFrameSchema,
  type HttpHeader,
  type HttpRequestHead,
  headerList,
  headerObject,
  requestProblem,
} from '../protocol/http-proxy.js';
import { type Logger, silentLogger } from '../util/log.js';
import type { A2aEndpoint, A2aFailure, A2aInbound } from './a2a.js';
import type { AgentClient, AgentStatus } from './client.js';

/** Requests whose path starts with `prefix` go to `target`, the prefix replaced by the target's path. */
export interface HttpRoute {
  prefix: string;
  target: URL;
}

/** Answer within this when the caller sets no timeout. */
export const DEFAULT_HTTP_TIMEOUT_MS = 30_000;

/** `PORT`, `HOST:PORT` or an http(s) URL, as a target; throws naming `what`. */
export function parseTarget(value: string, what: string): URL {
  const v = value.trim();
  const text = /^\d{1,5}$/.test(v) ? `http://localhost:${v}` : /^[^/:]+:\d{1,5}$/.test(v) ? `http://${v}` : v;
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new Error(`${what}: expected a port, host:port or http(s) URL, got ${JSON.stringify(value)}`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:')
    throw new Error(`${what}: only http and https services can be exposed, got ${url.protocol}`);
  return url;
}

/** `PREFIX=URL` (`--route`); the prefix starts with '/'. */
export function parseRoute(value: string): HttpRoute {
  const eq = value.indexOf('=');
  const prefix = eq > 0 ? value.slice(0, eq).trim() : '';
  if (!prefix.startsWith('/'))
    throw new Error(
      `--route: expected PREFIX=URL with PREFIX starting with '/', got ${JSON.stringify(value)}`,
    );
  return {
    prefix: prefix.replace(/\/+$/, '') || '/',
    target: parseTarget(value.slice(eq + 1), `--route ${prefix}`),
  };
}

/** The labels that tell peers this agent serves HTTP, and on which routes. */
export const httpLabels = (routes: readonly HttpRoute[]): Record<string, string> => ({
  [HTTP_ROUTES_LABEL]: routesLabel(routes),
});

export const routesLabel = (routes: readonly HttpRoute[]): string =>
  routes
    .map((r) => `${r.prefix}=${r.target.origin}${r.target.pathname.replace(/\/$/, '')}`)
    .join(' ')
    .slice(0, 256);

/** The longest route whose prefix is the path's (whole segments), and the URL the request goes to. */
export function routeFor(routes: readonly HttpRoute[], path: string): URL | undefined {
  let best: HttpRoute | undefined;
  const pathname = path.split('?', 1)[0]!;
  for (const r of routes) {
    const hit = r.prefix === '/' || pathname === r.prefix || pathname.startsWith(`${r.prefix}/`);
    if (hit && (!best || r.prefix.length > best.prefix.length)) best = r;
  }
  if (!best) return undefined;
  const rest = best.prefix === '/' ? path : path.slice(best.prefix.length) || '/';
  const base = best.target.pathname.replace(/\/$/, '');
  return new URL(`${base}${rest.startsWith('/') ? rest : `/${rest}`}`, best.target.origin);
}

export { HTTP_ROUTES_LABEL };

const frame = (streamId: string, f: HttpFrame['frame']): HttpFrame =>
  create(HttpFrameSchema, { streamId, frame: f });

/** Sends frames back to the caller of one request. */
export type HttpReply = (f: HttpFrame) => void;

interface Stream {
  /** Where the caller's bytes go: the request body, or the upgraded socket after a 101. */
  sink: Writable;
  req: ClientRequest;
  /** What goes back to the caller: the response body, or the upgraded socket. */
  source?: Readable;
  /** Response-body bytes the caller has room for. */
  credit: number;
  timer?: NodeJS.Timeout;
  done: boolean;
}

export class HttpService {
  readonly routes: readonly HttpRoute[];
  readonly #log: Logger;
  readonly #streams = new Map<string, Stream>();

  constructor(routes: readonly HttpRoute[], logger: Logger = silentLogger) {
    this.routes = routes;
    this.#log = logger;
  }

  /** One frame from a caller; `key` tells callers apart (the relay, or a peer), `reply` answers it. */
  onFrame(key: string, f: HttpFrame, reply: HttpReply): void {
    const id = `${key}\n${f.streamId}`;
    const s = this.#streams.get(id);
    const reset = (code: string, message: string) => {
      reply(frame(f.streamId, { case: 'reset', value: { $typeName: 'nfltr.v1.HttpReset', code, message } }));
      this.#end(id);
    };
    switch (f.frame.case) {
      case 'request':
        if (s) return reset('bad_request', `stream ${f.streamId} is already open`);
        return this.#open(id, f.streamId, f.frame.value, reply, reset);
      case 'data':
        if (!s) return;
        if (f.frame.value.data.byteLength > 0) {
          const n = f.frame.value.data.byteLength;
          s.sink.write(f.frame.value.data, () => {
            if (!s.done)
              reply(
                frame(f.streamId, { case: 'window', value: { $typeName: 'nfltr.v1.HttpWindow', bytes: n } }),
              );
          });
        }
        if (!f.frame.value.end) return;
        if (f.frame.value.trailers.length > 0 && s.sink === s.req)
          s.req.addTrailers(headerObject(f.frame.value.trailers));
        s.sink.end();
        return;
      case 'window':
        if (!s) return;
        s.credit += f.frame.value.bytes;
        if (s.credit > 0) clearTimeout(s.timer);
        if (s.credit > 0 && s.source?.isPaused()) s.source.resume();
        return;
      case 'reset':
        if (s) this.#end(id);
        return;
      default:
        return;
    }
  }

  /** One request whose caller cannot be answered any more. */
  abandon(key: string, streamId: string): void {
    this.#end(`${key}\n${streamId}`);
  }

  /** The caller behind `key` is gone (relay connection, peer): its requests are abandoned. */
  dropCaller(key: string): void {
    for (const id of [...this.#streams.keys()]) if (id.startsWith(`${key}\n`)) this.#end(id);
  }

  close(): void {
    for (const id of [...this.#streams.keys()]) this.#end(id);
  }

  #end(id: string): void {
    const s = this.#streams.get(id);
    if (!s) return;
    s.done = true;
    clearTimeout(s.timer);
    this.#streams.delete(id);
    if (!s.req.destroyed) s.req.destroy();
    if (!s.sink.destroyed) s.sink.destroy();
  }

  #open(
    id: string,
    streamId: string,
    head: HttpRequestHead,
    reply: HttpReply,
    reset: (code: string, message: string) => void,
  ): void {
    const problem = requestProblem(head.method, head.path);
    if (problem) return reset('bad_request', problem);
    const url = routeFor(this.routes, head.path);
    if (!url)
      return reset(
        'no_route',
        `no route of this agent matches ${head.path.split('?', 1)[0]} (routes: ${routesLabel(this.routes)})`,
      );
    const send = url.protocol === 'https:' ? httpsRequest : request;
    const upgrade = head.upgrade ? { connection: 'upgrade', upgrade: head.upgrade } : {};
    const req = send(url, {
      method: head.method,
      headers: { ...headerObject(head.headers), ...upgrade, host: url.host },
    });
    const s: Stream = { sink: req, req, credit: HTTP_WINDOW_BYTES, done: false };
    this.#streams.set(id, s);
    const timeoutMs = head.timeoutMs || DEFAULT_HTTP_TIMEOUT_MS;
    s.timer = setTimeout(
      () =>
        reset('timeout', `the service at ${url.origin} did not answer within ${timeoutMs} ms (timeout_ms)`),
      timeoutMs,
    );
    const data = (bytes: Uint8Array, end: boolean, trailers: HttpHeader[] = []) =>
      reply(
        frame(streamId, {
          case: 'data',
          value: { $typeName: 'nfltr.v1.HttpData', data: bytes, end, trailers },
        }),
      );
    /** Sends `from`'s bytes back under the caller's window; `ended` says it is all sent. */
    const carry = (from: Readable, ended: () => void) => {
      s.source = from;
      from.on('data', (chunk: Buffer) => {
        for (let at = 0; at < chunk.byteLength; at += HTTP_CHUNK_BYTES) {
          const part = chunk.subarray(at, at + HTTP_CHUNK_BYTES);
          data(part, false);
          s.credit -= part.byteLength;
        }
        if (s.credit > 0 || from.isPaused()) return;
        from.pause();
        // A caller that stops granting window (gone without a word) must not hold the request forever.
        s.timer = setTimeout(
          () => reset('timeout', `the caller read nothing for ${timeoutMs} ms`),
          timeoutMs,
        );
      });
      from.on('end', () => {
        if (!s.done) ended();
      });
      from.on('error', () => {});
    };
    const respond = (res: IncomingMessage, upgraded: string) => {
      clearTimeout(s.timer);
      reply(
        frame(streamId, {
          case: 'response',
          value: {
            $typeName: 'nfltr.v1.HttpResponseHead',
            status: res.statusCode ?? 502,
            headers: headerList(res.headers),
            hasBody: true,
            upgrade: upgraded,
          },
        }),
      );
    };
    req.on('error', (err: NodeJS.ErrnoException) => {
      if (s.done) return;
      const code = err.code ?? 'error';
      reset(
        'service_refused',
        `${s.source ? 'the service failed mid-response' : `the service at ${url.origin} cannot be reached`}: ${code} ${err.message}`,
      );
    });
    req.on('response', (res) => {
      respond(res, '');
      carry(res, () => {
        data(new Uint8Array(), true, headerList(res.trailers));
        s.done = true;
        this.#streams.delete(id);
      });
    });
    // The service switched protocols: its socket's bytes are the stream now, both ways, until it closes.
    req.on('upgrade', (res: IncomingMessage, socket: Duplex, early: Buffer) => {
      respond(res, String(res.headers.upgrade ?? head.upgrade));
      s.sink = socket;
      socket.on('close', () => this.#end(id));
      if (early.byteLength > 0) socket.unshift(early);
      carry(socket, () => data(new Uint8Array(), true));
    });
    if (!head.hasBody) req.end();
    this.#log.debug('proxying', { method: head.method, path: head.path, to: url.origin, ...upgrade });
  }
}

/**
 * Serves `service` to `/browse` requests arriving on the control stream and, with an A2A endpoint, to
 * peers' `proxy_request` frames (sealed end to end). The agent advertises {@link httpLabels} of the
 * service among its labels. Returns a detach function.
 */
export function exposeHttp(agent: AgentClient, service: HttpService, endpoint?: A2aEndpoint): () => void {
  const onHttp = (f: HttpFrame) => service.onFrame('relay', f, (r) => agent.sendHttp(r));
  const onStatus = (s: AgentStatus) => {
    if (s.type === 'disconnected') service.dropCaller('relay');
  };
  const onMessage = (m: A2aInbound) => {
    if (m.msg.case !== 'http') return;
    const caller = `peer:${m.peer}`;
    service.onFrame(caller, m.msg.value, (r) => {
      try {
        endpoint
          ?.send(m.peer, m.channel, { case: 'http', value: r })
          .catch(() => service.abandon(caller, r.streamId));
      } catch {
        service.abandon(caller, r.streamId); // the channel is closed: the caller is done with it
      }
    });
  };
  const onFailure = (f: A2aFailure) => {
    if (!f.channel) service.dropCaller(`peer:${f.peer}`);
    else if (f.channel.startsWith('http-')) service.abandon(`peer:${f.peer}`, f.channel.slice(5));
  };
  agent.on('http', onHttp);
  agent.on('status', onStatus);
  endpoint?.on('message', onMessage);
  endpoint?.on('failure', onFailure);
  return () => {
    agent.off('http', onHttp);
    agent.off('status', onStatus);
    endpoint?.off('message', onMessage);
    endpoint?.off('failure', onFailure);
    service.close();
  };
}
