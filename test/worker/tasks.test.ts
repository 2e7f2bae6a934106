/**
 * `nfltr worker` end to end: a real relay, real worker processes and executors as real child processes
 * (test/fixtures), tasks sent by a stand-in planner over encrypted A2A channels.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { A2A_KIND } from '../../src/agent/index.js';
import { A2A_PROTOCOL, taskStateName } from '../../src/protocol/a2a.js';
import { isAlive } from '../../src/worker/index.js';
import { eventually, type RelayProcess, withRelay } from '../helpers/processes.js';
import { fixtureCommand, sha256, startWorker, TestPlanner, type WorkerProcess } from './helpers.js';

const fixture = withRelay({ accounts: ['acme'] });
let relay: RelayProcess;
let key: string;
let planner: TestPlanner;
let main: WorkerProcess;
let single: WorkerProcess;

beforeAll(async () => {
  ({ relay, key } = fixture);
  [main, single, planner] = await Promise.all([
    startWorker(relay, key, {
      name: 'w-main',
      args: ['--max-tasks', '3', '--labels', 'repo=payments', '--p2p-threshold', 'off'],
    }),
    startWorker(relay, key, { name: 'w-single', args: ['--max-tasks', '1'] }),
    new TestPlanner(relay, key).start(),
  ]);
});

afterAll(async () => {
  if (process.env.WORKER_DEBUG) console.log(main?.stderr(), single?.stderr());
  await planner?.close();
  await Promise.all([main?.stop(), single?.stop()]);
});

describe('worker tasks', () => {
  it('check_ready and --stall-after - probes report not ready with the fix; a silent task is noticed', async () => {
    const w = await startWorker(relay, key, {
      name: 'w-not-ready',
      mcpCommand: `${fixtureCommand('scripted-executor.mjs')} --not-ready "no key here"`,
      args: ['--stall-after', '400ms'],
    });
    try {
      expect(w.stderr()).toContain(
        'the executor is not ready for AI work: no key here; fix: set SCRIPTED_KEY and pass it with --executor-env SCRIPTED_KEY',
      );
      const p = await planner.probe('w-not-ready');
      expect(p).toMatchObject({
        available: false,
        executorHealthy: true,
        executorReady: false,
        executorReason: 'no key here',
        executorFix: 'set SCRIPTED_KEY and pass it with --executor-env SCRIPTED_KEY',
        tool: 'run_task',
      });
      const id = await planner.startTask('w-not-ready', {
        objective: 'wait quietly',
        constraints: { sleep_ms: 1_500, progress: 1 },
      });
      const end = await planner.waitEnd(id);
      expect(taskStateName(end.state)).toBe('completed');
      const stalls = planner.events
        .get(id)!
        .map((e) => e.message)
        .filter((m) => m.startsWith('no sign of life'));
      // The executor may still be starting at the first notice; the sleep after its first progress is one.
      expect(stalls.join('\n')).toMatch(
        /^no sign of life from the executor for \d+ms \(--stall-after 400ms\); the last was: running "started /m,
      );
    } finally {
      await w.stop();
    }
  });

  it('probe - answers live with slots, protocol, tool, labels and executor health', async () => {
    const p = await planner.probe('w-main');
    expect(p).toMatchObject({
      available: true,
      freeSlots: 3,
      maxTasks: 3,
      protocol: A2A_PROTOCOL,
      tool: 'run_task',
      executorHealthy: true,
      executorError: '',
      draining: false,
    });
    expect(p.labels).toMatchObject({
      repo: 'payments',
      'nfltr.worker.max_tasks': '3',
      'coord.transfer': 'a2a',
    });
  });

  it('scripted executor - progress, a question, an answer with a file, then completed with report.md', async () => {
    const id = await planner.startTask('w-main', {
      objective: 'write the release report',
      context: { service: 'payments-api' },
      constraints: { ask: true, question: 'Which environment?', progress: 3 },
      files: { 'changelog.txt': 'v1.2: fixes\n' },
    });
    const asked = await planner.waitFor(id, 'waiting_input');
    expect(asked.question).toBe('Which environment?');
    expect(JSON.parse(asked.requestedSchemaJson)).toMatchObject({
      properties: { answer: { type: 'string' } },
    });
    expect((await planner.probe('w-main')).freeSlots).toBe(2); // waiting_input keeps its slot

    await planner.respond('w-main', id, {
      content: { answer: 'staging' },
      files: { 'notes.md': 'be careful' },
    });
    const done = await planner.waitEnd(id);
    expect(taskStateName(done.state), done.message).toBe('completed');
    expect(done.resultText).toBe('done: write the release report (answer: staging)');
    const structured = JSON.parse(done.structuredJson);
    expect(structured).toMatchObject({ answer: 'staging', context: { service: 'payments-api' } });
    expect(structured.input_files).toEqual(['changelog.txt', 'notes.md']);

    const events = planner.events.get(id)!;
    expect(events.map((e) => Number(e.seq))).toEqual(events.map((_, i) => i + 1));
    const states = planner.states(id);
    expect(states[0]).toBe('accepted');
    expect(states.indexOf('waiting_input')).toBeLessThan(states.lastIndexOf('running'));
    const running = events.filter((e) => taskStateName(e.state) === 'running').map((e) => e.message);
    expect(running).toContain(`started ${id}: write the release report`);
    expect(running).toContain('answer received');
    expect(running).toContain('step 3 of 3');

    const report = done.artifacts.find((a) => a.name === 'report.md')!;
    const bytes = planner.artifact(id, 'report.md');
    expect(bytes.length).toBe(Number(report.size));
    expect(sha256(bytes)).toBe(report.sha256);
    expect(bytes.toString()).toContain('Answer: staging');
    // Task folder layout on the worker.
    const folder = join(main.stateDir, 'tasks', id);
    expect(readFileSync(join(folder, 'input', 'notes.md'), 'utf8')).toBe('be careful');
    expect(readFileSync(join(folder, 'events.jsonl'), 'utf8').trim().split('\n')).toHaveLength(events.length);
  });

  it('resume - re-sends the events after a seq, in order, with the same numbers', async () => {
    const id = await planner.startTask('w-main', { objective: 'resume me', constraints: { progress: 1 } });
    const end = await planner.waitEnd(id);
    const before = planner.events.get(id)!.length;
    await planner.resume('w-main', id, 1);
    await eventually(() => planner.events.get(id)!.length === before * 2 - 1, 10_000, 'resent events');
    const resent = planner.events.get(id)!.slice(before);
    expect(resent.map((e) => Number(e.seq))).toEqual(Array.from({ length: before - 1 }, (_, i) => i + 2));
    expect(resent.at(-1)!.resultText).toBe(end.resultText);
  });

  it('capacity - one more task than --max-tasks is refused with no_free_slots; the slot frees on completion', async () => {
    const first = await planner.startTask('w-single', {
      objective: 'hold the slot',
      constraints: { sleep_ms: 800 },
    });
    await planner.waitFor(first, 'accepted');
    const second = await planner.startTask('w-single', { objective: 'one too many' });
    const refused = await planner.waitRefused(second);
    expect(refused.reason).toBe('no_free_slots');
    expect(refused.message).toContain('0 of 1 slots free');
    expect(planner.events.get(second)).toBeUndefined();
    expect(await planner.probe('w-single')).toMatchObject({ available: false, freeSlots: 0 });

    expect(taskStateName((await planner.waitEnd(first)).state)).toBe('completed');
    const third = await planner.startTask('w-single', { objective: 'now there is room' });
    expect(taskStateName((await planner.waitEnd(third)).state)).toBe('completed');
  });

  it('duplicate task id - refused, finished or not', async () => {
    const id = await planner.startTask('w-main', { objective: 'once' });
    await planner.waitEnd(id);
    planner.refusals.delete(id);
    await planner.startTask('w-main', { taskId: id, objective: 'twice' });
    expect((await planner.waitRefused(id)).reason).toBe('duplicate_task_id');
  });

  it('invalid task - an empty objective or bad context JSON is refused with invalid_task', async () => {
    const id = await planner.startTask('w-main', { objective: '   ' });
    const refused = await planner.waitRefused(id);
    expect(refused).toMatchObject({ reason: 'invalid_task', message: 'objective is empty' });
  });

  it('executor failure - isError becomes failed executor_failed with the error text', async () => {
    const id = await planner.startTask('w-main', { objective: 'fail please', constraints: { fail: true } });
    const end = await planner.waitEnd(id);
    expect(taskStateName(end.state)).toBe('failed');
    expect(end).toMatchObject({
      reason: 'executor_failed',
      message: 'scripted failure: fail please',
      resultText: 'scripted failure: fail please',
    });
  });

  it('executor crash - failed executor_crashed naming the exit and the log tail; the slot is free', async () => {
    const id = await planner.startTask('w-single', { objective: 'crash now', constraints: { crash: true } });
    const end = await planner.waitEnd(id);
    expect(taskStateName(end.state)).toBe('failed');
    expect(end.reason).toBe('executor_crashed');
    expect(end.message).toContain('exited with code 3');
    expect(end.message).toContain('scripted-executor: crashing as asked');
    expect(await planner.probe('w-single')).toMatchObject({
      available: true,
      freeSlots: 1,
      executorHealthy: true,
    });
    expect(readFileSync(join(single.stateDir, 'tasks', id, 'executor.log'), 'utf8')).toContain(
      'crashing as asked',
    );
  });

  it('timeout - timeout_ms ends the task as failed timeout', async () => {
    const id = await planner.startTask('w-main', {
      objective: 'too slow',
      constraints: { sleep_ms: 30_000 },
      timeoutMs: 400,
    });
    const end = await planner.waitEnd(id);
    expect(taskStateName(end.state)).toBe('failed');
    expect(end.reason).toBe('timeout');
    expect(end.message).toContain('400 ms');
  });

  it('cancel - MCP cancellation reaches the executor, then cancelled with the reason', async () => {
    const marker = join(main.stateDir, 'cancel-marker');
    const id = await planner.startTask('w-main', {
      objective: 'wait for cancel',
      constraints: { sleep_ms: 30_000, cancel_marker: marker },
    });
    await planner.waitFor(id, 'running');
    await planner.cancel('w-main', id, 'planner changed course');
    const end = await planner.waitEnd(id);
    expect(end).toMatchObject({ reason: 'cancelled', message: 'planner changed course' });
    expect(taskStateName(end.state)).toBe('cancelled');
    expect(readFileSync(marker, 'utf8')).toBe('cancelled\n');
  });

  it('e2ee - a tampered frame on a task channel fails that task with e2ee_violation', async () => {
    const id = await planner.startTask('w-main', {
      objective: 'tamper with me',
      constraints: { sleep_ms: 20_000 },
    });
    await planner.waitFor(id, 'running');
    // A frame the worker cannot authenticate: the next seq on the channel, random bytes as ciphertext.
    planner.agent.send({
      to: 'w-main',
      channel: id,
      seq: 1n,
      kind: A2A_KIND.sealed,
      payload: randomBytes(64),
    });
    const end = await planner.waitEnd(id);
    expect(taskStateName(end.state)).toBe('failed');
    expect(end.reason).toBe('e2ee_violation');
    expect(end.message).toContain('tampered');
    expect((await planner.probe('w-main')).freeSlots).toBe(3);
  });

  it('cancel - kills an executor that ignores cancellation and SIGTERM, with its child process', async () => {
    const stubborn = await startWorker(relay, key, {
      name: 'w-stubborn',
      mcpCommand: fixtureCommand('worker-stubborn-executor.mjs'),
    });
    try {
      const id = await planner.startTask('w-stubborn', { objective: 'never ends' });
      await planner.waitFor(id, 'running');
      const pids = JSON.parse(
        readFileSync(join(stubborn.stateDir, 'tasks', id, 'output', 'pids.json'), 'utf8'),
      );
      expect(isAlive(pids.executor) && isAlive(pids.grandchild)).toBe(true);
      await planner.cancel('w-stubborn', id);
      const end = await planner.waitEnd(id);
      expect(taskStateName(end.state)).toBe('cancelled');
      expect(end.message).toBe('cancelled by the planner');
      expect(isAlive(pids.executor)).toBe(false);
      expect(isAlive(pids.grandchild)).toBe(false);
      expect((await planner.probe('w-stubborn')).freeSlots).toBe(1);
    } finally {
      await stubborn.stop();
    }
  });
});
