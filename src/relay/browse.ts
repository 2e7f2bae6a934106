/**
 * @module `/browse/<agent_id>/<path>`: the relay terminates a browser's (or curl's) HTTP request and
 * forwards it as HTTP proxy frames on the agent's control stream (proto/nfltr/v1/http.proto). Bodies
 * stream both ways under a per-request window, so a request holds at most one window of the relay's
 * memory (charged to the account like envelopes). This path is not end-to-end encrypted: the relay
 * sees the request and response (docs/security.md).
 */
import { randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { create } from '@bufbuild/protobuf';
import {
  HTTP_CHUNK_BYTES,
  HTTP_ROUTES_LABEL,
  HTTP_WINDOW_BYTES,
  type HttpFrame,
  HttpFrameSchema,
  headerList,
  headerObject,
  requestProblem,
  statusOfProxyError,
} from '../protocol/http-proxy.js';
import type { Logger } from '../util/log.js';
import type { Cluster } from './cluster.js';
import type { AgentConnection } from './connection.js';
import { decodeSegment } from './http-api.js';

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

export class Browse implements BrowseFrames {
  readonly #cluster: Cluster;
  readonly #log: Logger;
  readonly #defaultTimeoutMs: number;
  readonly #streams = new Map<AgentConnection, Map<string, Pending>>();

  constructor(opts: { cluster: Cluster; logger: Logger; timeoutMs: number }) {
    this.#cluster = opts.cluster;
    this.#log = opts.logger;
    this.#defaultTimeoutMs = opts.timeoutMs;
  }

  onFrame(conn: AgentConnection, f: HttpFrame): void {
    this.#streams.get(conn)?.get(f.streamId)?.onFrame(f);
  }

  onClosed(conn: AgentConnection): void {
    const streams = this.#streams.get(conn);
    this.#streams.delete(conn);
    for (const p of streams?.values() ?? [])
      p.fail('agent_gone', `agent ${conn.identity.agentId} disconnected before the response was complete`);
  }

  /** Serves one `/browse` request of an authenticated account; `keyHeader` carried its API key. */
  handle(req: IncomingMessage, res: ServerResponse, account: string, keyHeader: string): void {
    const url = req.url ?? '/';
    const m = /^\/browse\/([^/?]+)(.*)$/.exec(url);
    const agentId = decodeSegment(m?.[1] ?? '');
    const path = m?.[2] ? (m[2].startsWith('?') ? `/${m[2]}` : m[2]) : '/';
    const method = req.method ?? 'GET';
    const error = (code: string, message: string) => {
      if (res.headersSent) return void res.destroy(new Error(message));
      const body = `${JSON.stringify({ error: { code, message } })}\n`;
      res.writeHead(statusOfProxyError(code), { 'content-type': 'application/json', connection: 'close' });
      res.end(body);
    };
    if (agentId === undefined) return error('bad_request', 'malformed escape in the agent id');
    const problem = requestProblem(method, path);
    if (!agentId || problem) return error('bad_request', problem ?? 'expected /browse/<agent_id>/<path>');
    const timeoutText = req.headers[TIMEOUT_HEADER];
    const timeoutMs = timeoutText === undefined ? this.#defaultTimeoutMs : Number(timeoutText);
    if (!Number.isInteger(timeoutMs) || timeoutMs <= 0)
      return error(
        'bad_request',
        `${TIMEOUT_HEADER}: expected a positive number of milliseconds, got ${JSON.stringify(timeoutText)}`,
      );

    const conn = this.#cluster.local.lookup(account, agentId);
    if (!conn) {
      const elsewhere = this.#cluster.peers(account).some((p) => p.agentId === agentId);
      return elsewhere
        ? error(
            'agent_on_other_replica',
            `agent ${agentId} is connected to another relay replica; /browse reaches agents on the replica that serves it`,
          )
        : error('agent_not_connected', `agent ${agentId} is not connected under this account`);
    }
    // The agent's own claim; an agent that serves nothing would leave the request to time out.
    if (conn.labels[HTTP_ROUTES_LABEL] === undefined)
      return error(
        'not_exposed',
        `agent ${agentId} exposes no HTTP service: run \`nfltr http\` there, or start the worker with --expose`,
      );
    const streamId = randomBytes(8).toString('hex');
    const streams = this.#streams.get(conn) ?? new Map<string, Pending>();
    this.#streams.set(conn, streams);
    const send = (f: HttpFrame['frame']) => conn.sendHttp(create(HttpFrameSchema, { streamId, frame: f }));

    let finished = false;
    let credit = HTTP_WINDOW_BYTES;
    const finish = () => {
      finished = true;
      clearTimeout(timer);
      streams.delete(streamId);
      req.off('data', onData);
    };
    const fail = (code: string, message: string) => {
      if (finished) return;
      finish();
      send({ case: 'reset', value: { $typeName: 'nfltr.v1.HttpReset', code: 'cancelled', message } });
      error(code, message);
    };
    const timer = setTimeout(
      () => fail('timeout', `agent ${agentId} did not answer within ${timeoutMs} ms (${TIMEOUT_HEADER})`),
      timeoutMs + 1_000,
    );
    const onData = (chunk: Buffer) => {
      for (let at = 0; at < chunk.byteLength; at += HTTP_CHUNK_BYTES) {
        const data = chunk.subarray(at, at + HTTP_CHUNK_BYTES);
        if (
          !send({ case: 'data', value: { $typeName: 'nfltr.v1.HttpData', data, end: false, trailers: [] } })
        )
          return fail('agent_busy', `the relay's buffer for agent ${agentId} is full`);
        credit -= data.byteLength;
      }
      if (credit <= 0) req.pause();
    };
    streams.set(streamId, {
      fail,
      onFrame: (f) => {
        if (finished) return;
        const v = f.frame;
        switch (v.case) {
          case 'window':
            credit += v.value.bytes;
            if (credit > 0) req.resume();
            return;
          case 'response':
            clearTimeout(timer);
            res.writeHead(v.value.status, headerObject(v.value.headers));
            return;
          case 'data': {
            const n = v.value.data.byteLength;
            if (n > 0)
              res.write(v.value.data, () =>
                send({ case: 'window', value: { $typeName: 'nfltr.v1.HttpWindow', bytes: n } }),
              );
            if (v.value.end) {
              finish();
              if (v.value.trailers.length > 0) res.addTrailers(headerObject(v.value.trailers));
              res.end();
            }
            return;
          }
          case 'reset':
            finish();
            error(v.value.code, v.value.message);
            return;
        }
      },
    });
    res.on('close', () => {
      if (!finished) {
        finish();
        send({
          case: 'reset',
          value: { $typeName: 'nfltr.v1.HttpReset', code: 'cancelled', message: 'the client went away' },
        });
      }
    });

    const drop = [keyHeader, TIMEOUT_HEADER];
    const hasBody =
      req.headers['content-length'] !== undefined
        ? req.headers['content-length'] !== '0'
        : req.headers['transfer-encoding'] !== undefined;
    const headers = headerList(req.headers, drop);
    if (
      !send({
        case: 'request',
        value: { $typeName: 'nfltr.v1.HttpRequestHead', method, path, headers, timeoutMs, hasBody },
      })
    )
      return fail('agent_busy', `the relay's buffer for agent ${agentId} is full`);
    this.#log.debug('browse', { agent: agentId, method, path });
    if (!hasBody) return;
    req.on('data', onData);
    req.on('end', () => {
      if (!finished)
        send({
          case: 'data',
          value: { $typeName: 'nfltr.v1.HttpData', data: new Uint8Array(), end: true, trailers: [] },
        });
    });
  }
}
