/**
 * Durability when a worker goes away: killed and restarted (its executor dies with it, the task fails
 * as worker_restarted), killed for good (the planner fails the task as worker_lost after its grace), or
 * cut off the relay for a while (an answer given meanwhile is delivered once it is back).
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
import { freePort, type Planner, startPlanner, startWorker, type WorkerProcess } from '../planner/helpers.js';
import { alive, expectExactlyOnce, LinkProxy, steadyExecutor, waitEvents, waitState } from './helpers.js';

// The cases wait on the product's own clocks (the frozen one ~20 s of silence) with a worker each: they
// run at once, sharing the relay and the planner.
describe.concurrent('durability - worker restart', () => {
  let relay: RelayProcess;
  let key: string;
  let planner: Planner;
  const cleanup: (() => Promise<unknown>)[] = [];
  const worker = (name: string, stateDir: string, server = relay.grpcAddr) =>
    startWorker({ server, apiKey: key, name, stateDir, mcpCommand: steadyExecutor() });
  const exited = (w: WorkerProcess) => w.child.exitCode !== null || w.child.signalCode !== null;
  const newPlanner = async (name: string, extra: string[] = []) => {
    const p = await startPlanner(
      ['--server', relay.grpcAddr, '--name', name, '--state-dir', tempDir('nfltr-planner-'), ...extra],
      key,
    );
    cleanup.push(() => p.close());
    await eventually(async () => (await p.toolNames()).includes('orchestrate_task'), 10_000, 'tools');
    return p;
  };

  beforeAll(async () => {
    const dataDir = tempDir();
    key = await createKey(dataDir, 'acct');
    relay = await startRelayProcess({ dataDir });
    planner = await newPlanner('wr-planner');
  });
  afterAll(async () => {
    await Promise.all(cleanup.map((c) => c().catch(() => {})));
    await relay?.stop();
  });

  it('worker SIGKILL mid-task - its executor dies with it; after the restart the task is failed/worker_restarted', async () => {
    const stateDir = tempDir('nfltr-worker-');
    const first = await worker('wr-killed', stateDir);
    cleanup.push(() => first.stop());
    const pidFile = join(tempDir(), 'executor.pid');
    await planner.ok('orchestrate_task', {
      agent_id: 'wr-killed',
      task_id: 'wr-interrupted',
      objective: 'count for a long time',
      constraints: { steps: 1_000, step_ms: 50, pid_file: pidFile },
    });
    await waitEvents(planner, 'wr-interrupted', 3);
    const executor = Number(readFileSync(pidFile, 'utf8'));
    expect(alive(executor)).toBe(true);

    first.child.kill('SIGKILL');
    await eventually(() => exited(first), 5_000, 'the worker to die');
    // Before any restart: the executor went with its worker.
    await eventually(() => !alive(executor), 5_000, `executor ${executor} to die with its worker`);

    const second = await worker('wr-killed', stateDir);
    cleanup.push(() => second.stop());
    const done = await waitState(planner, 'wr-interrupted', ['completed', 'failed', 'cancelled']);
    expect(done).toMatchObject({ state: 'failed', reason: 'worker_restarted' });
    expect(done.events.at(-1)).toMatchObject({
      state: 'failed',
      origin: 'worker',
      reason: 'worker_restarted',
    });
    expect(done.events.map((e) => e.seq)).toEqual(done.events.map((_, i) => i + 1));
  });

  it('worker gone for good - the planner fails its task with worker_lost after --worker-lost-grace', async () => {
    const impatient = await newPlanner('wr-impatient', ['--worker-lost-grace', '2s']);
    const w = await worker('wr-gone', tempDir('nfltr-worker-'));
    cleanup.push(() => w.stop());
    await impatient.ok('orchestrate_task', {
      agent_id: 'wr-gone',
      task_id: 'wr-orphan',
      objective: 'outlive my worker',
      constraints: { steps: 1_000, step_ms: 50 },
    });
    await waitEvents(impatient, 'wr-orphan', 2);
    w.child.kill('SIGKILL');
    const done = await waitState(impatient, 'wr-orphan', ['completed', 'failed', 'cancelled'], 15_000);
    expect(done).toMatchObject({ state: 'failed', reason: 'worker_lost' });
    expect(done.message).toMatch(/worker wr-gone has not been connected to the relay for \d+ s/);
    expect(done.events.at(-1)).toMatchObject({ origin: 'planner', reason: 'worker_lost' });
  });

  it('worker frozen (SIGSTOP) - still connected, answering nothing: its task fails as worker_lost in about 20 s', async () => {
    const w = await worker('wr-frozen', tempDir('nfltr-worker-'));
    cleanup.push(async () => {
      w.child.kill('SIGCONT');
      await w.stop();
    });
    await planner.ok('orchestrate_task', {
      agent_id: 'wr-frozen',
      task_id: 'wr-frozen-task',
      objective: 'freeze under me',
      constraints: { steps: 1_000, step_ms: 50 },
    });
    await waitEvents(planner, 'wr-frozen-task', 2);
    w.child.kill('SIGSTOP');
    const frozenAt = Date.now();
    const done = await waitState(planner, 'wr-frozen-task', ['completed', 'failed', 'cancelled'], 45_000);
    const ms = Date.now() - frozenAt;
    process.stderr.write(`frozen worker declared lost after ${ms} ms\n`);
    expect(done).toMatchObject({ state: 'failed', reason: 'worker_lost' });
    expect(done.message).toMatch(
      /worker wr-frozen is connected to the relay but has answered nothing for \d+ s/,
    );
    // 15 s of silence at checks every 5 s: ≤ 20 s, plus room for a loaded machine.
    expect(ms).toBeLessThan(35_000);
  }, 60_000);

  it('worker cut off the relay - waiting_input survives, and an answer given meanwhile is delivered once it is back', async () => {
    const proxy = new LinkProxy(await freePort(), relay.grpcAddr);
    await proxy.restore();
    cleanup.push(() => proxy.cut());
    const w = await worker('wr-away', tempDir('nfltr-worker-'), proxy.address);
    cleanup.push(() => w.stop());
    await planner.ok('orchestrate_task', {
      agent_id: 'wr-away',
      task_id: 'wr-answer-later',
      objective: 'ask while away',
      constraints: { steps: 3, step_ms: 20, ask_at: 2 },
    });
    await waitState(planner, 'wr-answer-later', ['waiting_input']);

    await proxy.cut();
    const answered = await planner.ok<{ answer_state: string }>('respond_to_worker', {
      task_id: 'wr-answer-later',
      content: { answer: 'given while you were away' },
    });
    expect(['answer sent', 'answer queued']).toContain(answered.answer_state);
    // The relay held the answer for its hold window, then reported the worker gone: the answer is lost
    // on the way, and only the planner's copy is left.
    // This worker's line: the planner shares its log with the cases running alongside.
    await eventually(
      () => /worker unreachable[^\n]* peer=wr-away/.test(planner.stderr()),
      10_000,
      'the relay to give up',
    );
    await proxy.restore();

    const done = await waitState(planner, 'wr-answer-later', ['completed', 'failed', 'cancelled']);
    expect(done.result?.structured).toMatchObject({ answer: 'given while you were away' });
    expectExactlyOnce(done, 3);
  });
});
