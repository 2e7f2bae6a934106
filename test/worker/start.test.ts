/**
 * `nfltr worker` start-up, labels, adaptation of non-run_task servers, encryption settings, shutdown and
 * restart, against a real relay with real worker and executor processes.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { taskStateName } from '../../src/protocol/a2a.js';
import { eventually, nfltr, type RelayProcess, tempDir, withRelay } from '../helpers/processes.js';
import { fixtureCommand, startWorker, TestPlanner, type WorkerProcess } from './helpers.js';

const fixture = withRelay({ accounts: ['acme'] });
let relay: RelayProcess;
let key: string;
let planner: TestPlanner;
const workers: WorkerProcess[] = [];

async function worker(name: string, opts: { mcpCommand?: string; args?: string[]; stateDir?: string } = {}) {
  const w = await startWorker(relay, key, { name, ...opts });
  workers.push(w);
  return w;
}

async function peers() {
  const res = await fetch(`${relay.httpUrl}/api/v1/peers`, { headers: { authorization: `ApiKey ${key}` } });
  return ((await res.json()) as { peers: { agent_id: string; labels: Record<string, string> }[] }).peers;
}

beforeAll(async () => {
  ({ relay, key } = fixture);
  planner = await new TestPlanner(relay, key).start();
});

afterAll(async () => {
  await planner?.close();
  await Promise.all(workers.map((w) => w.stop()));
});

describe('worker start', () => {
  it('labels - user and automatic labels are visible in /api/v1/peers', async () => {
    await worker('w-labels', { args: ['--labels', 'gpu=a100,zone=eu-west', '--max-tasks', '2'] });
    const labels = await eventually(
      async () => (await peers()).find((p) => p.agent_id === 'w-labels')?.labels as Record<string, string>,
    );
    expect(labels).toMatchObject({
      gpu: 'a100',
      zone: 'eu-west',
      'coord.transfer': 'p2p', // --p2p-threshold is on by default (8 MiB)
      'nfltr.worker.protocol': 'a2a-mcp-v1',
      'nfltr.worker.tool': 'run_task',
      'nfltr.worker.max_tasks': '2',
    });
    expect(Number(labels['coord.cpu_cores'])).toBeGreaterThan(0);
    expect(Number(labels['coord.memory_mb']) % 256).toBe(0);
    const load = Number(labels['coord.load_pct']);
    expect(load >= 0 && load <= 100).toBe(true);
  });

  it('labels - coord.load_pct follows busy slots, refreshed every --heartbeat-interval', async () => {
    await worker('w-load', { args: ['--max-tasks', '1', '--heartbeat-interval', '200ms'] });
    const load = async () =>
      Number((await peers()).find((p) => p.agent_id === 'w-load')?.labels['coord.load_pct']);
    const id = await planner.startTask('w-load', {
      objective: 'keep busy',
      constraints: { sleep_ms: 20_000 },
    });
    await eventually(async () => (await load()) === 100, 5_000, 'load_pct 100 while the only slot is busy');
    await planner.cancel('w-load', id);
    await planner.waitEnd(id);
  });

  it('labels - a user label with an automatic key is refused at start with exit code 2', async () => {
    const r = await nfltr([
      'worker',
      ...['--server', relay.grpcAddr, '--api-key', key, '--name', 'w-bad'],
      ...['--labels', 'coord.cpu_cores=64', '--state-dir', tempDir()],
      ...['--mcp-command', fixtureCommand('scripted-executor.mjs')],
    ]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('"coord.cpu_cores" is set by the worker itself');
    expect((await peers()).some((p) => p.agent_id === 'w-bad')).toBe(false);
  });

  it('executor - a server with two tools and no run_task is refused at start, listing its tools', async () => {
    const r = await nfltr([
      'worker',
      ...['--server', relay.grpcAddr, '--api-key', key, '--name', 'w-two', '--state-dir', tempDir()],
      ...['--mcp-command', fixtureCommand('two-tools-server.mjs')],
    ]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('--mcp-tool');
    expect(r.stderr).toContain('search');
    expect(r.stderr).toContain('summarize');
    expect((await peers()).some((p) => p.agent_id === 'w-two')).toBe(false);
  });

  it('executor - a claude-mcp-serve-style server with one prompt tool is adapted', async () => {
    await worker('w-prompt', { mcpCommand: fixtureCommand('prompt-tool-server.mjs') });
    expect((await planner.probe('w-prompt')).tool).toBe('prompt');
    const id = await planner.startTask('w-prompt', {
      objective: 'summarise the payments incident',
      context: { service: 'payments-api' },
    });
    const end = await planner.waitEnd(id);
    expect(taskStateName(end.state), end.message).toBe('completed');
    expect(end.resultText).toMatch(/^echo: summarise the payments incident/);
    expect(end.resultText).toContain('"service": "payments-api"');
  });

  it('executor - a tool that requires task-based execution on a server without tasks is refused at start', async () => {
    const r = await nfltr([
      'worker',
      ...['--server', relay.grpcAddr, '--api-key', key, '--name', 'w-task', '--state-dir', tempDir()],
      ...['--mcp-command', `${fixtureCommand('prompt-tool-server.mjs')} --task-required`],
    ]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(
      'tool prompt requires task-based execution (execution.taskSupport "required"), but the executor does not declare tasks.requests.tools.call',
    );
  });

  it('executor - `nfltr shell-mcp` runs as this same nfltr; its logs come back as artifacts', async () => {
    const cwd = tempDir('nfltr-shell-cwd-');
    await worker('w-shell', { mcpCommand: `nfltr shell-mcp --cwd "${cwd}" --allow 'echo *'` });
    const id = await planner.startTask('w-shell', {
      objective: 'say hello',
      constraints: { commands: ['echo hello from shell-mcp'] },
    });
    const end = await planner.waitEnd(id);
    expect(taskStateName(end.state), end.message).toBe('completed');
    expect(end.artifacts.map((a) => a.name)).toEqual(
      expect.arrayContaining(['command-1.log', 'summary.json']),
    );
    expect(planner.artifact(id, 'command-1.log').toString()).toContain('hello from shell-mcp');
    const running = planner.events.get(id)!.filter((e) => taskStateName(e.state) === 'running');
    expect(running.some((e) => e.message.includes('hello from shell-mcp'))).toBe(true);
  });

  it('e2ee - an encrypting worker refuses a plaintext planner, naming --a2a-e2ee', async () => {
    await worker('w-enc');
    const plain = await new TestPlanner(relay, key, { e2ee: false }).start();
    try {
      const id = await plain.startTask('w-enc', { objective: 'in the clear' });
      const failure = await eventually(() => plain.failures.find((f) => f.peer === 'w-enc')!);
      expect(failure.code).toBe('plaintext_refused');
      expect(failure.message).toContain('--a2a-e2ee');
      expect(plain.events.get(id)).toBeUndefined();
    } finally {
      await plain.close();
    }
  });

  it('e2ee - with --a2a-e2ee false both ends talk in plaintext', async () => {
    await worker('w-plain', { args: ['--a2a-e2ee', 'false'] });
    const plain = await new TestPlanner(relay, key, { e2ee: false }).start();
    try {
      const id = await plain.startTask('w-plain', { objective: 'in the clear on purpose' });
      expect(taskStateName((await plain.waitEnd(id)).state)).toBe('completed');
    } finally {
      await plain.close();
    }
  });

  it('shutdown - SIGTERM refuses new tasks, then fails what outlives the grace, and exits 0', async () => {
    const w = await worker('w-drain', { args: ['--max-tasks', '2', '--shutdown-grace', '1s'] });
    const quick = await planner.startTask('w-drain', {
      objective: 'finishes in time',
      constraints: { sleep_ms: 300 },
    });
    const slow = await planner.startTask('w-drain', {
      objective: 'outlives the grace',
      constraints: { sleep_ms: 20_000 },
    });
    await planner.waitFor(slow, 'running');
    w.child.kill('SIGTERM');
    await eventually(async () => (await planner.probe('w-drain')).draining, 5_000, 'draining probe');
    const late = await planner.startTask('w-drain', { objective: 'too late' });
    expect((await planner.waitRefused(late)).reason).toBe('draining');
    expect(taskStateName((await planner.waitEnd(quick)).state)).toBe('completed');
    const end = await planner.waitEnd(slow);
    expect(taskStateName(end.state)).toBe('failed');
    expect(end.reason).toBe('worker_shutdown');
    expect(await w.exited).toBe(0);
  });

  it('restart - a killed worker restarts under its id; its interrupted task resumes as failed', async () => {
    const stateDir = tempDir('nfltr-worker-');
    const first = await worker('w-restart', { stateDir });
    const id = await planner.startTask('w-restart', {
      objective: 'interrupted',
      constraints: { sleep_ms: 3_000 },
    });
    await planner.waitFor(id, 'running');
    await first.stop('SIGKILL');
    await worker('w-restart', { stateDir });
    planner.endpoint.reset('w-restart'); // the restarted worker has no session with us
    await planner.resume('w-restart', id, 2);
    const end = await planner.waitEnd(id);
    expect(end).toMatchObject({ reason: 'worker_restarted' });
    await planner.startTask('w-restart', { taskId: id, objective: 'again' });
    expect((await planner.waitRefused(id)).reason).toBe('duplicate_task_id');
  });

  it('restart - a log that lost its unflushed accepted to a power cut gets it back before worker_restarted', async () => {
    const stateDir = tempDir('nfltr-worker-');
    const first = await worker('w-powercut', { stateDir });
    const id = await planner.startTask('w-powercut', {
      objective: 'cut off',
      constraints: { sleep_ms: 3_000 },
    });
    await planner.waitFor(id, 'accepted');
    await first.stop('SIGKILL');
    // What the disk may hold after a power cut right after `accepted` went out: the folder, no event.
    writeFileSync(join(stateDir, 'tasks', id, 'events.jsonl'), '');
    await worker('w-powercut', { stateDir });
    planner.endpoint.reset('w-powercut');
    await planner.resume('w-powercut', id, 1); // this planner has seq 1 (accepted) already
    const end = await planner.waitEnd(id);
    expect(end).toMatchObject({ seq: 2n, reason: 'worker_restarted' });
  });
});
