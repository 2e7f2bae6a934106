/**
 * `nfltr mcp` end to end: the official MCP client over stdio against the real planner process, a real
 * relay, and real `nfltr worker` processes running the scripted executor and `nfltr shell-mcp`.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitState as followState } from '../durability/helpers.js';
import {
  createKey,
  eventually,
  nfltr,
  type RelayProcess,
  startRelayProcess,
  tempDir,
} from '../helpers/processes.js';
import {
  ALL_TOOLS,
  freePort,
  type Planner,
  scriptedExecutor,
  startPlanner,
  startWorker,
  type WorkerProcess,
} from './helpers.js';

const sha256 = (path: string) => createHash('sha256').update(readFileSync(path)).digest('hex');

interface Status {
  task_id: string;
  state: string;
  last_seq: number;
  events: { seq: number; state: string; message?: string }[];
  pending_question?: { seq: number; question: string; schema: unknown; answered: boolean };
  result?: { text: string; structured?: Record<string, unknown> };
  artifacts?: { name: string; size: number; sha256: string; path: string }[];
  reason?: string;
  message?: string;
}

const waitState = (p: Planner, taskId: string, states: string[], ms = 15_000) =>
  followState<Status>(p, taskId, states, ms);

describe('nfltr mcp', () => {
  let relay: RelayProcess;
  let key: string;
  const cleanup: (() => Promise<unknown>)[] = [];

  beforeAll(async () => {
    const dataDir = tempDir();
    key = await createKey(dataDir, 'acct');
    // Fixed ports, so the relay can be restarted on the same address.
    relay = await startRelayProcess({ dataDir, grpcPort: await freePort(), httpPort: await freePort() });
  });
  afterAll(async () => {
    await Promise.all(cleanup.map((c) => c().catch(() => {})));
    await relay?.stop();
  });

  describe('the orchestration cycle', () => {
    let planner: Planner;
    let build: WorkerProcess;
    let shell: WorkerProcess;
    let stateDir: string;
    const plannerArgs = () => [
      '--proxy-url',
      relay.httpUrl,
      '--server',
      relay.grpcAddr,
      '--name',
      'cycle-planner',
      '--state-dir',
      stateDir,
    ];

    beforeAll(async () => {
      stateDir = tempDir('nfltr-planner-');
      const shellCwd = tempDir('nfltr-shell-cwd-');
      [build, shell, planner] = await Promise.all([
        startWorker({
          server: relay.grpcAddr,
          apiKey: key,
          name: 'w-build',
          labels: 'role=build,zone=eu',
          maxTasks: 2,
          stateDir: tempDir(),
          mcpCommand: scriptedExecutor(),
        }),
        startWorker({
          server: relay.grpcAddr,
          apiKey: key,
          name: 'w-shell',
          labels: 'role=test,zone=us',
          maxTasks: 1,
          stateDir: tempDir(),
          mcpCommand: `nfltr shell-mcp --cwd ${shellCwd} --allow 'echo *'`,
        }),
        startPlanner(plannerArgs(), key),
      ]);
      cleanup.push(
        () => build.stop(),
        () => shell.stop(),
        () => planner.close(),
      );
    });

    it('tools - every tool from the first tools/list, and no list_changed', async () => {
      expect(await planner.toolNames()).toEqual(ALL_TOOLS);
      expect(planner.listChanged()).toBe(0);
      const tools = (await planner.client.listTools()).tools;
      const orchestrate = tools.find((t) => t.name === 'orchestrate_task')!;
      expect(orchestrate.inputSchema.required).toEqual(['agent_id', 'objective']);
      expect(Object.keys(orchestrate.inputSchema.properties ?? {})).toEqual([
        'agent_id',
        'task_id',
        'objective',
        'context',
        'constraints',
        'artifact_files',
        'timeout_ms',
      ]);
      for (const t of tools) {
        expect(t.description?.length).toBeGreaterThan(100);
        expect(t.outputSchema).toBeDefined();
        expect(t.inputSchema.additionalProperties).toBe(false);
      }
    });

    it('discover - peers, workers only, and label selectors', async () => {
      const peers = await planner.ok<{ peers: { agent_id: string; kind: string; is_self?: boolean }[] }>(
        'list_my_peers',
      );
      expect(peers.peers.map((p) => [p.agent_id, p.kind])).toEqual(
        expect.arrayContaining([
          ['w-build', 'worker'],
          ['w-shell', 'worker'],
          ['cycle-planner', 'planner'],
        ]),
      );
      expect(peers.peers.find((p) => p.agent_id === 'cycle-planner')?.is_self).toBe(true);
      const workers = async (selector?: string) =>
        (
          await planner.ok<{ workers: { agent_id: string; labels: Record<string, string> }[] }>(
            'list_worker_peers',
            selector === undefined ? {} : { selector },
          )
        ).workers
          .map((w) => w.agent_id)
          .filter((id) => id.startsWith('w-'));
      expect(await workers()).toEqual(['w-build', 'w-shell']);
      expect(await workers('role=build')).toEqual(['w-build']);
      expect(await workers('zone!=eu,nfltr.worker.protocol=a2a-mcp-v1')).toEqual(['w-shell']);
      expect(await workers('zone=mars')).toEqual([]);
      expect(await planner.fails('list_worker_peers', { selector: 'zone=eu,,role' })).toMatch(
        /bad selector term "" in "zone=eu,,role": no = or != in it; expected key=value or key!=value/,
      );
      // An argument the schema does not name is refused, not ignored (it used to list every worker).
      expect(await planner.fails('list_worker_peers', { labels: 'role=build' })).toBe(
        'invalid arguments for list_worker_peers: unknown argument "labels": list_worker_peers takes selector',
      );
      expect(await planner.fails('probe_worker', { agent_id: 'w-build', verbose: true })).toMatch(
        /unknown argument "verbose": probe_worker takes agent_id/,
      );
    });

    it('probe - the live answer of a worker; unknown agents and non-workers are errors', async () => {
      const p = await planner.ok<Record<string, unknown>>('probe_worker', { agent_id: 'w-build' });
      expect(p).toMatchObject({
        agent_id: 'w-build',
        available: true,
        free_slots: 2,
        max_tasks: 2,
        protocol: 'a2a-mcp-v1',
        tool: 'run_task',
        executor_healthy: true,
      });
      expect(p.round_trip_ms).toBeGreaterThan(0);
      expect(await planner.fails('probe_worker', { agent_id: 'no-such-worker' })).toMatch(
        /unknown agent "no-such-worker".*workers connected now: .*w-build.*list_worker_peers/,
      );
      expect(await planner.fails('probe_worker', { agent_id: 'cycle-planner' })).toMatch(
        /"cycle-planner" is a planner, not a worker/,
      );
    });

    it('cycle - dispatch with files, running, waiting_input, reply, completed with verified artifacts', async () => {
      const inputs = tempDir('nfltr-inputs-');
      writeFileSync(join(inputs, 'test-summary.json'), '{"passed": 12}\n');
      mkdirSync(join(inputs, 'docs'));
      writeFileSync(join(inputs, 'docs', 'changelog.txt'), 'v1.2: fixes\n');
      const sent = await planner.ok<Record<string, unknown>>('orchestrate_task', {
        agent_id: 'w-build',
        task_id: 'release-report-20260414',
        objective: 'Generate a release summary and attach a markdown report',
        context: { service: 'payments-api', checks: ['unit', 'smoke'] },
        constraints: {
          ask: true,
          question: 'Which environment?',
          files: { 'out/data.json': '{"risks": 3}' },
        },
        artifact_files: [join(inputs, 'test-summary.json'), join(inputs, 'docs')],
        timeout_ms: 60_000,
      });
      expect(sent).toMatchObject({
        task_id: 'release-report-20260414',
        agent_id: 'w-build',
        state: 'accepted',
        last_seq: 1,
        timeout_ms: 60_000,
      });
      expect((sent.input_files as { name: string }[]).map((f) => f.name)).toEqual([
        'test-summary.json',
        'docs/changelog.txt',
      ]);

      const waiting = await waitState(planner, 'release-report-20260414', ['waiting_input']);
      expect(waiting.events.map((e) => e.state)).toContain('running');
      expect(waiting.pending_question).toMatchObject({ question: 'Which environment?', answered: false });
      expect(waiting.pending_question?.schema).toMatchObject({ properties: { answer: { type: 'string' } } });

      const active = await planner.ok<{ tasks: { task_id: string; state: string; question?: string }[] }>(
        'list_active_tasks',
      );
      expect(active.tasks).toContainEqual(
        expect.objectContaining({
          task_id: 'release-report-20260414',
          state: 'waiting_input',
          question: 'Which environment?',
        }),
      );

      const answered = await planner.ok<Record<string, unknown>>('respond_to_worker', {
        task_id: 'release-report-20260414',
        content: { answer: 'staging' },
      });
      // The worker may already be past the question when the answer's result is read (as in eras.test.ts).
      expect(answered).toMatchObject({ answered_seq: waiting.pending_question?.seq });
      expect(['waiting_input', 'running']).toContain(answered.state);

      const done = await waitState(planner, 'release-report-20260414', ['completed', 'failed']);
      expect(done.state).toBe('completed');
      expect(done.result?.text).toMatch(/answer: staging/);
      expect(done.result?.structured).toMatchObject({
        answer: 'staging',
        input_files: expect.arrayContaining(['test-summary.json', join('docs', 'changelog.txt')]),
        context: { service: 'payments-api', checks: ['unit', 'smoke'] },
      });
      const names = done.artifacts?.map((a) => a.name).sort();
      expect(names).toEqual(['out/data.json', 'report.md']);
      for (const a of done.artifacts!) {
        expect(a.path).toBe(join(stateDir, 'artifacts', 'release-report-20260414', ...a.name.split('/')));
        expect(sha256(a.path)).toBe(a.sha256);
        expect(readFileSync(a.path).length).toBe(a.size);
      }
      expect(readFileSync(done.artifacts!.find((a) => a.name === 'out/data.json')!.path, 'utf8')).toBe(
        '{"risks": 3}',
      );
      // Events are gapless from 1, and after_seq returns only newer ones.
      expect(done.events.map((e) => e.seq)).toEqual(done.events.map((_, i) => i + 1));
      const tail = await planner.ok<Status>('get_task_status', {
        task_id: 'release-report-20260414',
        after_seq: done.last_seq - 1,
      });
      expect(tail.events.map((e) => e.seq)).toEqual([done.last_seq]);

      // Finished tasks leave the active list, and stay listed with all: true.
      const after = await planner.ok<{ tasks: { task_id: string }[] }>('list_active_tasks');
      expect(after.tasks.map((t) => t.task_id)).not.toContain('release-report-20260414');
      const all = await planner.ok<{ tasks: { task_id: string; state: string }[] }>('list_active_tasks', {
        all: true,
      });
      expect(all.tasks).toContainEqual(
        expect.objectContaining({ task_id: 'release-report-20260414', state: 'completed' }),
      );

      expect(
        await planner.fails('respond_to_worker', { task_id: 'release-report-20260414', content: 'x' }),
      ).toMatch(/task release-report-20260414 is completed, not waiting_input/);
      expect(await planner.fails('cancel_task', { task_id: 'release-report-20260414' })).toMatch(
        /already completed; there is nothing to cancel/,
      );
    });

    it('cancel - the worker stops the task and the state is cancelled', async () => {
      await planner.ok('orchestrate_task', {
        agent_id: 'w-build',
        task_id: 'to-cancel',
        objective: 'a long job',
        constraints: { sleep_ms: 30_000 },
      });
      await waitState(planner, 'to-cancel', ['running']);
      const r = await planner.ok<Record<string, unknown>>('cancel_task', {
        task_id: 'to-cancel',
        reason: 'changed course',
      });
      expect(r).toMatchObject({ task_id: 'to-cancel', state: 'cancelled', confirmed_by_worker: true });
      const s = await planner.ok<Status>('get_task_status', { task_id: 'to-cancel' });
      expect(s).toMatchObject({ state: 'cancelled', reason: 'cancelled' });
      const probe = await planner.ok<{ free_slots: number }>('probe_worker', { agent_id: 'w-build' });
      expect(probe.free_slots).toBe(2);
    });

    it('wait_ms - get_task_status waits for the next event, and answers a final task at once', async () => {
      await planner.ok('orchestrate_task', {
        agent_id: 'w-build',
        task_id: 'watched',
        objective: 'a short job',
        constraints: { sleep_ms: 300 },
      });
      // Every call brings something newer than after_seq: it waited for it instead of answering empty.
      const states: string[] = [];
      let after = 0;
      for (let calls = 0; calls < 20 && states.at(-1) !== 'completed'; calls++) {
        const s = await planner.ok<Status>('get_task_status', {
          task_id: 'watched',
          after_seq: after,
          wait_ms: 20_000,
        });
        expect(s.last_seq).toBeGreaterThan(after);
        states.push(...s.events.map((e) => e.state));
        after = s.last_seq;
      }
      expect(states[0]).toBe('accepted');
      expect(states.at(-1)).toBe('completed');
      const final = await planner.ok<Status>('get_task_status', {
        task_id: 'watched',
        after_seq: after,
        wait_ms: 20_000,
      });
      expect(final).toMatchObject({ state: 'completed', events: [] });
    });

    it('capacity - waiting_input keeps its slot, so the next task is refused with no_free_slots', async () => {
      await planner.ok('orchestrate_task', {
        agent_id: 'w-shell',
        task_id: 'needs-approval',
        objective: 'run something outside the allowlist',
        constraints: { commands: ['echo first', 'sleep 0.1'] },
      });
      const s = await waitState(planner, 'needs-approval', ['waiting_input']);
      expect(s.pending_question?.question).toMatch(/run `sleep 0.1`\? yes\/no/);
      expect(
        await planner.fails('orchestrate_task', {
          agent_id: 'w-shell',
          objective: 'one more',
          constraints: { commands: ['echo hi'] },
        }),
      ).toMatch(/worker w-shell refused task task-\S+: no_free_slots/);
      await planner.ok('respond_to_worker', { task_id: 'needs-approval', content: { approve: true } });
      expect(
        await planner.fails('respond_to_worker', { task_id: 'needs-approval', content: { approve: true } }),
      ).toMatch(/already answered|not waiting_input/);
      const done = await waitState(planner, 'needs-approval', ['completed', 'failed']);
      expect(done.state).toBe('completed');
      expect(done.artifacts?.map((a) => a.name)).toEqual(['command-1.log', 'command-2.log', 'summary.json']);
    });

    it('respond - decline needs no content; accept without content is refused and the task keeps waiting', async () => {
      await planner.ok('orchestrate_task', {
        agent_id: 'w-build',
        task_id: 'declined',
        objective: 'ask, then finish',
        constraints: { ask: true },
      });
      await waitState(planner, 'declined', ['waiting_input']);
      expect(await planner.fails('respond_to_worker', { task_id: 'declined' })).toMatch(
        /content is required to accept the question of task declined.*action "decline"/,
      );
      expect(
        await planner.fails('respond_to_worker', { task_id: 'declined', content: { answer: 3 } }),
      ).toMatch(/answer must be string \(got number 3\).*still waiting_input/);
      await planner.ok('respond_to_worker', { task_id: 'declined', action: 'decline' });
      const done = await waitState(planner, 'declined', ['completed', 'failed']);
      expect(done).toMatchObject({ state: 'completed', result: { structured: { answer: '(decline)' } } });
    });

    it('timeout_ms - an unanswered task fails with reason timeout and frees its slot', async () => {
      await planner.ok('orchestrate_task', {
        agent_id: 'w-build',
        task_id: 'too-slow',
        objective: 'wait for an answer that never comes',
        constraints: { ask: true },
        timeout_ms: 800,
      });
      const s = await waitState(planner, 'too-slow', ['failed', 'completed']);
      expect(s).toMatchObject({ state: 'failed', reason: 'timeout' });
    });

    it('errors - specific messages for bad calls', async () => {
      expect(await planner.fails('get_task_status', { task_id: 'nope' })).toMatch(
        /unknown task "nope".*list_active_tasks/,
      );
      expect(await planner.fails('respond_to_worker', { task_id: 'nope', content: 'x' })).toMatch(
        /unknown task "nope"/,
      );
      expect(await planner.fails('cancel_task', { task_id: 'nope' })).toMatch(/unknown task "nope"/);
      expect(await planner.fails('orchestrate_task', { agent_id: 'w-build' })).toMatch(
        /objective is required: say what the worker should do/,
      );
      expect(await planner.fails('orchestrate_task', { agent_id: 'w-build', objective: '' })).toMatch(
        /objective is empty/,
      );
      expect(
        await planner.fails('orchestrate_task', {
          agent_id: 'w-build',
          task_id: 'release-report-20260414',
          objective: 'x',
        }),
      ).toMatch(
        /task_id "release-report-20260414" is already used by this planner \(worker w-build, state completed\)/,
      );
      expect(await planner.fails('orchestrate_task', { agent_id: 'ghost', objective: 'x' })).toMatch(
        /unknown agent "ghost"/,
      );
      expect(
        await planner.fails('orchestrate_task', { agent_id: 'w-build', task_id: '../x', objective: 'x' }),
      ).toMatch(/task_id "..\/x" is not usable/);
      expect(
        await planner.fails('orchestrate_task', {
          agent_id: 'w-build',
          objective: 'x',
          artifact_files: ['/definitely/not/here.txt'],
        }),
      ).toMatch(/artifact_files: cannot read \/definitely\/not\/here.txt: ENOENT; nothing was sent/);
      expect(await planner.fails('get_task_status', { task_id: 'x', after_seq: -1 })).toMatch(/after_seq/);
      expect(await planner.fails('get_task_status', { task_id: 'x', wait_ms: 60_000 })).toMatch(/wait_ms/);
    });

    it('lock - a second planner on the same state dir fails fast, naming the holder', async () => {
      const r = await nfltr(['mcp', ...plannerArgs()], { env: { NFLTR_API_KEY: key } });
      expect(r.code).toBe(1);
      expect(r.stderr).toContain(`in use by another nfltr mcp (pid ${planner.pid}`);
      expect(r.stdout).toBe('');
    });

    it('relay restart - a waiting task survives it: the planner resumes and the answer still goes through', async () => {
      await planner.ok('orchestrate_task', {
        agent_id: 'w-build',
        task_id: 'across-restart',
        objective: 'ask, then finish',
        constraints: { ask: true },
      });
      await waitState(planner, 'across-restart', ['waiting_input']);
      const { grpcPort, httpPort, dataDir } = relay;
      await relay.stop();
      relay = await startRelayProcess({ dataDir, grpcPort, httpPort });
      await eventually(
        async () => {
          const r = await planner.call('respond_to_worker', {
            task_id: 'across-restart',
            content: { answer: 'after' },
          });
          return !r.isError;
        },
        20_000,
        'an answer accepted after the relay restart',
      );
      const done = await waitState(planner, 'across-restart', ['completed', 'failed']);
      expect(done).toMatchObject({ state: 'completed', result: { structured: { answer: 'after' } } });
      expect(done.events.map((e) => e.seq)).toEqual(done.events.map((_, i) => i + 1));
    });

    it('restart - a planner restarted on the same state dir still has every task', async () => {
      // Its own tasks, one per way of ending, so that it runs alone too (-t).
      const dispatch = (task_id: string, constraints: Record<string, unknown>) =>
        planner.ok('orchestrate_task', { agent_id: 'w-build', task_id, objective: 'restart', constraints });
      await dispatch('restart-done', { files: { 'notes/a.txt': 'a' } });
      await waitState(planner, 'restart-done', ['completed']);
      await dispatch('restart-failed', { fail: true });
      await waitState(planner, 'restart-failed', ['failed']);
      await dispatch('restart-cancelled', { sleep_ms: 30_000 });
      await waitState(planner, 'restart-cancelled', ['running']);
      await planner.ok('cancel_task', { task_id: 'restart-cancelled' });
      await waitState(planner, 'restart-cancelled', ['cancelled']);
      const ended = {
        'restart-done': 'completed',
        'restart-failed': 'failed',
        'restart-cancelled': 'cancelled',
      };
      type Waited = { events: { task_id: string; state: string }[]; open_tasks: number };
      const before = await planner.ok<Waited>('wait_for_tasks', { wait_ms: 0 });
      expect(Object.fromEntries(before.events.map((e) => [e.task_id, e.state]))).toMatchObject(ended);
      await planner.close();
      planner = await startPlanner(plannerArgs(), key);
      await eventually(
        async () => (await planner.toolNames()).includes('list_active_tasks'),
        10_000,
        'tools',
      );
      const all = await planner.ok<{ tasks: { task_id: string; state: string }[] }>('list_active_tasks', {
        all: true,
      });
      expect(Object.fromEntries(all.tasks.map((t) => [t.task_id, t.state]))).toMatchObject(ended);
      const s = await planner.ok<Status>('get_task_status', { task_id: 'restart-done' });
      expect(s.artifacts?.map((a) => a.name).sort()).toEqual(['notes/a.txt', 'report.md']);
      // What wait_for_tasks returned before the restart is not returned again.
      expect(await planner.ok<Waited>('wait_for_tasks', { wait_ms: 300 })).toMatchObject({ events: [] });
      expect(await planner.fails('wait_for_tasks', { task_ids: ['nope'] })).toMatch(/unknown task "nope"/);
      expect(await planner.fails('wait_for_tasks', { wait_ms: 60_000 })).toMatch(/wait_ms/);
    });
  });

  // The four cases below each start planners of their own (the redialling one waits on its backoff): they
  // run at once, after the cycle.
  describe.concurrent('without --server', () => {
    it('lists every tool; discovery works over the HTTP API, the A2A tools name --server', async () => {
      const p = await startPlanner(['--proxy-url', relay.httpUrl], key);
      cleanup.push(() => p.close());
      expect(await p.toolNames()).toEqual(ALL_TOOLS);
      expect(await p.fails('orchestrate_task', { agent_id: 'w', objective: 'x' })).toMatch(
        /orchestrate_task cannot run now: no relay control address: start nfltr mcp with --server HOST:PORT \(or set NFLTR_SERVER\)/,
      );
      expect(await p.ok('list_my_peers')).toHaveProperty('peers');
      expect(await p.ok('list_worker_peers', { selector: 'role=none' })).toMatchObject({
        workers: [],
        count: 0,
      });
      const bad = await startPlanner(['--proxy-url', relay.httpUrl], 'nfk_0000000000000000_wrong');
      cleanup.push(() => bad.close());
      expect(await bad.fails('list_my_peers')).toMatch(/refused the API key.*NFLTR_API_KEY/);
    });
  });

  describe.concurrent('relay unreachable at start', () => {
    it('answers with the address tried, keeps redialling, and the tools work once the link comes up', async () => {
      const [grpcPort, httpPort] = [await freePort(), await freePort()];
      const dataDir = tempDir();
      const lateKey = await createKey(dataDir, 'late');
      const p = await startPlanner(
        [
          '--proxy-url',
          `http://127.0.0.1:${httpPort}`,
          '--server',
          `127.0.0.1:${grpcPort}`,
          '--name',
          'late-planner',
          '--state-dir',
          tempDir(),
        ],
        lateKey,
      );
      cleanup.push(() => p.close());
      expect(await p.toolNames()).toEqual(ALL_TOOLS);
      expect(await p.fails('list_my_peers')).toContain(
        `relay HTTP API unreachable at http://127.0.0.1:${httpPort}/api/v1/peers: ECONNREFUSED`,
      );
      expect(await p.fails('probe_worker', { agent_id: 'w' })).toMatch(
        new RegExp(
          `relay unreachable: not connected to the relay at 127\\.0\\.0\\.1:${grpcPort}.*keeps redialling`,
        ),
      );
      const late = await startRelayProcess({ dataDir, grpcPort, httpPort });
      cleanup.push(() => late.stop());
      await eventually(
        async () => (await p.ok<{ count: number }>('list_my_peers')).count === 1,
        15_000,
        'the planner on the relay',
      );
      expect(await p.fails('probe_worker', { agent_id: 'w' })).toMatch(/unknown agent "w"/);
      expect(p.listChanged()).toBe(0);

      // The link going away for a while keeps the tools; they say the relay is unreachable.
      await late.stop();
      await eventually(
        async () =>
          /relay unreachable: not connected to the relay at 127\.0\.0\.1:\d+/.test(
            await p.fails('probe_worker', { agent_id: 'w' }),
          ),
        10_000,
        'an unreachable-relay error',
      );
      expect(await p.toolNames()).toEqual(ALL_TOOLS);
    });
  });

  describe.concurrent('link gone for good', () => {
    it('a revoked key keeps every tool listed; the A2A tools name the key to fix', async () => {
      const revocable = await createKey(relay.dataDir, 'acct');
      const p = await startPlanner(
        [
          '--proxy-url',
          relay.httpUrl,
          '--server',
          relay.grpcAddr,
          '--name',
          'doomed',
          '--state-dir',
          tempDir(),
        ],
        revocable,
      );
      cleanup.push(() => p.close());
      await eventually(
        async () => /unknown agent/.test(await p.fails('probe_worker', { agent_id: 'w' })),
        10_000,
        'the link up',
      );
      const keyId = revocable.split('_')[1]!;
      expect((await nfltr(['keys', 'revoke', keyId, '--data-dir', relay.dataDir])).code).toBe(0);
      await eventually(
        async () => /the relay refused this planner/.test(await p.fails('list_active_tasks')),
        10_000,
        'a refused-key error',
      );
      expect(await p.fails('orchestrate_task', { agent_id: 'w', objective: 'x' })).toMatch(
        /fix the API key \(--api-key or NFLTR_API_KEY/,
      );
      expect(await p.toolNames()).toEqual(ALL_TOOLS);
      expect(p.listChanged()).toBe(0);
    });
  });

  describe.concurrent('unusable key at start', () => {
    it('an empty or unexpanded key still answers initialize; every tool says what to fix', async () => {
      // biome-ignore lint/suspicious/noTemplateCurlyInString: the placeholder a client failed to expand
      for (const bad of ['', '${env:NFLTR_API_KEY}']) {
        const p = await startPlanner(
          ['--proxy-url', relay.httpUrl, '--server', relay.grpcAddr, '--state-dir', tempDir()],
          bad,
        );
        cleanup.push(() => p.close());
        expect(await p.toolNames()).toEqual(ALL_TOOLS);
        const why = await p.fails('list_my_peers');
        expect(why).toMatch(
          bad
            ? /literal text "\$\{env:NFLTR_API_KEY\}".*NFLTR_API_KEY/
            : /no API key: pass --api-key, set NFLTR_API_KEY or pass --api-key-file/,
        );
        expect(await p.fails('orchestrate_task', { agent_id: 'w', objective: 'x' })).toBe(
          `orchestrate_task cannot run now: ${why.replace(/^list_my_peers cannot run now: /, '')}`,
        );
      }
    });
  });
});
