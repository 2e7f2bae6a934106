/**
 * Helpers for the HTTP proxy tests: a local HTTP service with known behaviours, and `nfltr http`
 * processes in front of it.
 */
import type { ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { createWriteStream } from 'node:fs';
import {
  createServer,
  type IncomingHttpHeaders,
  type IncomingMessage,
  request,
  type Server,
} from 'node:http';
import type { AddressInfo } from 'node:net';
import { WebSocketServer } from 'ws';
import { rssMiB } from '../abuse/harness.js';
import { spawnNfltr } from '../helpers/processes.js';

export const MiB = 1024 * 1024;

/**
 * The service: `/echo` (method, path, headers, body size and sha256 as JSON), `/status/N`, `/slow`
 * (never answers), `/bytes?n=N` (N bytes of a known pattern, streamed), `/trailers` (chunked, with a
 * trailer), `/binary` (bytes that are not UTF-8), `/upload-trailers` (the request's trailers as JSON),
 * `/ws` (a WebSocket echo; any other upgrade is answered 400). It echoes `x-echo` back.
 */
export async function startService(): Promise<{ port: number; url: string; server: Server }> {
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://svc');
    const hash = createHash('sha256');
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.byteLength;
      hash.update(c);
    });
    req.on('end', () => {
      if (req.headers['x-echo']) res.setHeader('x-echo', req.headers['x-echo']);
      const status = /^\/status\/(\d{3})$/.exec(url.pathname);
      if (status)
        return res.writeHead(Number(status[1]), { 'content-type': 'text/plain' }).end(`status ${status[1]}`);
      if (url.pathname === '/slow') return; // never answers
      if (url.pathname === '/bytes') return pump(res, Number(url.searchParams.get('n')));
      if (url.pathname === '/binary') return res.end(Buffer.from([0xff, 0xfe, 0x00, 0x80, 0xc3]));
      if (url.pathname === '/upload-trailers')
        return res.end(JSON.stringify({ size, sha256: hash.digest('hex'), trailers: req.trailers }));
      if (url.pathname === '/trailers') {
        res.writeHead(200, { trailer: 'x-checksum', 'content-type': 'text/plain' });
        res.write('part one;');
        res.addTrailers({ 'x-checksum': 'abc123' });
        return res.end('part two');
      }
      res.setHeader('content-type', 'application/json');
      res.end(
        JSON.stringify({
          method: req.method,
          path: req.url,
          headers: req.headers,
          size,
          sha256: hash.digest('hex'),
        }),
      );
    });
  });
  const wss = new WebSocketServer({ noServer: true });
  server.on('upgrade', (req, socket, head) => {
    if (req.url !== '/ws')
      return void socket.end(
        'HTTP/1.1 400 Bad Request\r\ncontent-length: 11\r\nconnection: close\r\n\r\nnot upgrade',
      );
    wss.handleUpgrade(req, socket, head, (ws) => {
      ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  return { port, url: `http://127.0.0.1:${port}`, server };
}

/** Resolves when `server` gets a request for `path`: it has crossed the tunnel and is in flight there. */
export function requestArrives(server: Server, path: string): Promise<void> {
  return new Promise((resolve) => {
    const on = (req: IncomingMessage) => {
      if (new URL(req.url ?? '/', 'http://svc').pathname !== path) return;
      server.off('request', on);
      resolve();
    };
    server.on('request', on);
  });
}

/**
 * Runs `work` while sampling each process's RSS; resolves with how far each grew above its start
 * (MiB, by name). A process that buffered a body would grow by at least that body.
 */
export async function rssGrowth(
  pids: Record<string, number>,
  work: () => Promise<void>,
): Promise<Record<string, number>> {
  const start = Object.fromEntries(Object.entries(pids).map(([n, pid]) => [n, rssMiB(pid)]));
  const peak = { ...start };
  const timer = setInterval(() => {
    for (const [n, pid] of Object.entries(pids)) peak[n] = Math.max(peak[n]!, rssMiB(pid));
  }, 50);
  try {
    await work();
  } finally {
    clearInterval(timer);
  }
  return Object.fromEntries(Object.entries(peak).map(([n, p]) => [n, Math.round(p - start[n]!)]));
}

/** Writes n pattern bytes to a new file; its path. */
export async function patternFile(path: string, n: number): Promise<string> {
  const out = createWriteStream(path);
  pump(out, n);
  await once(out, 'finish');
  return path;
}

/** The byte at offset i of every generated body. */
export const patternByte = (i: number) => (i * 7 + 3) & 0xff;

function patternChunk(offset: number, n: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = patternByte(offset + i);
  return b;
}

/** sha256 of n pattern bytes. */
export function patternSha(n: number): string {
  const h = createHash('sha256');
  for (let at = 0; at < n; at += MiB) h.update(patternChunk(at, Math.min(MiB, n - at)));
  return h.digest('hex');
}

/** Writes n pattern bytes to a writable, minding backpressure. */
export function pump(out: NodeJS.WritableStream & { end(): void }, n: number): void {
  let at = 0;
  const next = () => {
    while (at < n) {
      const c = patternChunk(at, Math.min(MiB, n - at));
      at += c.byteLength;
      if (!out.write(c)) return void out.once('drain', next);
    }
    out.end();
  };
  next();
}

/** Uploads n pattern bytes (chunked) with node:http; resolves with status and body text. */
export function upload(
  url: string,
  headers: Record<string, string>,
  n: number,
): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    let answered = false;
    const req = request(url, { method: 'PUT', headers }, (res) => {
      answered = true;
      let text = '';
      res.setEncoding('utf8').on('data', (d: string) => {
        text += d;
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
      res.on('close', () => resolve({ status: res.statusCode ?? 0, text }));
    });
    // A server that answers before the body is in (an error) and closes makes the write fail (EPIPE):
    // its answer, when one comes, says more than the write error.
    req.on('error', (err) => setTimeout(() => answered || reject(err), 500));
    pump(req, n);
  });
}

/** GETs url with node:http and reads it whole; the trailers it ended with (fetch shows none). */
export async function trailersOf(url: string, headers: Record<string, string>): Promise<IncomingHttpHeaders> {
  const res = await new Promise<IncomingMessage>((resolve, reject) =>
    request(url, { headers }, resolve).on('error', reject).end(),
  );
  res.resume();
  await once(res, 'end');
  return res.trailers;
}

export interface Tunnel {
  child: ChildProcess;
  stderr: () => string;
  stop: () => Promise<void>;
}

/** `nfltr http ARGS`, resolved once it is connected to the relay. */
export async function startTunnel(args: string[], apiKey: string): Promise<Tunnel> {
  const t = await spawnNfltr('http', args, /serving/, {
    env: { ...process.env, NFLTR_API_KEY: apiKey },
    timeoutMs: 15_000,
  });
  return {
    child: t.child,
    stderr: t.stderr,
    stop: async () => {
      await t.stop();
    },
  };
}
