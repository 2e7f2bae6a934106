/**
 * The AI executors behind a real worker: a relay, `nfltr mcp` (planner) driven by the MCP client, and two
 * `nfltr worker` processes whose `--mcp-command` is `nfltr claude-mcp --git-code-result` and
 * `nfltr copilot-mcp --git-code-result`, with the fake CLIs of test/fixtures standing in for claude and
 * copilot. Permission prompts round-trip through respond_to_worker; patches, verification results and
 * logs come back as artifacts; cancel and timeout kill the CLI's process group.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitState as followState } from '../durability/helpers.js';
import {
  createKey,
  eventually,
  type RelayProcess,
  startRelayProcess,
  tempDir,
} from '../helpers/processes.js';
import { type Planner, startPlanner, startWorker, type WorkerProcess } from '../planner/helpers.js';

const FAKE_CLAUDE = join(import.meta.dirname, '../fixtures/fake-claude.mjs');
const FAKE_COPILOT = join(import.meta.dirname, '../fixtures/fake-copilot.mjs');

const gitIn = (cwd: string, ...args: string[]) => execFileSync('git', args, { cwd, encoding: 'utf8' }).trim();

function pgrep(marker: string): string {
  try {
    return execFileSync('pgrep', ['-f', marker], { encoding: 'utf8' }).trim();
  } catch {
    return '';
  }
}

describe('AI executors behind nfltr worker', () => {
  let relay: RelayProcess;
  let planner: Planner;
  const workers: WorkerProcess[] = [];
  const repos: Record<string, string> = {};

  const waitState = (taskId: string, states: string[], ms = 20_000) =>
    followState(planner, taskId, states, ms);

  beforeAll(async () => {
    const dataDir = tempDir();
    const key = await createKey(dataDir, 'acct');
    relay = await startRelayProcess({ dataDir });
    for (const name of ['claude', 'copilot']) {
      const repo = tempDir(`nfltr-${name}-repo-`);
      gitIn(repo, 'init', '-q', '-b', 'main');
      gitIn(repo, 'config', 'user.email', 't@example.com');
      gitIn(repo, 'config', 'user.name', 'T');
      writeFileSync(join(repo, 'README.md'), 'hello\n');
      gitIn(repo, 'add', '-A');
      gitIn(repo, 'commit', '-q', '-m', 'first');
      repos[name] = repo;
    }
    const fake = (script: string) => `"'${process.execPath}' '${script}'"`;
    const started = await Promise.all([
      startWorker({
        server: relay.grpcAddr,
        apiKey: key,
        name: 'w-claude',
        labels: 'tool=claude',
        stateDir: tempDir(),
        mcpCommand: `nfltr claude-mcp --cwd ${repos.claude} --git-code-result --model sonnet --claude-command ${fake(FAKE_CLAUDE)}`,
      }),
      startWorker({
        server: relay.grpcAddr,
        apiKey: key,
        name: 'w-copilot',
        labels: 'tool=copilot',
        stateDir: tempDir(),
        mcpCommand: `nfltr copilot-mcp --cwd ${repos.copilot} --git-code-result --model gpt-5.2 --copilot-command ${fake(FAKE_COPILOT)}`,
      }),
      startPlanner(
        [
          '--proxy-url',
          relay.httpUrl,
          '--server',
          relay.grpcAddr,
          '--name',
          'ai-planner',
          '--state-dir',
          tempDir(),
        ],
        key,
      ),
    ]);
    workers.push(started[0], started[1]);
    planner = started[2];
    await eventually(
      async () => (await planner.toolNames()).includes('orchestrate_task'),
      15_000,
      'orchestration tools',
    );
  });
  afterAll(async () => {
    await planner?.close();
    await Promise.all(workers.map((w) => w.stop()));
    await relay?.stop();
    await Promise.all(Object.values(repos).map((r) => rm(r, { recursive: true, force: true })));
  });

  for (const [executor, worker, question] of [
    ['claude', 'w-claude', 'Claude Code asks to run Bash: touch approved.txt'],
    ['copilot', 'w-copilot', 'Copilot asks permission for Run touch approved.txt'],
  ] as const) {
    it(`${executor} - permission through respond_to_worker, then a verified patch of allowed paths`, async () => {
      const taskId = `${executor}-feature`;
      await planner.ok('orchestrate_task', {
        agent_id: worker,
        task_id: taskId,
        objective: 'Add the feature #permission #write-file src/feature.ts=done',
        constraints: {
          allowed_paths: ['src/', 'approved.txt'],
          require_changed_paths: true,
          verification_commands: ['test -f src/feature.ts && test -f approved.txt'],
        },
        timeout_ms: 60_000,
      });
      const waiting = await waitState(taskId, ['waiting_input', 'failed', 'completed']);
      expect(waiting.state).toBe('waiting_input');
      expect(waiting.pending_question?.question).toContain(question);
      expect(waiting.events.some((e) => e.state === 'running')).toBe(true);
      await planner.ok('respond_to_worker', { task_id: taskId, content: { approve: true } });

      const done = await waitState(taskId, ['completed', 'failed']);
      expect(done.state, done.message).toBe('completed');
      expect(done.result?.structured).toMatchObject({
        ok: true,
        executor: `${executor}-mcp`,
        git: {
          changed_paths: [
            { path: 'approved.txt', status: 'added' },
            { path: 'src/feature.ts', status: 'added' },
          ],
          verification: [{ status: 'succeeded', exit_code: 0 }],
        },
      });
      const patch = done.artifacts?.find((a) => a.name === 'changes.patch');
      expect(patch).toBeDefined();
      expect(readFileSync(patch!.path, 'utf8')).toContain('+done');
      expect(done.artifacts?.map((a) => a.name)).toContain(`${executor}-mcp-summary.json`);
      expect(gitIn(repos[executor]!, 'status', '--porcelain')).toBe(''); // the worker's checkout is untouched
    });

    it(`${executor} - a change outside allowed_paths fails the task, naming the path`, async () => {
      const taskId = `${executor}-leak`;
      await planner.ok('orchestrate_task', {
        agent_id: worker,
        task_id: taskId,
        objective: 'Change things #write-file config/secret.env=x',
        constraints: { allowed_paths: ['src/'] },
      });
      const done = await waitState(taskId, ['completed', 'failed']);
      expect(done.state).toBe('failed');
      expect(done.message).toContain('changes outside constraints.allowed_paths: config/secret.env');
    });

    it(`${executor} - cancel_task kills the CLI's process group`, async () => {
      const taskId = `${executor}-cancel`;
      const marker = `${executor}-worker-cancel-${process.pid}-${Date.now()}`;
      await planner.ok('orchestrate_task', {
        agent_id: worker,
        task_id: taskId,
        objective: `Wait #hang:${marker}`,
      });
      await eventually(() => pgrep(marker) !== '', 15_000, 'the fake CLI child');
      const r = await planner.ok<{ state: string }>('cancel_task', { task_id: taskId });
      expect(r.state).toBe('cancelled');
      await eventually(() => pgrep(marker) === '', 6_000, 'the CLI process group to be gone');
      await eventually(
        () => gitIn(repos[executor]!, 'worktree', 'list').split('\n').length === 1,
        6_000,
        "the task's worktree to be removed",
      );
    });
  }

  it('claude - timeout_ms stops the CLI and its process group', async () => {
    const taskId = 'claude-timeout';
    const marker = `claude-worker-timeout-${process.pid}-${Date.now()}`;
    await planner.ok('orchestrate_task', {
      agent_id: 'w-claude',
      task_id: taskId,
      objective: `Wait #hang:${marker}`,
      timeout_ms: 1_000,
    });
    const done = await waitState(taskId, ['failed', 'completed', 'cancelled']);
    expect(done.state).toBe('failed');
    expect(done.reason).toBe('timeout');
    await eventually(() => pgrep(marker) === '', 8_000, 'the CLI process group to be gone');
    await eventually(
      () => gitIn(repos.claude!, 'worktree', 'list').split('\n').length === 1,
      6_000,
      "the task's worktree to be removed",
    );
  });
});
