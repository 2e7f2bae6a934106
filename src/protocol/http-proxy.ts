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
import {
  lenFieldSize,
  unknownFieldsSize,
  utf8Length,
  varintSize,
  writeBool,
  writeBytes,
  writeLenHeader,
  writeString,
  writeUnknownFields,
} from './wire-writer.js';

export * from './gen/nfltr/v1/http_pb.js';

/** Label listing the routes an agent serves (`prefix=url` joined by spaces); `list_my_peers` shows it. */
export const HTTP_ROUTES_LABEL = 'nfltr.http.routes';

/** HttpFrame.data's field number. */
const HTTP_FRAME_DATA_FIELD = HttpFrameSchema.field.data!.number;

/** Body bytes in one HttpData frame. */
export const HTTP_CHUNK_BYTES = 64 * 1024;
/**
 * Body bytes a sender may have unacknowledged per stream: all that the relay, or either end, ever holds
 * of one body. Four chunks keep a loopback link busy while the receiver acknowledges.
 */
export const HTTP_WINDOW_BYTES = 1024 * 1024;

/**
 * A body chunk as the field `field` (AgentFrame.http, RelayFrame.http, A2aMessage.http) of a whole
 * message, the bytes protobuf would write, with the body copied once (./wire-writer.ts says why);
 * undefined for any other frame, and for a last chunk with trailers (rare, small: protobuf's).
 */
export function encodeHttpDataFrame(field: number, f: HttpFrame): Buffer | undefined {
  if (f.frame.case !== 'data' || f.frame.value.trailers.length > 0) return undefined;
  const d = f.frame.value;
  const dataSize = lenFieldSize(d.data.byteLength) + (d.end ? 2 : 0) + unknownFieldsSize(d.$unknown);
  const idLen = utf8Length(f.streamId);
  const frameSize = lenFieldSize(idLen) + 1 + varintSize(dataSize) + dataSize + unknownFieldsSize(f.$unknown);
  const buf = Buffer.allocUnsafe(1 + varintSize(frameSize) + frameSize);
  let pos = writeLenHeader(buf, 0, field, frameSize);
  pos = writeString(buf, pos, 1, f.streamId, idLen);
  pos = writeLenHeader(buf, pos, HTTP_FRAME_DATA_FIELD, dataSize); // written even when empty: a oneof
  pos = writeBytes(buf, pos, 1, d.data);
  pos = writeUnknownFields(buf, writeBool(buf, pos, 2, d.end), d.$unknown);
  writeUnknownFields(buf, pos, f.$unknown);
  return buf;
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
