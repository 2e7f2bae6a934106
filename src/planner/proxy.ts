/**
 * @module `proxy_request`: one HTTP request to a service a peer exposes (`nfltr http`, `nfltr worker
 * --expose`), carried as HTTP proxy frames inside sealed A2A messages, so the relay sees only routing.
 * Bodies stream under the same flow-control window as `/browse`; a response body larger than
 * {@link INLINE_BODY_BYTES} is written under the planner's state folder and returned as a path.
 */
import { randomBytes } from 'node:crypto';
import {
  createReadStream,
  createWriteStream,
  mkdirSync,
  type Stats,
  statSync,
  type WriteStream,
} from 'node:fs';
import { join } from 'node:path';
import { create } from '@bufbuild/protobuf';
import type { A2aEndpoint, A2aFailure, A2aInbound } from '../agent/index.js';
import {
  HTTP_CHUNK_BYTES,
  HTTP_WINDOW_BYTES,
  type HttpFrame,
  HttpFrameSchema,
  type HttpHeader,
  HttpHeaderSchema,
  headerObject,
  requestProblem,
} from '../protocol/http-proxy.js';
import { PlannerError, type PlannerErrorCode } from './errors.js';
import type { RelayLink } from './link.js';

/**
 * While a response is awaited, an empty window frame goes to the agent this often: nothing tells an
 * agent that its peer vanished, but the relay bounces a frame for an agent that is gone (agent_gone).
 */
const LIVENESS_MS = 2_000;

/** Response bodies up to this are returned in the tool result; larger ones go to a file. */
export const INLINE_BODY_BYTES = 256 * 1024;

/** proxy_request's errors say their code first: an MCP client sees only the text. */
export const proxyError = (code: PlannerErrorCode, message: string): PlannerError =>
  new PlannerError(code, `${code}: ${message}`);

export interface ProxyRequest {
  agentId: string;
  method: string;
  path: string;
  headers: Record<string, string>;
  body?: Uint8Array;
  /** A local file sent as the body, read as the window allows (never held whole); instead of `body`. */
  bodyFile?: string;
  timeoutMs: number;
  signal?: AbortSignal;
}

export interface ProxyResponse {
  status: number;
  headers: Record<string, string | string[]>;
  trailers?: Record<string, string | string[]>;
  /** Inline body, or the file it was written to. */
  body: { bytes: Buffer } | { file: string; size: number };
}

interface Open {
  onFrame(f: HttpFrame): void;
  fail(err: PlannerError): void;
}

/** The size of a regular file to send as a body; an invalid_argument error naming body_file otherwise. */
function fileSize(path: string): number {
  let st: Stats;
  try {
    st = statSync(path);
  } catch (err) {
    throw proxyError('invalid_argument', `body_file ${path} cannot be read: ${(err as Error).message}`);
  }
  if (!st.isFile()) throw proxyError('invalid_argument', `body_file ${path} is not a regular file`);
  return st.size;
}

function* slices(body: Uint8Array): Generator<Uint8Array> {
  for (let at = 0; at < body.byteLength; at += HTTP_CHUNK_BYTES)
    yield body.subarray(at, at + HTTP_CHUNK_BYTES);
}

export class HttpProxyClient {
  readonly #a2a: A2aEndpoint;
  readonly #link: RelayLink;
  readonly #dir: string;
  readonly #open = new Map<string, Open>();

  constructor(opts: { a2a: A2aEndpoint; link: RelayLink; stateDir: string }) {
    this.#a2a = opts.a2a;
    this.#link = opts.link;
    this.#dir = join(opts.stateDir, 'http');
    this.#a2a.on('message', (m: A2aInbound) => {
      if (m.msg.case === 'http') this.#open.get(`${m.peer}\n${m.channel}`)?.onFrame(m.msg.value);
    });
    this.#a2a.on('failure', (f: A2aFailure) => {
      for (const [key, o] of this.#open) {
        const [peer, channel] = key.split('\n');
        if (peer !== f.peer || (f.channel && f.channel !== channel)) continue;
        o.fail(
          f.code === 'peer_not_found'
            ? proxyError('agent_gone', `agent ${f.peer} is not connected (or left mid-request): ${f.message}`)
            : proxyError('a2a', `A2A channel to ${f.peer} failed (${f.code}): ${f.message}`),
        );
      }
    });
  }

  async request(r: ProxyRequest): Promise<ProxyResponse> {
    const problem = requestProblem(r.method, r.path);
    if (problem) throw proxyError('invalid_argument', problem);
    const bodySize = r.bodyFile === undefined ? (r.body?.byteLength ?? 0) : fileSize(r.bodyFile);
    await this.#link.require();
    const streamId = randomBytes(8).toString('hex');
    const channel = `http-${streamId}`;
    const key = `${r.agentId}\n${channel}`;
    // Nothing goes out once the stream is over: its channel's keys are released then.
    let closed = false;
    const send = (f: HttpFrame['frame']) => {
      if (closed) return;
      const msg = { case: 'http', value: create(HttpFrameSchema, { streamId, frame: f }) } as const;
      try {
        this.#a2a
          .send(r.agentId, channel, msg)
          .catch((err: Error) => fail(this.#link.sendError(err, r.agentId) as PlannerError));
      } catch (err) {
        fail(this.#link.sendError(err as Error, r.agentId) as PlannerError);
      }
    };

    let credit = HTTP_WINDOW_BYTES;
    let wake: (() => void) | undefined;
    let settle: { resolve: (v: ProxyResponse) => void; reject: (e: Error) => void } | undefined;
    let failed: PlannerError | undefined;
    let head: { status: number; headers: Record<string, string | string[]> } | undefined;
    const chunks: Buffer[] = [];
    let size = 0;
    let file: { path: string; out: WriteStream } | undefined;

    const cleanup = () => {
      closed = true;
      clearTimeout(timer);
      clearInterval(liveness);
      this.#open.delete(key);
      r.signal?.removeEventListener('abort', onAbort);
      this.#a2a.closeChannel(r.agentId, channel);
    };
    const fail = (err: PlannerError) => {
      if (failed) return;
      failed = err;
      cleanup();
      file?.out.destroy();
      wake?.();
      settle?.reject(err);
    };
    const timer = setTimeout(() => {
      send({
        case: 'reset',
        value: { $typeName: 'nfltr.v1.HttpReset', code: 'cancelled', message: 'timeout' },
      });
      fail(
        proxyError(
          'timeout',
          `agent ${r.agentId} did not complete the response within ${r.timeoutMs} ms (timeout_ms)`,
        ),
      );
    }, r.timeoutMs + 1_000);
    const liveness = setInterval(
      () => send({ case: 'window', value: { $typeName: 'nfltr.v1.HttpWindow', bytes: 0 } }),
      LIVENESS_MS,
    );
    const onAbort = () => {
      send({
        case: 'reset',
        value: { $typeName: 'nfltr.v1.HttpReset', code: 'cancelled', message: 'call cancelled' },
      });
      fail(proxyError('invalid_argument', 'the call was cancelled'));
    };
    r.signal?.addEventListener('abort', onAbort, { once: true });

    const done = new Promise<ProxyResponse>((resolve, reject) => {
      settle = { resolve, reject };
    });
    // It may fail while the body is still being read from disk, before anyone awaits it.
    done.catch(() => {});
    const consumed = (n: number) =>
      send({ case: 'window', value: { $typeName: 'nfltr.v1.HttpWindow', bytes: n } });
    this.#open.set(key, {
      fail,
      onFrame: (f) => {
        if (failed) return;
        const v = f.frame;
        switch (v.case) {
          case 'window':
            credit += v.value.bytes;
            wake?.();
            return;
          case 'response':
            head = { status: v.value.status, headers: headerObject(v.value.headers) };
            return;
          case 'reset':
            return fail(proxyError(v.value.code as never, v.value.message));
          case 'data': {
            const data = Buffer.from(v.value.data);
            size += data.byteLength;
            if (!file && size > INLINE_BODY_BYTES) {
              mkdirSync(this.#dir, { recursive: true, mode: 0o700 });
              const path = join(this.#dir, `${streamId}.body`);
              file = { path, out: createWriteStream(path, { mode: 0o600 }) };
              for (const c of chunks.splice(0)) file.out.write(c);
            }
            if (file) file.out.write(data, () => consumed(data.byteLength));
            else {
              chunks.push(data);
              if (data.byteLength) consumed(data.byteLength);
            }
            if (!v.value.end) return;
            const trailers = v.value.trailers.length ? { trailers: headerObject(v.value.trailers) } : {};
            const h = head ?? { status: 502, headers: {} };
            cleanup();
            if (!file) return settle?.resolve({ ...h, ...trailers, body: { bytes: Buffer.concat(chunks) } });
            const { path, out } = file;
            out.end(() => settle?.resolve({ ...h, ...trailers, body: { file: path, size } }));
            return;
          }
        }
      },
    });

    const headers: HttpHeader[] = Object.entries(r.headers).map(([name, value]) =>
      create(HttpHeaderSchema, { name: name.toLowerCase(), value }),
    );
    if (bodySize > 0 && !r.headers['content-length'] && !r.headers['Content-Length'])
      headers.push(create(HttpHeaderSchema, { name: 'content-length', value: String(bodySize) }));
    send({
      case: 'request',
      value: {
        $typeName: 'nfltr.v1.HttpRequestHead',
        method: r.method,
        path: r.path,
        headers,
        timeoutMs: r.timeoutMs,
        hasBody: bodySize > 0,
        upgrade: '',
      },
    });
    if (bodySize === 0) return done;
    const source: Iterable<Uint8Array> | AsyncIterable<Uint8Array> =
      r.bodyFile === undefined
        ? slices(r.body ?? new Uint8Array())
        : createReadStream(r.bodyFile, { highWaterMark: HTTP_CHUNK_BYTES });
    try {
      for await (const data of source) {
        while (credit <= 0 && !failed) await new Promise<void>((res) => (wake = res));
        if (failed) break;
        credit -= data.byteLength;
        send({ case: 'data', value: { $typeName: 'nfltr.v1.HttpData', data, end: false, trailers: [] } });
      }
      send({
        case: 'data',
        value: { $typeName: 'nfltr.v1.HttpData', data: new Uint8Array(), end: true, trailers: [] },
      });
    } catch (err) {
      fail(
        proxyError('invalid_argument', `body_file ${r.bodyFile} cannot be read: ${(err as Error).message}`),
      );
    }
    return done;
  }
}
