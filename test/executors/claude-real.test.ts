/**
 * The real Claude Code CLI (`@anthropic-ai/claude-code`, a dev dependency) behind real workers, a relay
 * and `nfltr mcp`, talking to the Anthropic Messages API stand-in of test/fixtures/model-api on loopback.
 * Both seed lines are covered: `--mcp-command "claude mcp serve"` (recognised, run through claude-mcp)
 * and `nfltr claude-mcp`. Progress, the permission question answered yes and no, a file returned,
 * cancel leaving no process, an unreachable API reported within --stall-after, and a worker without
 * credentials reported by probe_worker.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { descendantPids, isAlive } from '../../src/worker/index.js';
import { followTask, type Status } from '../durability/helpers.js';
// @ts-expect-error: a plain ESM fixture without types
import { startAnthropicStandIn } from '../fixtures/model-api/anthropic.mjs';
import {
  createKey,
  eventually,
  nfltr,
  type RelayProcess,
  startRelayProcess,
  tempDir,
} from '../helpers/processes.js';
import { type Planner, startPlanner } from '../planner/helpers.js';
import { startWorker, type WorkerProcess } from '../worker/helpers.js';

const cmdline = (pid: number) => {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ');
  } catch {
    return '?';
  }
};

const CLAUDE = resolve(import.meta.dirname, '../../node_modules/.bin/claude');

interface StandIn {
  url: string;
  close(): Promise<void>;
}

/** Variables that keep Claude Code offline apart from the stand-in. */
const OFFLINE = {
  CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: '1',
  DISABLE_AUTOUPDATER: '1',
  DISABLE_TELEMETRY: '1',
  DISABLE_ERROR_REPORTING: '1',
};
const PASS_ENV = ['ANTHROPIC_BASE_URL', 'ANTHROPIC_API_KEY', ...Object.keys(OFFLINE)].join(',');

describe('real Claude Code behind nfltr worker', () => {
  let relay: RelayProcess;
  let planner: Planner;
  let api: StandIn;
  let down: StandIn;
  let overloaded: StandIn;
  let key: string;
  const workers: Record<string, WorkerProcess> = {};
  const repo = tempDir('nfltr-claude-real-repo-');

  const env = (baseUrl: string | undefined, home: string): NodeJS.ProcessEnv => ({
    PATH: `${dirname(CLAUDE)}:${process.env.PATH}`,
    HOME: home,
    ...OFFLINE,
    ...(baseUrl ? { ANTHROPIC_BASE_URL: baseUrl, ANTHROPIC_API_KEY: 'sk-ant-stand-in' } : {}),
  });

  const start = (name: string, mcpCommand: string, baseUrl: string | undefined, args: string[] = []) => {
    const home = tempDir('nfltr-claude-home-');
    return startWorker(relay, key, {
      name,
      mcpCommand,
      env: env(baseUrl, home),
      cwd: repo,
      args: ['--executor-env', PASS_ENV, ...args],
    }).then((w) => {
      workers[name] = w;
      return w;
    });
  };

  const waitFor = (taskId: string, what: string, ok: (s: Status) => boolean, ms = 40_000) =>
    followTask(planner, taskId, ok, ms, what);
  const waitState = (taskId: string, states: string[]) =>
    waitFor(taskId, states.join('/'), (s) => states.includes(s.state));

  beforeAll(async () => {
    if (!existsSync(CLAUDE)) {
      throw new Error(
        `the real Claude Code CLI is missing (${CLAUDE}); run npm ci (it is the dev dependency @anthropic-ai/claude-code)`,
      );
    }
    writeFileSync(join(repo, 'README.md'), 'hello\n');
    api = await startAnthropicStandIn();
    down = await startAnthropicStandIn({ mode: 'down' });
    overloaded = await startAnthropicStandIn({ mode: 'overloaded' });
    const dataDir = tempDir();
    key = await createKey(dataDir, 'acct');
    relay = await startRelayProcess({ dataDir });
    await Promise.all([
      start('w-serve', 'claude mcp serve', api.url),
      start('w-claude-mcp', 'nfltr claude-mcp --cwd .', api.url),
      start('w-down', 'claude mcp serve', down.url, ['--stall-after', '2s']),
      start('w-overloaded', 'nfltr claude-mcp --cwd .', overloaded.url),
      start('w-nokey', 'nfltr claude-mcp --cwd .', undefined),
    ]);
    planner = await startPlanner(
      ['--proxy-url', relay.httpUrl, '--server', relay.grpcAddr, '--name', 'p', '--state-dir', tempDir()],
      key,
    );
    await eventually(async () => (await planner.toolNames()).includes('orchestrate_task'), 15_000, 'tools');
  }, 90_000);

  afterAll(async () => {
    await planner?.close();
    await Promise.all(Object.values(workers).map((w) => w.stop()));
    await relay?.stop();
    await api?.close();
    await down?.close();
    await overloaded?.close();
  });

  it('claude mcp serve - the worker says once that it runs tasks through nfltr claude-mcp', () => {
    const said = workers['w-serve']!.stderr().match(/Claude Code's own MCP server/g) ?? [];
    expect(said).toHaveLength(1);
    expect(workers['w-serve']!.stderr()).toContain('nfltr claude-mcp');
    expect(workers['w-serve']!.stderr()).toMatch(/nfltr worker ready .*tool=run_task/);
  });

  for (const worker of ['w-serve', 'w-claude-mcp']) {
    it(`${worker} - progress, the permission question approved, the file returned, usage in the status`, async () => {
      const taskId = `${worker}-approve`;
      const out = join(workers[worker]!.stateDir, 'tasks', taskId, 'output', 'report.txt');
      await planner.ok('orchestrate_task', {
        agent_id: worker,
        task_id: taskId,
        objective: `Write the report #bash:echo approved > ${out} && cat ${out}`,
        timeout_ms: 50_000,
      });
      const waiting = await waitState(taskId, ['waiting_input', 'completed', 'failed']);
      expect(waiting.state, JSON.stringify(waiting)).toBe('waiting_input');
      expect(waiting.pending_question?.question).toContain(
        `Claude Code asks to run Bash: echo approved > ${out}`,
      );
      expect(
        waiting.events.some((e) => e.state === 'running' && /Claude Code started/.test(e.message ?? '')),
      ).toBe(true);
      await planner.ok('respond_to_worker', { task_id: taskId, content: { approve: true } });
      const done = await waitState(taskId, ['completed', 'failed']);
      expect(done.state, JSON.stringify(done)).toBe('completed');
      expect(done.result?.text).toContain('The command said: approved');
      const report = done.artifacts?.find((a) => a.name === 'report.txt');
      expect(report, JSON.stringify(done.artifacts)).toBeDefined();
      expect(readFileSync(report!.path, 'utf8')).toBe('approved\n');
      expect(done.usage).toMatchObject({ turns: 2 });
      expect(done.usage?.input_tokens).toBeGreaterThan(0);
      expect(done.usage?.cost_usd).toBeGreaterThan(0);
      expect(typeof done.usage?.model).toBe('string');
    }, 60_000);

    it(`${worker} - the permission question refused: the command does not run`, async () => {
      const taskId = `${worker}-refuse`;
      const marker = join(repo, `${taskId}.txt`);
      await planner.ok('orchestrate_task', {
        agent_id: worker,
        task_id: taskId,
        objective: `Touch a file #bash:touch ${marker}`,
        timeout_ms: 50_000,
      });
      await waitState(taskId, ['waiting_input']);
      await planner.ok('respond_to_worker', {
        task_id: taskId,
        content: { approve: false, reason: 'not today' },
      });
      const done = await waitState(taskId, ['completed', 'failed']);
      expect(done.state, JSON.stringify(done)).toBe('completed');
      expect(done.result?.text).toContain('refused');
      expect(done.events.some((e) => /planner refused Bash: touch .*not today/.test(e.message ?? ''))).toBe(
        true,
      );
      expect(existsSync(marker)).toBe(false);
    }, 60_000);

    it(`${worker} - cancel mid-run leaves no process behind`, async () => {
      const taskId = `${worker}-cancel`;
      await planner.ok('orchestrate_task', {
        agent_id: worker,
        task_id: taskId,
        objective: 'Think for a long time #slow:120000',
      });
      await waitFor(taskId, 'Claude started', (s) =>
        s.events.some((e) => /Claude Code started/.test(e.message ?? '')),
      );
      const pidFile = join(workers[worker]!.stateDir, 'tasks', taskId, 'executor.pid');
      const executor = (JSON.parse(readFileSync(pidFile, 'utf8')) as { pid: number }).pid;
      expect(cmdline(executor)).toContain('claude-mcp --cwd');
      // The executor, claude, and the permission bridge claude starts (it may still be connecting).
      const tree = (await eventually(
        () => {
          const t = [executor, ...descendantPids(executor)];
          return t.some((p) => cmdline(p).includes('--permission-bridge')) ? t : undefined;
        },
        10_000,
        'the permission bridge in the task process tree',
      )) as number[];
      const r = await planner.ok<{ state: string }>('cancel_task', { task_id: taskId });
      expect(r.state).toBe('cancelled');
      await eventually(
        () => tree.every((p) => !isAlive(p)),
        10_000,
        'every process of the task to be gone',
      ).catch((err: Error) => {
        const left = tree.filter(isAlive).map((p) => `${p}: ${cmdline(p)}`);
        throw new Error(`${err.message}; still running:\n${left.join('\n')}`);
      });
    }, 60_000);
  }

  it('unreachable API - retries and the silence are reported within --stall-after', async () => {
    const taskId = 'down-1';
    const started = Date.now();
    await planner.ok('orchestrate_task', { agent_id: 'w-down', task_id: taskId, objective: 'Say hello' });
    const retry = await waitFor(taskId, 'a retry event', (s) =>
      s.events.some((e) => /model API failed .*retry 1 of/.test(e.message ?? '')),
    );
    expect(retry.state).toBe('running');
    // Claude's retry delays grow (0.6 s, 1 s, 2 s, 4 s, 9 s…): a gap longer than --stall-after comes soon.
    await waitFor(taskId, 'a stall event after a retry', (s) =>
      s.events.some((e) =>
        /^no sign of life from the executor for \d+s \(--stall-after 2s\); the last was: running "Claude Code: the model API failed/.test(
          e.message ?? '',
        ),
      ),
    );
    expect(Date.now() - started).toBeLessThan(40_000);
    await planner.ok('cancel_task', { task_id: taskId });
  }, 60_000);

  it('option values - --reasoning-effort is checked against the real claude --help', async () => {
    const r = await nfltr(
      ['claude-mcp', '--cwd', repo, '--claude-command', CLAUDE, '--reasoning-effort', 'bogus'],
      {
        env: { ...process.env, ...OFFLINE },
      },
    );
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('--reasoning-effort "bogus" is not accepted by');
    expect(r.stderr).toMatch(/it accepts: low, medium, high/);
  });

  it('overloaded API - each of Claude Code retries names the HTTP status', async () => {
    const taskId = 'overloaded-1';
    await planner.ok('orchestrate_task', {
      agent_id: 'w-overloaded',
      task_id: taskId,
      objective: 'Say hello',
    });
    await waitFor(taskId, 'a 529 retry event', (s) =>
      s.events.some((e) => /model API failed \(HTTP 529.*\); retry 1 of \d+/.test(e.message ?? '')),
    );
    await planner.ok('cancel_task', { task_id: taskId });
  }, 60_000);

  it('missing credentials - probe_worker reports executor_ready false with the fix', async () => {
    const bad = await planner.ok<Record<string, unknown>>('probe_worker', { agent_id: 'w-nokey' });
    expect(bad).toMatchObject({ executor_healthy: true, executor_ready: false, available: false });
    expect(bad.executor_reason).toMatch(/no credentials/);
    expect(bad.executor_fix).toMatch(/claude login.*--executor-env ANTHROPIC_API_KEY/);
    expect(workers['w-nokey']!.stderr()).toContain('the executor is not ready for AI work');
    const good = await planner.ok<Record<string, unknown>>('probe_worker', { agent_id: 'w-claude-mcp' });
    expect(good).toMatchObject({ executor_ready: true, available: true });
    expect(good.executor_fix).toBeUndefined();
  }, 30_000);
});
