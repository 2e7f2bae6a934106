/**
 * @module The service end of HTTP proxy frames (proto/nfltr/v1/http.proto): requests from `/browse`
 * (control stream) or from a peer's `proxy_request` (A2A channel) are made to local HTTP services by
 * route, and their responses streamed back under the same flow-control window, so a body of any size
 * passes with at most one window held here.
 */

import { type ClientRequest, type IncomingMessage, request } from 'node:http';
import { request as httpsRequest } from 'node:https';
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
  req: ClientRequest;
  res?: IncomingMessage;
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
          s.req.write(f.frame.value.data, () => {
            if (!s.done)
              reply(
                frame(f.streamId, { case: 'window', value: { $typeName: 'nfltr.v1.HttpWindow', bytes: n } }),
              );
          });
        }
        if (f.frame.value.end) s.req.end();
        return;
      case 'window':
        if (!s) return;
        s.credit += f.frame.value.bytes;
        if (s.credit > 0) clearTimeout(s.timer);
        if (s.credit > 0 && s.res?.isPaused()) s.res.resume();
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
  }

  #open(
    id: string,
    streamId: string,
    head: { method: string; path: string; headers: HttpHeader[]; timeoutMs: number; hasBody: boolean },
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
    const req = send(url, {
      method: head.method,
      headers: { ...headerObject(head.headers), host: url.host },
    });
    const s: Stream = { req, credit: HTTP_WINDOW_BYTES, done: false };
    this.#streams.set(id, s);
    const timeoutMs = head.timeoutMs || DEFAULT_HTTP_TIMEOUT_MS;
    s.timer = setTimeout(
      () =>
        reset('timeout', `the service at ${url.origin} did not answer within ${timeoutMs} ms (timeout_ms)`),
      timeoutMs,
    );
    req.on('error', (err: NodeJS.ErrnoException) => {
      if (s.done) return;
      const code = err.code ?? 'error';
      reset(
        'service_refused',
        `${s.res ? 'the service failed mid-response' : `the service at ${url.origin} cannot be reached`}: ${code} ${err.message}`,
      );
    });
    req.on('response', (res) => {
      clearTimeout(s.timer);
      s.res = res;
      reply(
        frame(streamId, {
          case: 'response',
          value: {
            $typeName: 'nfltr.v1.HttpResponseHead',
            status: res.statusCode ?? 502,
            headers: headerList(res.headers),
            hasBody: true,
          },
        }),
      );
      res.on('data', (chunk: Buffer) => {
        for (let at = 0; at < chunk.byteLength; at += HTTP_CHUNK_BYTES) {
          const data = chunk.subarray(at, at + HTTP_CHUNK_BYTES);
          reply(
            frame(streamId, {
              case: 'data',
              value: { $typeName: 'nfltr.v1.HttpData', data, end: false, trailers: [] },
            }),
          );
          s.credit -= data.byteLength;
        }
        if (s.credit > 0 || res.isPaused()) return;
        res.pause();
        // A caller that stops granting window (gone without a word) must not hold the request forever.
        s.timer = setTimeout(
          () => reset('timeout', `the caller read nothing for ${timeoutMs} ms`),
          timeoutMs,
        );
      });
      res.on('end', () => {
        if (s.done) return;
        reply(
          frame(streamId, {
            case: 'data',
            value: {
              $typeName: 'nfltr.v1.HttpData',
              data: new Uint8Array(),
              end: true,
              trailers: headerList(res.trailers),
            },
          }),
        );
        s.done = true;
        this.#streams.delete(id);
      });
      res.on('error', () => {});
    });
    if (!head.hasBody) req.end();
    this.#log.debug('proxying', { method: head.method, path: head.path, to: url.origin });
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
