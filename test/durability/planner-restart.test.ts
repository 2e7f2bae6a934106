/**
 * Durability across planner restarts: `nfltr mcp` is killed with SIGKILL mid-task and started again
 * with the same --name and --state-dir; and a worker restarted after a task ended while its planner was
 * away still delivers the result.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createKey,
  eventually,
  nfltr,
  type RelayProcess,
  startRelayProcess,
  tempDir,
} from '../helpers/processes.js';
import { freePort, type Planner, startPlanner, startWorker, type WorkerProcess } from '../planner/helpers.js';
import { expectExactlyOnce, status, steadyExecutor, waitEvents, waitState } from './helpers.js';

describe('durability - planner restart', () => {
  let relay: RelayProcess;
  let key: string;
  let worker: WorkerProcess;
  let planner: Planner;
  const stateDir = tempDir('nfltr-planner-');
  const args = () => ['--server', relay.grpcAddr, '--name', 'pr-planner', '--state-dir', stateDir];
  const cleanup: (() => Promise<unknown>)[] = [];

  const kill9 = async (p: Planner) => {
    process.kill(p.pid!, 'SIGKILL');
    await p.close().catch(() => {});
  };
  const start = async () => {
    const p = await startPlanner(args(), key);
    await eventually(async () => (await p.toolNames()).includes('orchestrate_task'), 10_000, 'tools');
    return p;
  };

  beforeAll(async () => {
    const dataDir = tempDir();
    key = await createKey(dataDir, 'acct');
    relay = await startRelayProcess({ dataDir, grpcPort: await freePort(), httpPort: await freePort() });
    [worker, planner] = await Promise.all([
      startWorker({
        server: relay.grpcAddr,
        apiKey: key,
        name: 'pr-worker',
        stateDir: tempDir(),
        maxTasks: 4,
        mcpCommand: steadyExecutor(),
      }),
      start(),
    ]);
  });
  afterAll(async () => {
    await planner?.close();
    await Promise.all(cleanup.map((c) => c().catch(() => {})));
    await worker?.stop();
    await relay?.stop();
  });

  it('kill -9 mid-task, restart on the same state dir - every task listed, streams resume, answers and cancels work', async () => {
    const dispatch = (task_id: string, constraints: Record<string, unknown>) =>
      planner.ok('orchestrate_task', { agent_id: 'pr-worker', task_id, objective: task_id, constraints });
    await dispatch('pr-stream', { steps: 20, step_ms: 100 });
    await dispatch('pr-ask', { steps: 3, step_ms: 20, ask_at: 1 });
    await dispatch('pr-cancel', { steps: 1_000, step_ms: 50 });
    await Promise.all([
      waitEvents(planner, 'pr-stream', 3),
      waitState(planner, 'pr-ask', ['waiting_input']),
      waitEvents(planner, 'pr-cancel', 2),
    ]);

    await kill9(planner);
    planner = await start();

    const listed = await planner.ok<{ tasks: { task_id: string; state: string; question?: string }[] }>(
      'list_active_tasks',
      { all: true },
    );
    const byId = Object.fromEntries(listed.tasks.map((t) => [t.task_id, t]));
    expect(Object.keys(byId)).toEqual(expect.arrayContaining(['pr-stream', 'pr-ask', 'pr-cancel']));
    expect(byId['pr-ask']).toMatchObject({ state: 'waiting_input', question: 'step 1: go on?' });
    expect(
      await planner.fails('orchestrate_task', {
        agent_id: 'pr-worker',
        task_id: 'pr-stream',
        objective: 'x',
      }),
    ).toMatch(/already used by this planner/);

    expect(
      await planner.ok('respond_to_worker', { task_id: 'pr-ask', content: { answer: 'after the restart' } }),
    ).toMatchObject({ answer_state: 'answer sent' });
    const cancelled = await planner.ok('cancel_task', { task_id: 'pr-cancel' });
    expect(cancelled).toMatchObject({ state: 'cancelled', confirmed_by_worker: true });

    const asked = await waitState(planner, 'pr-ask', ['completed', 'failed', 'cancelled']);
    expect(asked.result?.structured).toMatchObject({ answer: 'after the restart' });
    expectExactlyOnce(asked, 3);
    expectExactlyOnce(await waitState(planner, 'pr-stream', ['completed', 'failed', 'cancelled']), 20);
    const c = await status(planner, 'pr-cancel');
    expect(c.events.at(-1)).toMatchObject({ state: 'cancelled', origin: 'worker' });
  });

  it('lock - a second planner on the same name and state dir fails fast, naming the holder', async () => {
    const r = await nfltr(['mcp', ...args()], { env: { NFLTR_API_KEY: key } });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`in use by another nfltr mcp (pid ${planner.pid}`);
    expect(r.stdout).toBe('');
  });

  it('worker restart after the task ended, before the planner acknowledged - the stored result is delivered', async () => {
    const workerDir = tempDir('nfltr-worker-');
    const spawnWorker = () =>
      startWorker({
        server: relay.grpcAddr,
        apiKey: key,
        name: 'pr-worker-2',
        stateDir: workerDir,
        mcpCommand: steadyExecutor(),
      });
    let w = await spawnWorker();
    cleanup.push(() => w.stop());
    await planner.ok('orchestrate_task', {
      agent_id: 'pr-worker-2',
      task_id: 'pr-unacked',
      objective: 'finish while nobody listens',
      constraints: { steps: 10, step_ms: 80, files: false },
    });
    await kill9(planner);
    const log = join(workerDir, 'tasks', 'pr-unacked', 'events.jsonl');
    await eventually(
      () => readFileSync(log, 'utf8').includes('TASK_STATE_COMPLETED'),
      15_000,
      'the task to end',
    );

    w.child.kill('SIGKILL');
    await eventually(() => w.child.exitCode !== null || w.child.signalCode !== null, 5_000, 'worker exit');
    w = await spawnWorker();
    planner = await start();

    const done = await waitState(planner, 'pr-unacked', ['completed', 'failed', 'cancelled']);
    expectExactlyOnce(done, 10);
    expect(done.result?.text).toBe('done: 10 steps');
    // Acknowledged: the worker drops the log, and remembers the task as delivered.
    await eventually(() => !existsSync(log), 10_000, 'the worker to drop the acknowledged log');
    const info = JSON.parse(readFileSync(join(workerDir, 'tasks', 'pr-unacked', 'task.json'), 'utf8'));
    expect(info).toMatchObject({ final_state: 'completed', final_seq: done.last_seq });
  });
});
