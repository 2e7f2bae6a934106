/**
 * Exactly-once result files across planner kills: `nfltr mcp` is killed with SIGKILL at a random
 * moment of a multi-MiB result transfer (from its first partial file to just past the final event),
 * started again on the same state dir, and every task must end `completed` with every file verified.
 * Run by result-files-restart.test.ts (8 kills) and by the soak run (`SOAK_RUNS`).
 */
import { createHash } from 'node:crypto';
import { createReadStream, existsSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fixturePath } from '../helpers/fixtures.js';
import {
  createKey,
  eventually,
  type RelayProcess,
  startRelayProcess,
  tempDir,
} from '../helpers/processes.js';
import { freePort, type Planner, startPlanner, startWorker, type WorkerProcess } from '../planner/helpers.js';
import { waitState } from './helpers.js';

const EXECUTOR = `'${process.execPath}' '${fixturePath('artifact-executor.mjs')}'`;
/** What every task returns: two multi-MiB files (one in a subfolder) and an empty one. */
const WRITE = { 'a.bin': { mib: 8, seed: 1 }, 'logs/b.bin': { mib: 4, seed: 2 }, 'empty.bin': { mib: 0 } };

async function sha256(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const c of createReadStream(path)) h.update(c as Buffer);
  return h.digest('hex');
}

export function resultKillSuite(rounds: number): void {
  describe('durability - planner killed during a result transfer', () => {
    let relay: RelayProcess;
    let key: string;
    let worker: WorkerProcess;
    let planner: Planner | undefined;
    const stateDir = tempDir('nfltr-planner-');
    const workerDir = tempDir('nfltr-worker-');

    const start = async () => {
      const p = await startPlanner(
        ['--server', relay.grpcAddr, '--name', 'rk-planner', '--state-dir', stateDir],
        key,
      );
      await eventually(async () => (await p.toolNames()).includes('orchestrate_task'), 10_000, 'tools');
      return p;
    };
    const dispatch = (p: Planner, taskId: string) =>
      p.ok('orchestrate_task', {
        agent_id: 'rk-worker',
        task_id: taskId,
        objective: 'return files',
        constraints: { write: WRITE },
      });
    /** Resolves once the planner has started writing the task's result files. */
    const transferStarted = (taskId: string) =>
      eventually(
        () => existsSync(join(stateDir, 'artifacts', '.partial', taskId)),
        30_000,
        `the result transfer of ${taskId} to start`,
      );

    /** The task completed once, and each listed file is on the planner, byte-identical to the worker's. */
    const expectDelivered = async (taskId: string) => {
      const s = await waitState(planner!, taskId, ['completed', 'failed', 'cancelled'], 60_000);
      expect(s, JSON.stringify(s.events.at(-1))).toMatchObject({ state: 'completed' });
      expect(s.events.filter((e) => ['completed', 'failed', 'cancelled'].includes(e.state))).toHaveLength(1);
      expect(s.artifacts?.map((a) => a.name).sort()).toEqual(Object.keys(WRITE).sort());
      for (const a of s.artifacts ?? []) {
        const original = join(workerDir, 'tasks', taskId, 'output', a.name);
        expect(a.sha256).toBe(await sha256(original));
        expect(await sha256(a.path)).toBe(a.sha256);
        expect(a.path).toBe(join(stateDir, 'artifacts', taskId, a.name));
      }
    };

    beforeAll(async () => {
      const dataDir = tempDir();
      key = await createKey(dataDir, 'acct');
      relay = await startRelayProcess({ dataDir, grpcPort: await freePort(), httpPort: await freePort() });
      [worker, planner] = await Promise.all([
        startWorker({
          server: relay.grpcAddr,
          apiKey: key,
          name: 'rk-worker',
          stateDir: workerDir,
          mcpCommand: EXECUTOR,
        }),
        start(),
      ]);
    });
    afterAll(async () => {
      await planner?.close();
      await worker?.stop();
      await relay?.stop();
    });

    it(
      `kill -9 at ${rounds} random moments of the transfer - each task ends completed, its files verified`,
      async () => {
        // An undisturbed task measures how long the transfer takes here.
        await dispatch(planner!, 'rk-0');
        await transferStarted('rk-0');
        const t0 = Date.now();
        await waitState(planner!, 'rk-0', ['completed', 'failed', 'cancelled'], 60_000);
        const transferMs = Math.max(50, Date.now() - t0);
        await expectDelivered('rk-0');

        const moments: number[] = [];
        for (let i = 1; i <= rounds; i++) {
          const taskId = `rk-${i}`;
          await dispatch(planner!, taskId);
          await transferStarted(taskId);
          // Stratified: round i falls somewhere in the i-th slice of the transfer and a little past it.
          const at = Math.round(transferMs * 1.2 * ((i - 1 + Math.random()) / rounds));
          moments.push(at);
          await sleep(at);
          process.kill(planner!.pid!, 'SIGKILL');
          await planner!.close().catch(() => {});
          planner = await start();
          await expectDelivered(taskId);
        }
        console.log(`result transfer ${transferMs} ms; planner killed at ${moments.join(', ')} ms into it`);
      },
      60_000 + rounds * 20_000,
    );
  });
}
