/**
 * `npm run soak` (not part of `npm test`): the relay-kill chaos case, repeated. Each run dispatches a task
 * that reports many progress events and returns a file, kills the relay (SIGKILL or SIGTERM, alternating)
 * after a random number of events, starts it again on the same ports, and checks the finished task:
 * events gapless with no duplicate, every step once, the result and the file once. It prints how many of
 * the runs lost or duplicated anything; the answer must be 0. `SOAK_RUNS` sets the number of runs (20).
 * Then the planner-kill case of result files (result-kill.ts), with as many kills, and the artifact suite
 * (test/artifacts/e2e-suite.ts) with a 200 MiB file.
 */
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { artifactsEndToEnd } from '../artifacts/e2e-suite.js';
import {
  createKey,
  eventually,
  type RelayProcess,
  startRelayProcess,
  tempDir,
} from '../helpers/processes.js';
import { freePort, type Planner, startPlanner, startWorker, type WorkerProcess } from '../planner/helpers.js';
import { expectExactlyOnce, steadyExecutor, waitEvents, waitLinked, waitState } from './helpers.js';
import { resultKillSuite } from './result-kill.js';

const RUNS = Number(process.env.SOAK_RUNS ?? 20);
const STEPS = 30;

describe('soak - relay kill', () => {
  let relay: RelayProcess;
  let key: string;
  let worker: WorkerProcess;
  let planner: Planner;

  beforeAll(async () => {
    const dataDir = tempDir();
    key = await createKey(dataDir, 'acct');
    relay = await startRelayProcess({ dataDir, grpcPort: await freePort(), httpPort: await freePort() });
    [worker, planner] = await Promise.all([
      startWorker({
        server: relay.grpcAddr,
        apiKey: key,
        name: 'soak-worker',
        stateDir: tempDir(),
        mcpCommand: steadyExecutor(),
      }),
      startPlanner(
        ['--server', relay.grpcAddr, '--name', 'soak-planner', '--state-dir', tempDir('nfltr-planner-')],
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

  it(`relay kill at a random point, ${RUNS} runs - none loses or duplicates anything`, {
    timeout: RUNS * 30_000,
  }, async () => {
    const bad: string[] = [];
    for (let run = 1; run <= RUNS; run++) {
      const taskId = `soak-${run}`;
      const signal = run % 2 ? 'SIGKILL' : 'SIGTERM';
      // Anywhere from just after `accepted` to the last step, when the result file is on its way.
      const after = 1 + Math.floor(Math.random() * (STEPS + 1));
      try {
        await waitLinked(planner, 'soak-worker');
        await planner.ok('orchestrate_task', {
          agent_id: 'soak-worker',
          task_id: taskId,
          objective: 'count',
          constraints: { steps: STEPS, step_ms: 30 },
        });
        await waitEvents(planner, taskId, after);
        const { dataDir, grpcPort, httpPort } = relay;
        await relay.stop(signal);
        relay = await startRelayProcess({ dataDir, grpcPort, httpPort });
        const done = await waitState(planner, taskId, ['completed', 'failed', 'cancelled'], 30_000);
        expectExactlyOnce(done, STEPS);
        expect(done.artifacts?.map((a) => a.name)).toEqual(['steps.txt']);
        expect(readFileSync(done.artifacts![0]!.path, 'utf8').split('\n').filter(Boolean)).toHaveLength(
          STEPS,
        );
      } catch (err) {
        bad.push(`run ${run} (${signal} after ${after} events): ${(err as Error).message.split('\n')[0]}`);
      }
    }
    process.stdout.write(
      `soak: relay kill, ${RUNS} runs: ${bad.length} of ${RUNS} lost or duplicated anything\n` +
        bad.map((b) => `  ${b}\n`).join(''),
    );
    expect(bad).toEqual([]);
  });
});

resultKillSuite(RUNS);

// The artifact cases at full size: 200 MiB each way, and a relay killed while it streams.
artifactsEndToEnd(200);
