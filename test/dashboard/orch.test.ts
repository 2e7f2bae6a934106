/**
 * `nfltr orch` against a live planner: reads of the local store, the fleet from the relay, and commands
 * (dispatch, answer, cancel) that travel sealed through the relay to the running planner. Also the
 * planner's `--dashboard-digest status` and `--dashboard-commands=false`.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DashboardCrypto, keyOfLink, type TaskDigest } from '../../src/protocol/dashboard.js';
import { waitState } from '../durability/helpers.js';
import { eventually, nfltr, tempDir } from '../helpers/processes.js';
import { type Planner, startPlanner } from '../planner/helpers.js';
import { startTower, type Tower } from './helpers.js';

describe('nfltr orch - against a live planner', () => {
  let t: Tower;
  let orch: (args: string[]) => ReturnType<typeof nfltr>;
  const json = async <T>(args: string[]): Promise<T> => {
    const r = await orch([...args, '--json']);
    expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(0);
    return JSON.parse(r.stdout) as T;
  };

  beforeAll(async () => {
    t = await startTower('orch');
    orch = (args) =>
      nfltr(['orch', ...args, '--state-dir', t.stateDir], {
        env: { NFLTR_API_KEY: t.key },
      });
  }, 90_000);

  afterAll(async () => {
    await t?.stop();
  });

  it('prints the link again, lists the fleet, and dispatches, answers, watches and cancels tasks', async () => {
    const link = await orch(['dashboard']);
    expect(link.stdout.trim()).toBe(t.link);
    expect((await orch(['dashboard', '--task', 'd-1'])).stdout.trim()).toBe(`${t.link}&task=d-1`);

    const fleet = await json<{
      source: string;
      workers: { agent_id: string; labels: Record<string, string>; max_tasks: number }[];
    }>(['fleet', 'workers']);
    expect(fleet.source).toBe('relay');
    expect(fleet.workers).toEqual([
      expect.objectContaining({
        agent_id: 'orch-w1',
        max_tasks: 3,
        labels: expect.objectContaining({ repo: 'payments' }),
      }),
    ]);

    const objective = join(tempDir(), 'objective.md');
    writeFileSync(objective, 'Summarise the release #ask\n');
    const sent = await json<{ ok: boolean; task_id: string; type: string; worker: string }>([
      'dispatch',
      '--worker',
      'orch-w1',
      '--objective-file',
      objective,
      '--task-id',
      'd-1',
      '--timeout-ms',
      '120000',
    ]);
    expect(sent).toMatchObject({ ok: true, task_id: 'd-1', type: 'dispatch', worker: 'orch-w1' });

    // Waited for through the planner's own tools (a process per poll would load the machine), then read
    // with orch.
    await waitState(t.planner, 'd-1', ['waiting_input'], 30_000);
    const active = await json<{ tasks: { task_id: string; state: string; timeout_ms?: number }[] }>([
      'task',
      'list',
      '--active',
    ]);
    const waiting = active.tasks.find((x) => x.task_id === 'd-1' && x.state === 'waiting_input');
    expect(waiting?.timeout_ms).toBe(120_000);
    const st = await json<{ source: string; task: TaskDigest }>(['task', 'status', 'd-1']);
    expect(st.source).toBe('local');
    expect(st.task.objective).toBe('Summarise the release #ask');
    expect(st.task.pending?.question).toBe('Which environment should I target?');

    const answered = await orch(['task', 'answer', 'd-1', '--json', '{"answer":"staging-blue"}']);
    expect(answered.code, answered.stderr).toBe(0);
    expect(answered.stdout).toMatch(/^answer d-1: done: answer (sent|queued)/);
    const watched = await orch(['task', 'watch', 'd-1']);
    expect(watched.code).toBe(0);
    expect(watched.stdout).toMatch(/^#1 \S+ accepted\n/);
    expect(watched.stdout).toMatch(/ completed\n$/);
    const done = await json<{ task: TaskDigest & { events: unknown[] } }>([
      'task',
      'status',
      'd-1',
      '--events',
      '2',
    ]);
    expect(done.task.state).toBe('completed');
    expect(done.task.result?.text).toContain('staging-blue');
    expect(done.task.artifacts?.map((a) => a.name)).toEqual(['report.md']);
    expect(done.task.events).toHaveLength(2);

    // Answering again: no question is pending, said at once.
    const again = await orch(['task', 'answer', 'd-1', '--json', '{"answer":"x"}']);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/task d-1 is completed, not waiting_input/);

    writeFileSync(objective, 'Hold on #ask\n');
    expect(
      (
        await json<{ ok: boolean }>([
          'dispatch',
          '--worker',
          'orch-w1',
          '--objective-file',
          objective,
          '--task-id',
          'd-2',
        ])
      ).ok,
    ).toBe(true);
    await waitState(t.planner, 'd-2', ['waiting_input'], 30_000);
    expect((await json<{ task: TaskDigest }>(['task', 'status', 'd-2'])).task.state).toBe('waiting_input');
    const status = await json<{
      workers: number;
      slots: number;
      active_tasks: number;
      per_worker: { free_slots: number }[];
    }>(['fleet', 'status']);
    expect(status).toMatchObject({ workers: 1, slots: 3, active_tasks: 1 });
    expect(status.per_worker[0]!.free_slots).toBe(2);
    const cancelled = await json<{ ok: boolean; note: string }>([
      'task',
      'cancel',
      'd-2',
      '--reason',
      'not now',
    ]);
    expect(cancelled.ok).toBe(true);
    const after = await json<{ task: TaskDigest }>(['task', 'status', 'd-2']);
    expect(after.task.state).toBe('cancelled');

    const list = await json<{ tasks: { task_id: string; state: string }[] }>(['task', 'list']);
    expect(list.tasks.map((x) => [x.task_id, x.state]).sort()).toEqual([
      ['d-1', 'completed'],
      ['d-2', 'cancelled'],
    ]);
    const table = await orch(['task', 'list']);
    expect(table.stdout).toMatch(/^TASK\s+STATE\s+WORKER/);
  }, 180_000);

  it('refuses bad usage with exit 2, naming what to fix', async () => {
    const unknown = await orch(['task', 'status', 'nope']);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/no task nope in this planner's store/);
    const noFile = await orch(['dispatch', '--worker', 'orch-w1']);
    expect(noFile.code).toBe(2);
    expect(noFile.stderr).toMatch(/--objective-file/);
    const missing = await orch([
      'dispatch',
      '--worker',
      'orch-w1',
      '--objective-file',
      '/nonexistent/obj.md',
    ]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/--objective-file \/nonexistent\/obj.md: ENOENT/);
    const noState = await nfltr(['orch', 'dashboard', '--state-dir', tempDir()]);
    expect(noState.code).toBe(2);
    expect(noState.stderr).toMatch(/dashboard.json does not exist/);
  });

  it('a planner with --dashboard-digest status shows no text, and --dashboard-commands=false refuses commands', async () => {
    const stateDir = tempDir('nfltr-dash-p2-');
    const p2: Planner = await startPlanner(
      [
        '--server',
        t.relay.grpcAddr,
        '--proxy-url',
        t.relay.httpUrl,
        '--name',
        'quiet-planner',
        '--state-dir',
        stateDir,
        '--dashboard-digest',
        'status',
        '--dashboard-commands=false',
      ],
      t.key,
    );
    try {
      const link = await eventually(
        () => /dashboard: (http:\/\/\S+\/dashboard#k=[\w-]+)/.exec(p2.stderr())?.[1] ?? '',
        20_000,
        'link',
      );
      await p2.ok('orchestrate_task', {
        agent_id: 'orch-w1',
        task_id: 'q-1',
        objective: 'private words here',
      });
      const crypto = new DashboardCrypto(keyOfLink(link)!, 'quiet-planner');
      const digest = await eventually(
        async () => {
          const r = await fetch(`${t.relay.httpUrl}/api/v1/orchestration/tasks?planner=quiet-planner`, {
            headers: { 'x-dashboard-token': crypto.token },
          });
          const body = (await r.json()) as { tasks: { task_id: string; sealed: string }[] };
          const rec = body.tasks.find((x) => x.task_id === 'q-1');
          const d = rec && crypto.openDigest('q-1', rec.sealed);
          return d?.state === 'completed' ? d : undefined;
        },
        30_000,
        'the status digest of q-1',
      );
      expect(digest).toMatchObject({ level: 'status', worker: 'orch-w1', state: 'completed' });
      expect(digest?.objective).toBeUndefined();
      expect(digest?.events).toBeUndefined();
      expect(JSON.stringify(digest)).not.toContain('private words');

      const refused = await nfltr(['orch', 'task', 'cancel', 'q-1', '--state-dir', stateDir], {
        env: { NFLTR_API_KEY: t.key },
      });
      expect(refused.code).toBe(1);
      expect(refused.stdout).toMatch(/refused: this planner runs with --dashboard-commands=false/);
      expect(p2.stderr()).toMatch(/dashboard: cancel refused/);
    } finally {
      await p2.close();
    }
  }, 90_000);
});
