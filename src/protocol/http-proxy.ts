/**
 * @module HTTP proxy frames (proto/nfltr/v1/http.proto): flow-control sizes, header rules and the
 * error codes both ends agree on. Pure: no I/O.
 */
import { create } from '@bufbuild/protobuf';
import {
  type HttpFrame,
  HttpFrameSchema,
  type HttpHeader,
  HttpHeaderSchema,
} from './gen/nfltr/v1/http_pb.js';

export * from './gen/nfltr/v1/http_pb.js';

/** Label listing the routes an agent serves (`prefix=url` joined by spaces); `list_my_peers` shows it. */
export const HTTP_ROUTES_LABEL = 'nfltr.http.routes';

/** Body bytes in one HttpData frame. */
export const HTTP_CHUNK_BYTES = 64 * 1024;
/**
 * Body bytes a sender may have unacknowledged per stream: all that the relay, or either end, ever holds
 * of one body. Four chunks keep a loopback link busy while the receiver acknowledges.
 */
export const HTTP_WINDOW_BYTES = 1024 * 1024;

const varintSize = (n: number): number =>
  n < 0x80 ? 1 : n < 0x4000 ? 2 : n < 0x200000 ? 3 : n < 0x10000000 ? 4 : 5;

function putVarint(out: Buffer, at: number, n: number): number {
  while (n >= 0x80) {
    out[at++] = (n & 0x7f) | 0x80;
    n >>>= 7;
  }
  out[at++] = n;
  return at;
}

/**
 * A body chunk as a whole control frame: `HttpFrame{stream_id, data: HttpData{data, end}}` in the
 * frame's field `field` (AgentFrame.http, RelayFrame.http), the bytes protobuf would write. By hand
 * because protobuf-es copies a bytes field once per level of nesting (three here), and body chunks
 * are most of what an HTTP stream sends: this copies the body once.
 */
export function encodeHttpDataFrame(field: number, streamId: string, data: Uint8Array, end: boolean): Buffer {
  const id = Buffer.from(streamId, 'utf8');
  const dataLen = data.byteLength > 0 ? 1 + varintSize(data.byteLength) + data.byteLength : 0;
  const httpData = dataLen + (end ? 2 : 0);
  const idLen = id.byteLength > 0 ? 1 + varintSize(id.byteLength) + id.byteLength : 0;
  const httpFrame = idLen + 1 + varintSize(httpData) + httpData;
  const out = Buffer.allocUnsafe(varintSize(field << 3) + varintSize(httpFrame) + httpFrame);
  let at = putVarint(out, 0, (field << 3) | 2);
  at = putVarint(out, at, httpFrame);
  if (idLen > 0) {
    out[at++] = 0x0a; // HttpFrame.stream_id = 1
    at = putVarint(out, at, id.byteLength);
    at += id.copy(out, at);
  }
  out[at++] = 0x22; // HttpFrame.data = 4
  at = putVarint(out, at, httpData);
  if (dataLen > 0) {
    out[at++] = 0x0a; // HttpData.data = 1
    at = putVarint(out, at, data.byteLength);
    out.set(data, at);
    at += data.byteLength;
  }
  if (end) {
    out[at++] = 0x10; // HttpData.end = 2
    out[at++] = 1;
  }
  return out;
}

/** Headers that describe one connection, not the message: never forwarded (RFC 9110 §7.6.1). */
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'host',
]);

/** Errors a proxied request ends with, and the HTTP status `/browse` answers them with. */
export const HTTP_PROXY_ERRORS = {
  /** No agent with that id is connected under the caller's account. */
  agent_not_connected: 404,
  /** The agent is connected but exposes no HTTP service (not `nfltr http` nor `worker --expose`). */
  not_exposed: 502,
  /** No `--route` of the agent matches the path. */
  no_route: 404,
  /** The agent's local service refused the connection or failed before answering. */
  service_refused: 502,
  /** The service did not answer within the request's timeout. */
  timeout: 504,
  /** The agent disconnected before the response was complete. */
  agent_gone: 502,
  /** The agent answered a status or header HTTP cannot carry. */
  bad_response: 502,
  /** A body exceeds what this path accepts. */
  body_too_large: 413,
  /** The caller's API key was revoked while its request was in flight. */
  unauthenticated: 401,
  /** The relay serving the caller is shutting down. */
  relay_shutting_down: 503,
  /** The relay could not queue the request for the agent (its buffer is full). */
  agent_busy: 503,
  /** The request was malformed (bad method, path or header). */
  bad_request: 400,
} as const;
export type HttpProxyErrorCode = keyof typeof HTTP_PROXY_ERRORS;

export const statusOfProxyError = (code: string): number =>
  (HTTP_PROXY_ERRORS as Record<string, number>)[code] ?? 502;

/**
 * Node's header object as a frame's header list, minus hop-by-hop headers, those `Connection` names,
 * and any in `drop` (the caller's API key on `/browse`).
 */
export function headerList(
  headers: Record<string, string | string[] | number | undefined>,
  drop: readonly string[] = [],
): HttpHeader[] {
  const connection = String(headers.connection ?? '')
    .split(',')
    .map((s) => s.trim().toLowerCase());
  const out: HttpHeader[] = [];
  for (const [rawName, value] of Object.entries(headers)) {
    const name = rawName.toLowerCase();
    if (value === undefined || HOP_BY_HOP.has(name) || connection.includes(name) || drop.includes(name))
      continue;
    for (const v of Array.isArray(value) ? value : [String(value)])
      out.push(create(HttpHeaderSchema, { name, value: v }));
  }
  return out;
}

/** A frame's header list as Node's outgoing headers (repeated names become arrays). */
export function headerObject(list: readonly HttpHeader[]): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const { name, value } of list) {
    const prev = out[name];
    out[name] = prev === undefined ? value : Array.isArray(prev) ? [...prev, value] : [prev, value];
  }
  return out;
}

const METHOD_RE = /^[A-Z][A-Z0-9-]{0,31}$/;

/** The reset a relay answers for a stream whose agent no replica holds. */
export const notConnectedReset = (streamId: string, agentId: string): HttpFrame =>
  create(HttpFrameSchema, {
    streamId,
    frame: {
      case: 'reset',
      value: { code: 'agent_not_connected', message: `agent ${agentId} is not connected under this account` },
    },
  });

/** Checks a request head; the problem in words, or undefined. */
export function requestProblem(method: string, path: string): string | undefined {
  if (!METHOD_RE.test(method)) return `method ${JSON.stringify(method)} is not an HTTP method`;
  if (!path.startsWith('/') || path.length > 8192 || /[\s\0]/.test(path))
    return `path ${JSON.stringify(path.slice(0, 80))} must start with '/' and hold no spaces`;
  return undefined;
}

/** The kind of frame, for logs and errors. */
export const frameKind = (f: HttpFrame): string => f.frame.case ?? 'empty';
