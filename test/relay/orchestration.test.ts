/**
 * The relay's Control Tower API against a real relay process: authentication and scoping (API key,
 * dashboard link token), bounds with specific errors, the command queue, and the live feed.
 */
import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MAX_COMMAND_CHARS, MAX_DIGEST_CHARS, MAX_PENDING_COMMANDS } from '../../src/protocol/dashboard.js';
import { tokenHash } from '../../src/protocol/link-crypto.js';
import { createKey, type RelayProcess, startRelayProcess } from '../helpers/processes.js';

const sealed = (n = 64) => 'A'.repeat(n);

/** The answers' fields these tests read. */
interface Answer {
  error: { code: string; message: string };
  tasks: { planner_id: string; task_id: string }[];
  commands: { id: number }[];
  planner_id: string;
  stored: number;
  acked: number;
}

describe('relay - orchestration API', () => {
  let relay: RelayProcess;
  let key: string;
  let other: string;
  const api = (path: string, init: RequestInit & { auth?: Record<string, string> } = {}) =>
    fetch(`${relay.httpUrl}/api/v1/orchestration/${path}`, {
      ...init,
      headers: { 'content-type': 'application/json', ...(init.auth ?? { authorization: `ApiKey ${key}` }) },
    });
  const body = async (r: Response) => ({ status: r.status, json: (await r.json()) as Answer });

  beforeAll(async () => {
    relay = await startRelayProcess();
    key = await createKey(relay.dataDir, 'acme');
    other = await createKey(relay.dataDir, 'globex');
  });
  afterAll(async () => {
    await relay?.stop();
  });

  it('orchestration - registers, stores and lists sealed digests per account and planner', async () => {
    expect((await body(await api('tasks', { auth: {} }))).status).toBe(401);
    const bad = await body(
      await api('planners/p1', { method: 'PUT', body: JSON.stringify({ token_sha256: 'x' }) }),
    );
    expect(bad).toMatchObject({
      status: 400,
      json: { error: { message: expect.stringMatching(/token_sha256/) } },
    });
    const reg = await api('planners/p1', {
      method: 'PUT',
      body: JSON.stringify({ token_sha256: tokenHash('tok-1') }),
    });
    expect(reg.status).toBe(200);
    const push = await body(
      await api('planners/p1/digests', {
        method: 'POST',
        body: JSON.stringify({
          digests: [
            { task_id: 't1', sealed: sealed() },
            { task_id: 't2', sealed: sealed() },
          ],
        }),
      }),
    );
    expect(push).toMatchObject({ status: 200, json: { stored: 2 } });
    await api('planners/p2/digests', {
      method: 'POST',
      body: JSON.stringify({ digests: [{ task_id: 'x', sealed: sealed() }] }),
    });

    const all = await body(await api('tasks'));
    expect(all.json.tasks.map((t) => `${t.planner_id}/${t.task_id}`)).toEqual(['p1/t1', 'p1/t2', 'p2/x']);
    // Another account sees none of it.
    expect(
      (await body(await api('tasks', { auth: { authorization: `ApiKey ${other}` } }))).json.tasks,
    ).toEqual([]);
    // The link token opens its planner only.
    const viaToken = await body(await api('tasks', { auth: { 'x-dashboard-token': 'tok-1' } }));
    expect(viaToken.json.planner_id).toBe('p1');
    expect(viaToken.json.tasks).toHaveLength(2);
    const wrong = await body(await api('tasks?planner=p2', { auth: { 'x-dashboard-token': 'tok-1' } }));
    expect(wrong).toMatchObject({
      status: 403,
      json: { error: { message: 'this dashboard link opens planner p1, not p2' } },
    });
    expect((await body(await api('tasks', { auth: { 'x-dashboard-token': 'nope' } }))).status).toBe(403);
    // A token can neither push nor pull.
    expect((await api('planners/p1/commands', { auth: { 'x-dashboard-token': 'tok-1' } })).status).toBe(401);
  });

  it('orchestration - refuses malformed or oversized input with a specific error, and keeps serving', async () => {
    const post = (digests: unknown) =>
      api('planners/p1/digests', { method: 'POST', body: JSON.stringify({ digests }) });
    expect((await body(await post([]))).json.error.message).toMatch(/digests: expected 1 to/);
    expect((await body(await post([{ task_id: '../x', sealed: sealed() }]))).json.error.message).toMatch(
      /digests\[0\]\.task_id/,
    );
    expect((await body(await post([{ task_id: 't', sealed: 'not base64!' }]))).json.error.message).toMatch(
      /base64url/,
    );
    const big = await body(await post([{ task_id: 't', sealed: sealed(MAX_DIGEST_CHARS + 1) }]));
    expect(big).toMatchObject({ status: 413, json: { error: { code: 'too_large' } } });
    const huge = await api('planners/p1/digests', { method: 'POST', body: 'x'.repeat(2 * 1024 * 1024) });
    expect(huge.status).toBe(413);
    const garbage = await api('planners/p1/digests', { method: 'POST', body: '{nope' });
    expect((await body(garbage)).json.error.code).toBe('invalid_json');
    expect((await api('planners/bad%20id/digests', { method: 'POST', body: '{}' })).status).toBe(400);
    expect((await api('nothing-here')).status).toBe(404);
    expect((await body(await api('planners/%E0%A4%A/digests'))).json.error.message).toMatch(
      /malformed escape/,
    );
    expect((await api('tasks?after=-1')).status).toBe(400);
    expect((await api('tasks')).status).toBe(200);
  });

  it('relay - malformed escapes in /ai, /browse and orchestration paths are refused and the relay keeps serving', async () => {
    const bad = '%E0%A4%A';
    const revoke = await fetch(`${relay.httpUrl}/api/v1/ai/${bad}/revoke`, {
      method: 'POST',
      headers: { authorization: `ApiKey ${key}` },
    });
    expect(revoke.status).toBe(400);
    const browse = await fetch(`${relay.httpUrl}/browse/${bad}/x`, {
      headers: { authorization: `ApiKey ${key}` },
    });
    expect(browse.status).toBe(400);
    expect((await body(await api(`planners/${bad}`))).json.error.message).toMatch(/malformed escape/);
    const ws = await new Promise<string>((res) => {
      const sock = connect(relay.httpPort, '127.0.0.1', () =>
        sock.write(
          `GET /ai/${bad}/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n`,
        ),
      );
      let got = '';
      sock.on('data', (d) => {
        got += d.toString();
      });
      sock.on('close', () => res(got));
    });
    expect(ws).toMatch(/^HTTP\/1.1 400 /);
    expect((await fetch(`${relay.httpUrl}/healthz`)).status).toBe(200);
  });

  it('orchestration - commands queue to a bound, are pulled by the planner and leave once acked', async () => {
    const queue = (auth?: Record<string, string>, s = sealed()) =>
      api('planners/p3/commands', { method: 'POST', body: JSON.stringify({ sealed: s }), auth });
    await api('planners/p3', { method: 'PUT', body: JSON.stringify({ token_sha256: tokenHash('tok-3') }) });
    expect((await body(await queue({ 'x-dashboard-token': 'tok-3' }))).status).toBe(200);
    expect((await queue({ 'x-dashboard-token': 'tok-1' })).status).toBe(403);
    expect((await queue(undefined, sealed(MAX_COMMAND_CHARS + 1))).status).toBe(413);
    for (let i = 1; i < MAX_PENDING_COMMANDS; i++) expect((await queue()).status).toBe(200);
    const full = await body(await queue());
    expect(full).toMatchObject({ status: 429, json: { error: { code: 'queue_full' } } });
    const pulled = await body(await api('planners/p3/commands'));
    expect(pulled.json.commands).toHaveLength(MAX_PENDING_COMMANDS);
    const ids = pulled.json.commands.map((c) => c.id);
    const acked = await body(
      await api('planners/p3/commands/ack', { method: 'POST', body: JSON.stringify({ ids }) }),
    );
    expect(acked.json.acked).toBe(MAX_PENDING_COMMANDS);
    expect((await body(await api('planners/p3/commands'))).json.commands).toEqual([]);
    expect(
      (await api('planners/p3/commands/ack', { method: 'POST', body: JSON.stringify({ ids: ['x'] }) }))
        .status,
    ).toBe(400);
  });

  it('orchestration - the live feed sends each written digest and the fleet', async () => {
    const ctl = new AbortController();
    const res = await fetch(`${relay.httpUrl}/api/v1/orchestration/events?t=tok-1`, { signal: ctl.signal });
    expect(res.headers.get('content-type')).toBe('text/event-stream');
    const reader = res.body!.getReader();
    let text = '';
    const until = async (re: RegExp) => {
      while (!re.test(text)) {
        const { value, done } = await reader.read();
        if (done) throw new Error(`feed ended: ${text}`);
        text += Buffer.from(value).toString('utf8');
      }
    };
    await until(/event: fleet\ndata: \{"workers":\[\]\}/);
    await until(/"task_id":"t2"/); // the backlog
    await api('planners/p1/digests', {
      method: 'POST',
      body: JSON.stringify({ digests: [{ task_id: 'live', sealed: sealed() }] }),
    });
    await until(/id: \d+\nevent: digest\ndata: \{"planner_id":"p1","task_id":"live"/);
    // Only p1: the token's planner.
    expect(text).not.toContain('"planner_id":"p2"');
    ctl.abort();
  });
});
