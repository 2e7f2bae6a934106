/**
 * `--warm-executors`: real worker processes keep scripted executors (real child processes) started ahead
 * of their tasks. A warm session runs one task and is retired unless the executor declares `reuse`; an
 * executor declaring `fresh` gets a process per task with its environment; a warm one that dies is replaced.
 */
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { taskStateName } from '../../src/protocol/a2a.js';
import { descendantPids, isAlive } from '../../src/worker/index.js';
import { createKey, eventually, type RelayProcess, startRelayProcess } from '../helpers/processes.js';
import { fixtureCommand, startWorker, TestPlanner, type WorkerProcess } from './helpers.js';

let relay: RelayProcess;
let key: string;
let planner: TestPlanner;

beforeAll(async () => {
  relay = await startRelayProcess();
  key = await createKey(relay.dataDir, 'acme');
  planner = await new TestPlanner(relay, key).start();
});

afterAll(async () => {
  await planner?.close();
  await relay?.stop();
});

/** The worker's executor processes (the watchdog shell aside). */
function executors(w: WorkerProcess): number[] {
  return descendantPids(w.child.pid!).filter((pid) => {
    try {
      return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('scripted-executor.mjs');
    } catch {
      return false;
    }
  });
}

/** Waits until the worker has warmed (initialised) an executor other than `not`; returns its pid. */
const warmOne = (w: WorkerProcess, not: number[] = []): Promise<number> =>
  eventually(
    () => {
      const warmed = [...w.stderr().matchAll(/executor warm pid=(\d+)/g)].map((m) => Number(m[1]));
      return warmed.find((p) => !not.includes(p) && isAlive(p)) ?? 0;
    },
    20_000,
    'a warm executor',
  );

async function run(w: WorkerProcess, objective: string) {
  const id = await planner.startTask(w.name, { objective });
  const end = await planner.waitEnd(id, 20_000);
  expect(taskStateName(end.state), end.message).toBe('completed');
  return { id, result: JSON.parse(end.structuredJson) as { pid: number; env_task_id: string | null } };
}

async function withWorker(name: string, session: string, fn: (w: WorkerProcess) => Promise<void>) {
  const w = await startWorker(relay, key, {
    name,
    mcpCommand: `${fixtureCommand('scripted-executor.mjs')}${session ? ` --session ${session}` : ''}`,
    args: ['--warm-executors', '1', '--log-level', 'debug'],
  });
  try {
    await fn(w);
  } catch (err) {
    throw new Error(`${(err as Error).message}\nworker log:\n${w.stderr()}`, { cause: err });
  } finally {
    await w.stop();
  }
}

// Each case has a worker of its own: they run at once.
describe.concurrent('warm executors', () => {
  it('a task runs on the warm session started before it, which is then retired and replaced', async () => {
    await withWorker('w-warm', '', async (w) => {
      const first = await warmOne(w);
      const a = await run(w, 'first');
      expect(a.result.pid).toBe(first);
      // Started before its task: the task reaches it in the call's arguments, not in its environment.
      expect(a.result.env_task_id).toBeNull();
      await eventually(() => !isAlive(first), 10_000, 'the used session to be stopped');
      const second = await warmOne(w, [first]);
      const b = await run(w, 'second');
      // Isolation by default: never two tasks in one session.
      expect(b.result.pid).toBe(second);
      expect(b.result.pid).not.toBe(a.result.pid);
    });
  });

  it('an executor declaring reuse runs one task after another in the same session', async () => {
    await withWorker('w-reuse', 'reuse', async (w) => {
      const pid = await warmOne(w);
      const a = await run(w, 'first');
      const b = await run(w, 'second');
      expect([a.result.pid, b.result.pid]).toEqual([pid, pid]);
      expect(executors(w)).toEqual([pid]);
    });
  });

  it('an executor declaring fresh gets a process per task with the task environment', async () => {
    await withWorker('w-fresh', 'fresh', async (w) => {
      await eventually(() => /nfltr\/session fresh/.test(w.stderr()), 10_000, 'the warning');
      expect(executors(w)).toEqual([]);
      const a = await run(w, 'first');
      expect(a.result.env_task_id).toBe(a.id);
    });
  });

  it('a warm executor that crashes while waiting is replaced', async () => {
    await withWorker('w-crash', '', async (w) => {
      const first = await warmOne(w);
      process.kill(first, 'SIGKILL');
      const second = await warmOne(w, [first]);
      expect(w.stderr()).toContain('a warm executor exited while waiting for a task; warming another');
      const a = await run(w, 'after the crash');
      expect(a.result.pid).toBe(second);
    });
  });
});
