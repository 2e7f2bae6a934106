/**
 * `/browse` and `proxy_request` when the caller's relay replica is not the one holding the agent: two
 * real `nfltr relay` processes on the machine's PostgreSQL and NATS, `nfltr http` on one, callers on
 * the other.
 */
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import {
  createKey,
  eventually,
  nfltr,
  type RelayProcess,
  startRelayProcess,
  tempDir,
} from '../helpers/processes.js';
import {
  MiB,
  patternSha,
  startService,
  startTunnel,
  type Tunnel,
  trailersOf,
  upload,
} from '../http/helpers.js';
import { type Planner, startPlanner } from '../planner/helpers.js';
import { freshNatsUrl, freshSchema, serviceSkipReason } from '../relay/services.js';

const skip = (await serviceSkipReason('PostgreSQL')) ?? (await serviceSkipReason('NATS'));

const errorCode = async (res: Response) => ((await res.json()) as { error: { code: string } }).error.code;

describe.skipIf(skip !== undefined)('cluster: /browse and proxy_request across replicas', () => {
  let schema: Awaited<ReturnType<typeof freshSchema>>;
  const relays: RelayProcess[] = [];
  const stops: (() => Promise<unknown>)[] = [];
  let key: string;
  let service: Awaited<ReturnType<typeof startService>>;
  let web: Tunnel;
  /** The caller's replica: it does not hold `web`. */
  let front: RelayProcess;

  const browse = (path: string, init: RequestInit = {}, k = key, relay = front) =>
    fetch(`${relay.httpUrl}/browse/${path}`, { ...init, headers: { 'x-api-key': k, ...init.headers } });
  const keysCreate = (account: string) => createKey('', account, { store: schema.url });
  /** Resolves once `relay` lists `agentId` among the account's peers (presence travels on the bus). */
  const listed = (relay: RelayProcess, agentId: string) =>
    eventually(
      async () => {
        const res = await fetch(`${relay.httpUrl}/api/v1/peers`, { headers: { 'x-api-key': key } });
        return ((await res.json()) as { peers: { agent_id: string }[] }).peers.some(
          (p) => p.agent_id === agentId,
        );
      },
      10_000,
      `${agentId} listed`,
    );

  beforeAll(async () => {
    schema = await freshSchema();
    const busUrl = freshNatsUrl();
    const replica = () =>
      startRelayProcess({
        args: [
          '--store',
          schema.url,
          '--bus',
          busUrl,
          '--presence-heartbeat',
          '500ms',
          '--presence-ttl',
          '2s',
        ],
      });
    relays.push(await replica());
    relays.push(await replica());
    front = relays[0]!;
    key = await keysCreate('acme');
    service = await startService();
    web = await startTunnel([service.url, '--server', relays[1]!.grpcAddr, '--name', 'web'], key);
    stops.push(
      () => web.stop(),
      () => new Promise((r) => service.server.close(r)),
    );
    await listed(front, 'web');
  }, 60_000);

  afterAll(async () => {
    for (const stop of stops.reverse()) await stop();
    await Promise.all(relays.map((r) => r.stop()));
    await schema?.drop();
  });

  it('browse - reaches an agent held by another replica: method, headers, status, bodies and trailers', async () => {
    const res = await browse('web/echo/a?b=1', {
      method: 'POST',
      headers: { 'x-echo': 'hi' },
      body: 'hello',
    });
    expect(res.status).toBe(200);
    expect(res.headers.get('x-echo')).toBe('hi');
    expect(await res.json()).toMatchObject({ method: 'POST', path: '/echo/a?b=1', size: 5 });
    expect((await browse('web/status/418')).status).toBe(418);

    const n = 20 * MiB;
    const down = await browse(`web/bytes?n=${n}`);
    const hash = createHash('sha256');
    for await (const c of down.body as unknown as AsyncIterable<Uint8Array>) hash.update(c);
    expect(hash.digest('hex')).toBe(patternSha(n));
    const up = await upload(`${front.httpUrl}/browse/web/echo`, { 'x-api-key': key }, n);
    expect(JSON.parse(up.text)).toMatchObject({ size: n, sha256: patternSha(n) });

    expect(await trailersOf(`${front.httpUrl}/browse/web/trailers`, { 'x-api-key': key })).toEqual({
      'x-checksum': 'abc123',
    });
  }, 60_000);

  it('browse - a WebSocket through the replica that does not hold the agent', async () => {
    const ws = new WebSocket(`${front.httpUrl.replace(/^http/, 'ws')}/browse/web/ws`, {
      headers: { 'x-api-key': key },
    });
    await once(ws, 'open');
    const big = Buffer.alloc(3 * MiB, 5);
    ws.send('across replicas');
    const [text] = (await once(ws, 'message')) as [Buffer];
    expect(text.toString()).toBe('across replicas');
    ws.send(big);
    const [echo] = (await once(ws, 'message')) as [Buffer];
    expect(echo.equals(big)).toBe(true);
    ws.close(4002);
    expect(((await once(ws, 'close')) as [number])[0]).toBe(4002);
  }, 30_000);

  it('browse - errors across replicas keep their codes: timeout, agent gone mid-request', async () => {
    const slow = await browse('web/slow', { headers: { 'x-nfltr-timeout-ms': '500' } });
    expect(slow.status).toBe(504);
    expect(await errorCode(slow)).toBe('timeout');

    const doomed = await startTunnel([service.url, '--server', relays[1]!.grpcAddr, '--name', 'doomed'], key);
    await listed(front, 'doomed');
    const pending = browse('doomed/slow');
    await new Promise((r) => setTimeout(r, 500));
    doomed.child.kill('SIGKILL');
    const gone = await pending;
    expect(gone.status).toBe(502);
    expect(await errorCode(gone)).toBe('agent_gone');
  }, 30_000);

  it('proxy_request - from a planner on one replica to an agent on another', async () => {
    const planner: Planner = await startPlanner(
      [
        '--proxy-url',
        front.httpUrl,
        '--server',
        front.grpcAddr,
        '--name',
        'planner',
        '--state-dir',
        tempDir(),
      ],
      key,
    );
    stops.push(() => planner.close());
    const r = await eventually(
      () =>
        planner.ok<{ status: number; body: string }>('proxy_request', {
          agent_id: 'web',
          method: 'PUT',
          path: '/echo?via=planner',
          body: 'sealed',
        }),
      15_000,
      'proxy_request',
    );
    expect(r.status).toBe(200);
    expect(JSON.parse(r.body)).toMatchObject({ path: '/echo?via=planner', size: 6 });
  }, 30_000);

  it('revocation - ends requests of the key in flight and refuses new ones, on every replica', async () => {
    const doomedKey = await keysCreate('acme');
    const pending = browse('web/slow', { headers: { 'x-nfltr-timeout-ms': '20000' } }, doomedKey);
    const ws = new WebSocket(`${front.httpUrl.replace(/^http/, 'ws')}/browse/web/ws`, {
      headers: { 'x-api-key': doomedKey },
    });
    await once(ws, 'open');
    const closed = once(ws, 'close');
    await new Promise((r) => setTimeout(r, 300));
    const list = JSON.parse(
      (await nfltr(['keys', 'list', '--json', '--account', 'acme', '--store', schema.url])).stdout,
    ) as { keys: { id: string }[] };
    const id = list.keys.find((k) => doomedKey.startsWith(`nfk_${k.id}_`))!.id;
    expect((await nfltr(['keys', 'revoke', id, '--store', schema.url])).code).toBe(0);
    const cut = await pending;
    expect(cut.status).toBe(401);
    const body = (await cut.json()) as { error: { code: string; message: string } };
    expect(body.error).toMatchObject({ code: 'unauthenticated' });
    expect(body.error.message).toMatch(/revoked/);
    await closed;
    for (const relay of relays) expect((await browse('web/echo', {}, doomedKey, relay)).status).toBe(401);
  }, 30_000);
});
