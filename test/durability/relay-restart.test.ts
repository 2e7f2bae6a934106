/**
 * Durability across relay restarts: real relay, worker and planner processes; the relay is killed mid-task
 * and started again on the same ports and data dir.
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
import {
  alive,
  expectExactlyOnce,
  status,
  steadyExecutor,
  waitEvents,
  waitLinked,
  waitState,
} from './helpers.js';

describe('durability - relay restart', () => {
  let relay: RelayProcess;
  let key: string;
  let worker: WorkerProcess;
  let planner: Planner;
  /** Stops the relay, runs `meanwhile` while it is down, and starts it again on the same ports. */
  const restart = async (signal: NodeJS.Signals, meanwhile: () => void = () => {}) => {
    const { dataDir, grpcPort, httpPort } = relay;
    await relay.stop(signal);
    meanwhile();
    relay = await startRelayProcess({ dataDir, grpcPort, httpPort });
  };

  beforeAll(async () => {
    const dataDir = tempDir();
    key = await createKey(dataDir, 'acct');
    relay = await startRelayProcess({ dataDir, grpcPort: await freePort(), httpPort: await freePort() });
    [worker, planner] = await Promise.all([
      startWorker({
        server: relay.grpcAddr,
        apiKey: key,
        name: 'rr-worker',
        stateDir: tempDir(),
        maxTasks: 4,
        mcpCommand: steadyExecutor(),
      }),
      startPlanner(
        ['--server', relay.grpcAddr, '--name', 'rr-planner', '--state-dir', tempDir('nfltr-planner-')],
        key,
      ),
    ]);
    await eventually(async () => (await planner.toolNames()).includes('orchestrate_task'), 10_000, 'tools');
  });
  afterAll(async () => {
    await planner?.close();
    await worker?.stop();
    await relay?.stop();
  });

  it.each(['SIGKILL', 'SIGTERM'] as const)(
    'relay %s mid-task - the executor keeps working, the task completes exactly once',
    async (signal) => {
      const taskId = `across-${signal.toLowerCase()}`;
      const pidFile = join(tempDir(), 'executor.pid');
      await waitLinked(planner, 'rr-worker');
      await planner.ok('orchestrate_task', {
        agent_id: 'rr-worker',
        task_id: taskId,
        objective: 'count steadily',
        constraints: { steps: 25, step_ms: 100, pid_file: pidFile },
      });
      await waitEvents(planner, taskId, 4);
      const executor = Number(readFileSync(pidFile, 'utf8'));
      await restart(signal, () => expect(alive(executor)).toBe(true));
      const done = await waitState(planner, taskId, ['completed', 'failed', 'cancelled']);
      expectExactlyOnce(done, 25);
      expect(done.artifacts?.map((a) => a.name)).toEqual(['steps.txt']);
      expect(readFileSync(done.artifacts![0]!.path, 'utf8').split('\n').filter(Boolean)).toHaveLength(25);
    },
  );

  it('plaintext - with --a2a-e2ee=false both ends resync too, and the task completes exactly once', async () => {
    const [plainWorker, plainPlanner] = await Promise.all([
      startWorker({
        server: relay.grpcAddr,
        apiKey: key,
        name: 'rr-plain-worker',
        stateDir: tempDir(),
        mcpCommand: steadyExecutor(),
        args: ['--a2a-e2ee=false'],
      }),
      startPlanner(
        [
          '--server',
          relay.grpcAddr,
          '--name',
          'rr-plain-planner',
          '--state-dir',
          tempDir('nfltr-planner-'),
          '--a2a-e2ee=false',
        ],
        key,
      ),
    ]);
    try {
      await eventually(
        async () => (await plainPlanner.toolNames()).includes('orchestrate_task'),
        10_000,
        'tools',
      );
      await waitLinked(plainPlanner, 'rr-plain-worker');
      await plainPlanner.ok('orchestrate_task', {
        agent_id: 'rr-plain-worker',
        task_id: 'plain-across',
        objective: 'count in clear',
        constraints: { steps: 20, step_ms: 100 },
      });
      await waitEvents(plainPlanner, 'plain-across', 4);
      await restart('SIGKILL');
      expectExactlyOnce(
        await waitState(plainPlanner, 'plain-across', ['completed', 'failed', 'cancelled']),
        20,
      );
    } finally {
      await plainPlanner.close();
      await plainWorker.stop();
    }
  });

  it('relay down - waiting_input survives; an answer given meanwhile is queued and delivered after the restart', async () => {
    const taskId = 'answer-while-down';
    await waitLinked(planner, 'rr-worker');
    await planner.ok('orchestrate_task', {
      agent_id: 'rr-worker',
      task_id: taskId,
      objective: 'ask, then count',
      constraints: { steps: 4, step_ms: 50, ask_at: 2 },
    });
    await waitState(planner, taskId, ['waiting_input']);
    const { dataDir, grpcPort, httpPort } = relay;
    await relay.stop('SIGKILL');
    await eventually(
      async () => /relay unreachable/.test(await planner.fails('probe_worker', { agent_id: 'rr-worker' })),
      10_000,
      'the planner to notice the relay is gone',
    );
    const answered = await planner.ok<{ answer_state: string; state: string }>('respond_to_worker', {
      task_id: taskId,
      content: { answer: 'while the relay was down' },
    });
    expect(answered).toMatchObject({ answer_state: 'answer queued', state: 'waiting_input' });
    const waiting = await status(planner, taskId);
    expect(waiting.pending_question).toMatchObject({ question: 'step 2: go on?', answered: true });

    relay = await startRelayProcess({ dataDir, grpcPort, httpPort });
    const done = await waitState(planner, taskId, ['completed', 'failed', 'cancelled']);
    expect(done.result?.structured).toMatchObject({ answer: 'while the relay was down' });
    expectExactlyOnce(done, 4);
    expect(done.events.filter((e) => e.state === 'waiting_input')).toHaveLength(1);
  });
});
