/**
 * `nfltr http`, `/browse` and `proxy_request` end to end: a real relay, real `nfltr http` and `nfltr
 * mcp` processes, a local HTTP service, and requests through fetch and the official MCP client.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { createReadStream, readFileSync, statSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { promisify } from 'node:util';
import { create } from '@bufbuild/protobuf';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { AgentClient } from '../../src/agent/index.js';
import { HttpFrameSchema } from '../../src/protocol/http-proxy.js';
import {
  createKey,
  eventually,
  nfltr,
  type RelayProcess,
  startRelayProcess,
  tempDir,
} from '../helpers/processes.js';
import { freePort, type Planner, scriptedExecutor, startPlanner, startWorker } from '../planner/helpers.js';
import {
  MiB,
  patternFile,
  patternSha,
  requestArrives,
  rssGrowth,
  startService,
  startTunnel,
  type Tunnel,
  trailersOf,
  upload,
} from './helpers.js';

const curl = async (args: string[]) => (await promisify(execFile)('curl', args, { encoding: 'utf8' })).stdout;

const fileSha = async (path: string) => {
  const hash = createHash('sha256');
  for await (const c of createReadStream(path)) hash.update(c as Buffer);
  return hash.digest('hex');
};

let relay: RelayProcess;
let key: string;
let otherKey: string;
let service: Awaited<ReturnType<typeof startService>>;
let web: Tunnel;
const cleanup: (() => Promise<unknown>)[] = [];
let planner: Planner;
/** What the relay sees of every routed envelope: proxy_request must show it no content. */
const captureFile = `${tempDir()}/capture.jsonl`;

const browse = (path: string, init: RequestInit = {}, k = key) =>
  fetch(`${relay.httpUrl}/browse/${path}`, { ...init, headers: { 'x-api-key': k, ...init.headers } });

beforeAll(async () => {
  relay = await startRelayProcess({ args: ['--capture-envelopes', captureFile] });
  [key, otherKey] = [await createKey(relay.dataDir, 'acme'), await createKey(relay.dataDir, 'other')];
  service = await startService();
  const closed = await freePort();
  web = await startTunnel(
    [
      service.url,
      '--server',
      relay.grpcAddr,
      '--name',
      'web',
      '--labels',
      'app=demo',
      '--route',
      `/down=http://127.0.0.1:${closed}`,
    ],
    key,
  );
  cleanup.push(
    () => web.stop(),
    () => relay.stop(),
    () => new Promise((r) => service.server.close(r)),
  );
}, 30_000);

afterAll(async () => {
  for (const f of cleanup.reverse()) await f();
});

describe('/browse', () => {
  it('forwards method, path, query, headers and body; strips the caller key and hop-by-hop headers', async () => {
    const res = await browse('web/echo/a?b=1', {
      method: 'POST',
      headers: { 'x-echo': 'hi', 'content-type': 'text/plain', 'x-custom': 'v' },
      body: 'hello',
    });
    expect(res.status).toBe(200);
    expect(res.headers.get('x-echo')).toBe('hi');
    const body = (await res.json()) as {
      method: string;
      path: string;
      headers: Record<string, string>;
      size: number;
    };
    expect(body).toMatchObject({ method: 'POST', path: '/echo/a?b=1', size: 5 });
    expect(body.headers['x-custom']).toBe('v');
    expect(body.headers['x-api-key']).toBeUndefined();
    expect(body.headers.host).toBe(`127.0.0.1:${service.port}`);
    for (const method of ['PUT', 'DELETE', 'PATCH']) {
      const r = (await (await browse('web/echo', { method })).json()) as { method: string };
      expect(r.method).toBe(method);
    }
    // With Authorization carrying the key, an X-Api-Key header is the service's own and passes on.
    const viaAuth = await fetch(`${relay.httpUrl}/browse/web/echo`, {
      headers: { authorization: `Bearer ${key}`, 'x-api-key': 'for-the-service' },
    });
    const h = ((await viaAuth.json()) as { headers: Record<string, string> }).headers;
    expect(h.authorization).toBeUndefined();
    expect(h['x-api-key']).toBe('for-the-service');
  });

  it('passes status codes and trailers through', async () => {
    for (const code of [201, 404, 500]) {
      const r = await browse(`web/status/${code}`);
      expect(r.status).toBe(code);
      expect(await r.text()).toBe(`status ${code}`);
    }
    const r = await browse('web/trailers');
    expect(await r.text()).toBe('part one;part two');
  });

  it('refuses without a key, another account, an unknown agent, a route to a closed port', async () => {
    const anon = await fetch(`${relay.httpUrl}/browse/web/echo`);
    expect(anon.status).toBe(401);
    const other = await browse('web/echo', {}, otherKey);
    expect(other.status).toBe(404);
    expect(((await other.json()) as { error: { code: string } }).error.code).toBe('agent_not_connected');
    const down = await browse('web/down/x');
    expect(down.status).toBe(502);
    const err = ((await down.json()) as { error: { code: string; message: string } }).error;
    expect(err.code).toBe('service_refused');
    expect(err.message).toMatch(/ECONNREFUSED/);
  });

  it('answers timeout when the service is slow, agent_gone when the agent leaves mid-request', async () => {
    const t0 = Date.now();
    const slow = await browse('web/slow', { headers: { 'x-nfltr-timeout-ms': '500' } });
    expect(slow.status).toBe(504);
    expect(((await slow.json()) as { error: { code: string } }).error.code).toBe('timeout');
    expect(Date.now() - t0).toBeLessThan(20_000);

    const doomed = await startTunnel([service.url, '--server', relay.grpcAddr, '--name', 'doomed'], key);
    const arrived = requestArrives(service.server, '/slow');
    const pending = browse('doomed/slow');
    await arrived;
    doomed.child.kill('SIGKILL');
    const gone = await pending;
    expect(gone.status).toBe(502);
    expect(((await gone.json()) as { error: { code: string } }).error.code).toBe('agent_gone');
  });

  it('serves curl: methods, headers, status, a streamed upload, trailers in the header dump', async () => {
    const url = (path: string) => `${relay.httpUrl}/browse/web/${path}`;
    const auth = ['-H', `x-api-key: ${key}`];
    const patch = await curl([
      '-sS',
      '-i',
      '-X',
      'PATCH',
      ...auth,
      '-H',
      'x-echo: curl',
      '--data-binary',
      'from curl',
      url('echo?c=1'),
    ]);
    expect(patch).toMatch(/^HTTP\/1\.1 200 /);
    expect(patch).toMatch(/\r\nx-echo: curl\r\n/i);
    expect(JSON.parse(patch.slice(patch.indexOf('\r\n\r\n') + 4))).toMatchObject({
      method: 'PATCH',
      path: '/echo?c=1',
      size: 9,
    });
    expect(await curl(['-sS', '-o', '/dev/null', '-w', '%{http_code}', ...auth, url('status/503')])).toBe(
      '503',
    );
    const n = 10 * MiB;
    const file = await patternFile(`${tempDir()}/curl-up.bin`, n);
    const up = await curl(['-sS', ...auth, '-T', file, url('echo')]);
    expect(JSON.parse(up)).toMatchObject({ size: n, sha256: patternSha(n) });
    const dump = await curl(['-sS', '-D', '-', '-o', '/dev/null', ...auth, url('trailers')]);
    expect(dump).toMatch(/\r\nx-checksum: abc123\r\n/i);
    const refused = await curl(['-sS', '-H', `x-api-key: ${otherKey}`, url('echo')]);
    expect(JSON.parse(refused).error.code).toBe('agent_not_connected');
  });

  it('answers bad_response, and keeps serving, when an agent answers what HTTP cannot carry', async () => {
    const rogue = new AgentClient({
      servers: [relay.grpcAddr],
      apiKey: key,
      agentId: 'rogue',
      kind: 'tunnel',
      labels: { 'nfltr.http.routes': '/=http://127.0.0.1:1' },
    });
    const answers: Record<string, { status: number; headers: { name: string; value: string }[] }> = {
      '/header': { status: 200, headers: [{ name: 'x-bad', value: 'a\r\nset-cookie: b' }] },
      '/name': { status: 200, headers: [{ name: 'bad name', value: 'v' }] },
      '/status': { status: 42, headers: [] },
    };
    rogue.on('http', (f) => {
      if (f.frame.case !== 'request') return;
      const value = answers[f.frame.value.path]!;
      rogue.sendHttp(create(HttpFrameSchema, { streamId: f.streamId, frame: { case: 'response', value } }));
    });
    await rogue.start().waitConnected();
    try {
      for (const path of Object.keys(answers)) {
        const r = await browse(`rogue${path}`);
        expect(r.status).toBe(502);
        expect(((await r.json()) as { error: { code: string } }).error.code).toBe('bad_response');
      }
      expect((await browse('web/echo')).status).toBe(200);
    } finally {
      await rogue.close();
    }
  });

  it('carries trailers both ways', async () => {
    expect(await trailersOf(`${relay.httpUrl}/browse/web/trailers`, { 'x-api-key': key })).toEqual({
      'x-checksum': 'abc123',
    });
    const up = await new Promise<string>((resolve, reject) => {
      const req = httpRequest(
        `${relay.httpUrl}/browse/web/upload-trailers`,
        { method: 'POST', headers: { 'x-api-key': key, trailer: 'x-sum' } },
        (res) => {
          let text = '';
          res.setEncoding('utf8').on('data', (d: string) => {
            text += d;
          });
          res.on('end', () => resolve(text));
        },
      );
      req.on('error', reject);
      req.write('some body');
      req.addTrailers({ 'x-sum': 'sent-last' });
      req.end();
    });
    expect(JSON.parse(up)).toMatchObject({ size: 9, trailers: { 'x-sum': 'sent-last' } });
  });

  it('streams 100 MiB down and up with the relay and agent memory flat', async () => {
    const n = 100 * MiB;
    const grew = await rssGrowth({ relay: relay.child.pid!, agent: web.child.pid! }, async () => {
      const down = await browse(`web/bytes?n=${n}`);
      expect(down.status).toBe(200);
      const hash = createHash('sha256');
      let size = 0;
      for await (const c of down.body as unknown as AsyncIterable<Uint8Array>) {
        size += c.byteLength;
        hash.update(c);
      }
      expect(size).toBe(n);
      expect(hash.digest('hex')).toBe(patternSha(n));
      const up = await upload(`${relay.httpUrl}/browse/web/echo`, { 'x-api-key': key }, n);
      expect(up.status).toBe(200);
      expect(JSON.parse(up.text)).toMatchObject({ size: n, sha256: patternSha(n) });
    });
    // A process that buffered a body would grow by at least its 100 MiB.
    expect(grew.relay).toBeLessThan(80);
    expect(grew.agent).toBeLessThan(80);
  }, 120_000);
});

describe('/browse WebSocket', () => {
  const wsUrl = (path: string) => `${relay.httpUrl.replace(/^http/, 'ws')}/browse/${path}`;
  /** The status and JSON error of an upgrade the relay or the service refused. */
  const refused = (ws: WebSocket) =>
    new Promise<{ status: number; body: string }>((resolve, reject) => {
      ws.once('open', () => reject(new Error('the upgrade was accepted')));
      ws.once('unexpected-response', (_req, res) => {
        let body = '';
        res.setEncoding('utf8').on('data', (d: string) => {
          body += d;
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      });
    });

  it('echoes text and binary messages larger than the window, and closes with the code sent', async () => {
    const ws = new WebSocket(wsUrl('web/ws'), { headers: { 'x-api-key': key } });
    const next = () =>
      new Promise<{ data: Buffer; binary: boolean }>((resolve) =>
        ws.once('message', (data: Buffer, binary) => resolve({ data, binary })),
      );
    await once(ws, 'open');
    ws.send('hello through the relay');
    const text = await next();
    expect(text.binary).toBe(false);
    expect(text.data.toString()).toBe('hello through the relay');
    const big = Buffer.alloc(5 * MiB);
    for (let i = 0; i < big.byteLength; i++) big[i] = (i * 13) & 0xff;
    for (let i = 0; i < 3; i++) {
      ws.send(big);
      const echo = await next();
      expect(echo.binary).toBe(true);
      expect(echo.data.equals(big)).toBe(true);
    }
    ws.close(4001, 'done');
    const [code] = (await once(ws, 'close')) as [number];
    expect(code).toBe(4001);
  }, 60_000);

  it('refuses with a JSON error: no key, another account, an agent not serving; passes the service refusal', async () => {
    const anon = await refused(new WebSocket(wsUrl('web/ws')));
    expect(anon.status).toBe(401);
    expect(JSON.parse(anon.body).error.code).toBe('unauthenticated');
    const other = await refused(new WebSocket(wsUrl('web/ws'), { headers: { 'x-api-key': otherKey } }));
    expect(other.status).toBe(404);
    expect(JSON.parse(other.body).error.code).toBe('agent_not_connected');
    const down = await refused(new WebSocket(wsUrl('web/down/ws'), { headers: { 'x-api-key': key } }));
    expect(down.status).toBe(502);
    expect(JSON.parse(down.body).error.code).toBe('service_refused');
    const no = await refused(new WebSocket(wsUrl('web/echo'), { headers: { 'x-api-key': key } }));
    expect(no).toEqual({ status: 400, body: 'not upgrade' });
  }, 30_000);
});

describe('proxy_request', () => {
  beforeAll(async () => {
    planner = await startPlanner(
      [
        '--proxy-url',
        relay.httpUrl,
        '--server',
        relay.grpcAddr,
        '--name',
        'planner',
        '--state-dir',
        tempDir(),
      ],
      key,
    );
    cleanup.push(() => planner.close());
  }, 30_000);

  it('lists the routes of HTTP peers', async () => {
    const { peers } = await planner.ok<{
      peers: { agent_id: string; kind: string; labels: Record<string, string> }[];
    }>('list_my_peers');
    const p = peers.find((x) => x.agent_id === 'web');
    expect(p?.kind).toBe('tunnel');
    expect(p?.labels['nfltr.http.routes']).toContain(`/=http://127.0.0.1:${service.port}`);
    expect(p?.labels.app).toBe('demo');
  });

  it('sends method, headers and body; returns status, headers, text or base64', async () => {
    const r = await eventually(
      () =>
        planner.ok<{ status: number; headers: Record<string, string>; body: string }>('proxy_request', {
          agent_id: 'web',
          method: 'POST',
          path: '/echo?x=1',
          headers: { 'x-echo': 'yo' },
          body: 'héllo',
        }),
      15_000,
      'proxy_request',
    );
    expect(r.status).toBe(200);
    expect(r.headers['x-echo']).toBe('yo');
    expect(JSON.parse(r.body)).toMatchObject({ method: 'POST', path: '/echo?x=1', size: 6 });
    // End to end encrypted: the relay routed envelopes for it, and none holds the path or the body.
    const seen = readFileSync(captureFile, 'utf8');
    expect(seen).toContain('"to":"web"');
    for (const secret of ['/echo?x=1', 'héllo', 'x-echo'])
      for (const line of seen.trim().split('\n'))
        expect(Buffer.from(JSON.parse(line).payload, 'base64').includes(Buffer.from(secret))).toBe(false);
    const s = await planner.ok<{ status: number; body: string }>('proxy_request', {
      agent_id: 'web',
      method: 'GET',
      path: '/status/404',
    });
    expect(s).toMatchObject({ status: 404, body: 'status 404' });
    const tr = await planner.ok<{ body: string; trailers: Record<string, string> }>('proxy_request', {
      agent_id: 'web',
      method: 'GET',
      path: '/trailers',
    });
    expect(tr).toMatchObject({ body: 'part one;part two', trailers: { 'x-checksum': 'abc123' } });
    const bin = await planner.ok<{ body_base64: string }>('proxy_request', {
      agent_id: 'web',
      method: 'GET',
      path: '/binary',
    });
    expect(Buffer.from(bin.body_base64, 'base64')).toEqual(Buffer.from([0xff, 0xfe, 0x00, 0x80, 0xc3]));
    const up = await planner.ok<{ body: string }>('proxy_request', {
      agent_id: 'web',
      method: 'PUT',
      path: '/echo',
      body_base64: Buffer.alloc(3 * MiB, 7).toString('base64'),
    });
    expect(JSON.parse(up.body)).toMatchObject({
      size: 3 * MiB,
      sha256: createHash('sha256')
        .update(Buffer.alloc(3 * MiB, 7))
        .digest('hex'),
    });
  }, 60_000);

  it('reports agent_gone when the agent leaves mid-request', async () => {
    const doomed = await startTunnel([service.url, '--server', relay.grpcAddr, '--name', 'doomed-peer'], key);
    const t0 = Date.now();
    const arrived = requestArrives(service.server, '/slow');
    const pending = planner.fails('proxy_request', {
      agent_id: 'doomed-peer',
      method: 'GET',
      path: '/slow',
      timeout_ms: 20_000,
    });
    await arrived;
    doomed.child.kill('SIGKILL');
    expect(await pending).toMatch(/agent_gone/);
    expect(Date.now() - t0).toBeLessThan(15_000);
  }, 40_000);

  it('streams 100 MiB down into a file and up from a file with relay, agent and planner memory flat', async () => {
    const n = 100 * MiB;
    const source = await patternFile(`${tempDir()}/up.bin`, n);
    const pids = { relay: relay.child.pid!, agent: web.child.pid!, planner: planner.pid! };
    const grew = await rssGrowth(pids, async () => {
      const down = await planner.ok<{ status: number; body_file: string; body_bytes: number }>(
        'proxy_request',
        { agent_id: 'web', method: 'GET', path: `/bytes?n=${n}`, timeout_ms: 50_000 },
      );
      expect(down.body_bytes).toBe(n);
      expect(statSync(down.body_file).size).toBe(n);
      const up = await planner.ok<{ status: number; body: string }>('proxy_request', {
        agent_id: 'web',
        method: 'PUT',
        path: '/echo',
        body_file: source,
        timeout_ms: 50_000,
      });
      expect(up.status).toBe(200);
      expect(JSON.parse(up.body)).toMatchObject({ size: n, sha256: patternSha(n) });
      expect(await fileSha(down.body_file)).toBe(patternSha(n));
    });
    expect(grew.relay).toBeLessThan(80);
    expect(grew.agent).toBeLessThan(80);
    expect(grew.planner).toBeLessThan(80);
    expect(
      await planner.fails('proxy_request', {
        agent_id: 'web',
        method: 'PUT',
        path: '/echo',
        body_file: 'rel',
      }),
    ).toMatch(/body_file must be an absolute path/);
    expect(
      await planner.fails('proxy_request', {
        agent_id: 'web',
        method: 'PUT',
        path: '/echo',
        body_file: `${tempDir()}/missing`,
      }),
    ).toMatch(/^invalid_argument: body_file .*missing cannot be read/);
  }, 150_000);

  it('names the cause: timeout, no HTTP service, unknown agent, strict arguments', async () => {
    // /browse refuses an agent that serves no HTTP at once, rather than letting the request time out.
    const notHttp = await browse('planner/x');
    expect(notHttp.status).toBe(502);
    expect(((await notHttp.json()) as { error: { code: string } }).error.code).toBe('not_exposed');
    expect(
      await planner.fails('proxy_request', {
        agent_id: 'web',
        method: 'GET',
        path: '/slow',
        timeout_ms: 500,
      }),
    ).toMatch(/^timeout: /);
    expect(await planner.fails('proxy_request', { agent_id: 'planner', method: 'GET', path: '/' })).toMatch(
      /^not_exposed: .*--expose/,
    );
    expect(await planner.fails('proxy_request', { agent_id: 'nobody', method: 'GET', path: '/' })).toMatch(
      /^agent_not_connected: /,
    );
    expect(
      await planner.fails('proxy_request', { agent_id: 'web', method: 'GET', path: '/', extra: 1 }),
    ).toMatch(/unknown argument/);
    expect(await planner.fails('proxy_request', { agent_id: 'web', method: 'GET', path: 'x' })).toMatch(
      /path must start/,
    );
  }, 30_000);
});

describe('nfltr worker --expose', () => {
  it('offers the local service to /browse and proxy_request without a second process', async () => {
    const worker = await startWorker({
      server: relay.grpcAddr,
      apiKey: key,
      name: 'exposing-worker',
      stateDir: tempDir(),
      mcpCommand: scriptedExecutor(),
      args: ['--expose', String(service.port)],
    });
    cleanup.push(() => worker.stop());
    const res = await eventually(
      async () => {
        const r = await browse('exposing-worker/echo?via=worker');
        return r.status === 200 && r;
      },
      10_000,
      'browse through the worker',
    );
    expect(((await (res as Response).json()) as { path: string }).path).toBe('/echo?via=worker');
    const peers = (await (
      await fetch(`${relay.httpUrl}/api/v1/peers`, { headers: { 'x-api-key': key } })
    ).json()) as {
      peers: { agent_id: string; labels: Record<string, string> }[];
    };
    const labels = peers.peers.find((p) => p.agent_id === 'exposing-worker')?.labels ?? {};
    expect(labels['nfltr.http.routes']).toBe(`/=http://localhost:${service.port}`);
    expect(labels['nfltr.worker.protocol']).toBe('a2a-mcp-v1');
    const r = await planner.ok<{ status: number; body: string }>('proxy_request', {
      agent_id: 'exposing-worker',
      method: 'GET',
      path: '/echo?via=proxy',
    });
    expect(r.status).toBe(200);
    expect(JSON.parse(r.body)).toMatchObject({ path: '/echo?via=proxy' });
  }, 40_000);
});

describe('nfltr http flags', () => {
  it('names the flag that is wrong', async () => {
    const env = { NFLTR_API_KEY: 'k' };
    const route = await nfltr(['http', '--server', '127.0.0.1:1', '--route', 'api=x'], { env });
    expect(route.code).toBe(2);
    expect(route.stderr).toMatch(/--route: expected PREFIX=URL/);
    const scheme = await nfltr(['http', 'ftp://host', '--server', '127.0.0.1:1'], { env });
    expect(scheme.stderr).toMatch(/only http and https services/);
    const expose = await nfltr(
      ['worker', '--expose', 'ftp://h', '--server', '127.0.0.1:1', '--mcp-command', 'x'],
      { env },
    );
    expect(expose.stderr).toMatch(/--expose: only http and https/);
  });
});
