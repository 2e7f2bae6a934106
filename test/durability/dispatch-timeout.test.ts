/**
 * A dispatch the planner gives up on: the worker is frozen (SIGSTOP) past orchestrate_task's wait for
 * its answer, then resumed. One task results, known on both sides and cleanly cancelled, with no
 * replay storm in the worker's log. Frozen before any encrypted session, the handshake times out
 * instead; the id is then forgotten on both sides and usable again.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createKey,
  eventually,
  type RelayProcess,
  startRelayProcess,
  tempDir,
} from '../helpers/processes.js';
import { type Planner, startPlanner, startWorker, type WorkerProcess } from '../planner/helpers.js';
import { steadyExecutor, waitLinked, waitState } from './helpers.js';

const replayLines = (w: WorkerProcess) => (w.stderr().match(/replaying task events/g) ?? []).length;

// Both cases wait out the planner's own deadlines (15 s for the dispatch, 10 s for the handshake), each
// with a worker and planner of its own: they run at once.
describe.concurrent('durability - dispatch timeout', () => {
  let relay: RelayProcess;
  let planner: Planner;
  let worker: WorkerProcess;
  let workerDir: string;
  let key: string;

  beforeAll(async () => {
    const dataDir = tempDir();
    key = await createKey(dataDir, 'acct');
    relay = await startRelayProcess({ dataDir });
    workerDir = tempDir('nfltr-worker-');
    worker = await startWorker({
      server: relay.grpcAddr,
      apiKey: key,
      name: 'dt-worker',
      stateDir: workerDir,
      mcpCommand: steadyExecutor(),
    });
    planner = await startPlanner(
      ['--server', relay.grpcAddr, '--name', 'dt-planner', '--state-dir', tempDir('nfltr-planner-')],
      key,
    );
  });
  afterAll(async () => {
    if (worker?.child.exitCode === null) worker.child.kill('SIGCONT');
    await planner?.close().catch(() => {});
    await worker?.stop();
    await relay?.stop();
  });

  it('worker frozen past the dispatch wait, then resumed - one task, cancelled on both sides, no replay storm', async () => {
    await waitLinked(planner, 'dt-worker');
    worker.child.kill('SIGSTOP');
    const started = Date.now();
    const gaveUp = await planner.fails('orchestrate_task', {
      agent_id: 'dt-worker',
      task_id: 'dt-frozen',
      objective: 'count',
      constraints: { steps: 200, step_ms: 50, files: false },
    });
    expect(Date.now() - started).toBeGreaterThanOrEqual(14_000);
    expect(gaveUp).toMatch(/did not accept or refuse task dt-frozen within 15 s\. The dispatch is withdrawn/);
    // Known while the worker is away: not "unknown task", and the id is not given out again.
    expect(await planner.fails('get_task_status', { task_id: 'dt-frozen' })).toMatch(
      /task dt-frozen was withdrawn: worker dt-worker did not answer its dispatch in time/,
    );
    expect(
      await planner.fails('orchestrate_task', {
        agent_id: 'dt-worker',
        task_id: 'dt-frozen',
        objective: 'x',
      }),
    ).toMatch(/already used by this planner/);

    const before = replayLines(worker);
    worker.child.kill('SIGCONT');
    const done = await waitState(planner, 'dt-frozen', ['completed', 'failed', 'cancelled']);
    expect(done.state).toBe('cancelled');
    expect(done.events[0]).toMatchObject({ seq: 1, state: 'accepted', origin: 'worker' });
    expect(done.events.at(-1)).toMatchObject({ state: 'cancelled', origin: 'worker' });
    expect(done.events.map((e) => e.seq)).toEqual(done.events.map((_, i) => i + 1));

    // The worker got its acknowledgement: its log of the task is gone, the task marked delivered.
    const taskFile = join(workerDir, 'tasks', 'dt-frozen', 'task.json');
    await eventually(
      () => JSON.parse(readFileSync(taskFile, 'utf8')).delivered_at !== undefined,
      10_000,
      'the worker to drop the delivered log',
    );
    // Quiet afterwards: a few replays at most (answers to resumes), not a thousand a second; a second
    // of watching tells them apart.
    await new Promise((r) => setTimeout(r, 1_000));
    const replays = replayLines(worker) - before;
    expect(replays, worker.stderr().slice(-3_000)).toBeLessThanOrEqual(5);
    expect(worker.stderr()).not.toMatch(/event for an unknown task/);

    // The worker is usable again, and nothing of dt-frozen is left running.
    const next = await planner.ok<{ state: string }>('orchestrate_task', {
      agent_id: 'dt-worker',
      task_id: 'dt-next',
      objective: 'count',
      constraints: { steps: 3, step_ms: 20, files: false },
    });
    expect(next.state).toBe('accepted');
    expect((await waitState(planner, 'dt-next', ['completed', 'failed', 'cancelled'])).state).toBe(
      'completed',
    );
    const active = await planner.ok<{ tasks: { task_id: string }[] }>('list_active_tasks', {});
    expect(active.tasks.map((t) => t.task_id)).toEqual([]);
  }, 60_000);

  it('worker frozen before any encrypted session - the handshake times out; afterwards the id is usable on both sides', async () => {
    // A planner of its own: the case before, running alongside, checks that its planner has no task left.
    const [other, planner] = await Promise.all([
      startWorker({
        server: relay.grpcAddr,
        apiKey: key,
        name: 'dt-worker-2',
        stateDir: tempDir('nfltr-worker-'),
        mcpCommand: steadyExecutor(),
      }),
      startPlanner(
        ['--server', relay.grpcAddr, '--name', 'dt-planner-2', '--state-dir', tempDir('nfltr-planner-')],
        key,
      ),
    ]);
    try {
      other.child.kill('SIGSTOP');
      const gaveUp = await planner.fails('orchestrate_task', {
        agent_id: 'dt-worker-2',
        task_id: 'dt-handshake',
        objective: 'count',
        constraints: { steps: 3, step_ms: 20, files: false },
      });
      expect(gaveUp).toMatch(/handshake.*The dispatch is withdrawn/s);
      expect(await planner.fails('get_task_status', { task_id: 'dt-handshake' })).toMatch(/was withdrawn/);
      other.child.kill('SIGCONT');
      // Reconciled: the TaskStart never left the planner (it waited for the session), so the worker
      // answers "unknown task" and both sides forget the id; it can be used again.
      await eventually(
        async () => /unknown task/.test(await planner.fails('get_task_status', { task_id: 'dt-handshake' })),
        20_000,
        'the withdrawn dispatch to be dropped',
      );
      await waitLinked(planner, 'dt-worker-2');
      await planner.ok('orchestrate_task', {
        agent_id: 'dt-worker-2',
        task_id: 'dt-handshake',
        objective: 'count',
        constraints: { steps: 3, step_ms: 20, files: false },
      });
      expect((await waitState(planner, 'dt-handshake', ['completed', 'failed', 'cancelled'])).state).toBe(
        'completed',
      );
      expect(replayLines(other)).toBeLessThanOrEqual(5);
    } finally {
      other.child.kill('SIGCONT');
      await planner.close().catch(() => {});
      await other.stop();
    }
  }, 60_000);
});
