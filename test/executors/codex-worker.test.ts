/**
 * The real OpenAI Codex CLI (@openai/codex, a pinned dev dependency) behind `nfltr codex-mcp` and a real
 * worker, relay and planner, against the loopback OpenAI-API stand-in (test/fixtures/model-api/openai.mjs)
 * configured as a model provider in a CODEX_HOME/config.toml. The stand-in's model runs one shell
 * command that writes standin.txt, which Codex puts to the planner for approval, then answers.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitState as followState, followTask } from '../durability/helpers.js';
import {
  createKey,
  devCli,
  eventually,
  NFLTR_BIN,
  nfltr,
  type RelayProcess,
  startRelayProcess,
  tempDir,
} from '../helpers/processes.js';
import { type Planner, startPlanner, startWorker, type WorkerProcess } from '../planner/helpers.js';

const ROOT = resolve(import.meta.dirname, '../..');
const CODEX = devCli('codex', 'the Codex CLI', '@openai/codex');
const STANDIN = join(ROOT, 'test/fixtures/model-api/openai.mjs');

/** The stand-in in `mode`; resolves with its base URL once it listens. */
async function startStandIn(
  mode: string,
  extra: string[] = [],
): Promise<{ url: string; child: ChildProcess }> {
  const child = spawn(process.execPath, [STANDIN, '--mode', mode, ...extra], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const url = await new Promise<string>((res, rej) => {
    child.stdout!.setEncoding('utf8').once('data', (d: string) => res(JSON.parse(d.split('\n')[0]!).url));
    child.once('exit', (code) => rej(new Error(`stand-in exited with ${code}`)));
  });
  return { url, child };
}

/** A CODEX_HOME whose config.toml makes the stand-in at `url` the model provider. */
function codexHome(url: string): string {
  const home = tempDir('nfltr-codex-home-');
  writeFileSync(
    join(home, 'config.toml'),
    [
      'model = "standin-model"',
      'model_provider = "standin"',
      '[model_providers.standin]',
      'name = "Stand-in"',
      `base_url = "${url}"`,
      'env_key = "STANDIN_KEY"',
      'wire_api = "responses"',
      'request_max_retries = 1',
      'stream_max_retries = 1',
      'stream_idle_timeout_ms = 20000',
      '',
    ].join('\n'),
  );
  return home;
}

/** PIDs of processes whose environment holds `needle` (the task's unique CODEX_HOME). */
function processesWithEnv(needle: string): number[] {
  const found: number[] = [];
  for (const pid of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    try {
      if (readFileSync(`/proc/${pid}/environ`, 'latin1').includes(needle)) found.push(Number(pid));
    } catch {
      // gone, or not ours
    }
  }
  return found;
}

const gitIn = (cwd: string, ...args: string[]) => execFileSync('git', args, { cwd, encoding: 'utf8' }).trim();

/** `--codex-command` running the installed codex with `env` set (CODEX_HOME, the provider's key). */
const codexCommand = (env: Record<string, string>) =>
  `env ${Object.entries(env)
    .map(([k, v]) => `${k}=${v}`)
    .join(' ')} ${CODEX}`;

describe('codex-mcp with the real Codex CLI behind nfltr worker', () => {
  let relay: RelayProcess;
  let planner: Planner;
  const workers: WorkerProcess[] = [];
  const standins: ChildProcess[] = [];
  let repo: string;
  let home: string;

  const waitState = (taskId: string, states: string[], ms = 45_000) =>
    followState(planner, taskId, states, ms);

  beforeAll(async () => {
    const dataDir = tempDir();
    const key = await createKey(dataDir, 'acct');
    relay = await startRelayProcess({ dataDir });
    const [ok, down, failing] = await Promise.all([
      startStandIn('script', ['--slow-ms', '60000']),
      startStandIn('unreachable'),
      startStandIn('error'),
    ]);
    standins.push(ok.child, down.child, failing.child);
    home = codexHome(ok.url);
    const downHome = codexHome(down.url);
    const failingHome = codexHome(failing.url);
    repo = tempDir('nfltr-codex-repo-');
    gitIn(repo, 'init', '-q', '-b', 'main');
    gitIn(repo, 'config', 'user.email', 't@example.com');
    gitIn(repo, 'config', 'user.name', 'T');
    writeFileSync(join(repo, 'README.md'), 'hello\n');
    gitIn(repo, 'add', '-A');
    gitIn(repo, 'commit', '-q', '-m', 'first');
    const settings = '--sandbox workspace-write --ask-for-approval untrusted';
    const started = await Promise.all([
      startWorker({
        server: relay.grpcAddr,
        apiKey: key,
        name: 'w-codex',
        stateDir: tempDir(),
        mcpCommand: `nfltr codex-mcp --cwd ${repo} --git-code-result ${settings} --codex-command "${codexCommand({ CODEX_HOME: home, STANDIN_KEY: 'k' })}"`,
      }),
      startWorker({
        server: relay.grpcAddr,
        apiKey: key,
        name: 'w-codex-down',
        stateDir: tempDir(),
        mcpCommand: `nfltr codex-mcp --cwd ${repo} ${settings} --unreachable-after 3s --codex-command "${codexCommand({ CODEX_HOME: downHome, STANDIN_KEY: 'k' })}"`,
      }),
      startWorker({
        server: relay.grpcAddr,
        apiKey: key,
        name: 'w-codex-5xx',
        stateDir: tempDir(),
        mcpCommand: `nfltr codex-mcp --cwd ${repo} ${settings} --codex-command "${codexCommand({ CODEX_HOME: failingHome, STANDIN_KEY: 'k' })}"`,
      }),
      startPlanner(
        [
          '--proxy-url',
          relay.httpUrl,
          '--server',
          relay.grpcAddr,
          '--name',
          'codex-planner',
          '--state-dir',
          tempDir(),
        ],
        key,
      ),
    ]);
    workers.push(started[0], started[1], started[2]);
    planner = started[3];
    await eventually(
      async () => (await planner.toolNames()).includes('orchestrate_task'),
      15_000,
      'orchestration tools',
    );
  }, 60_000);

  afterAll(async () => {
    await planner?.close();
    await Promise.all(workers.map((w) => w.stop()));
    await relay?.stop();
    for (const s of standins) s.kill();
    await rm(repo, { recursive: true, force: true });
  });

  it('codex - progress, the approval answered yes, completed with the patch and usage', async () => {
    const taskId = 'codex-approve';
    await planner.ok('orchestrate_task', {
      agent_id: 'w-codex',
      task_id: taskId,
      objective: 'Write standin.txt',
      constraints: { require_changed_paths: true },
      timeout_ms: 55_000,
    });
    const waiting = await waitState(taskId, ['waiting_input', 'failed', 'completed']);
    expect(waiting.state, waiting.message).toBe('waiting_input');
    expect(waiting.pending_question?.question).toContain('Codex asks permission to run');
    expect(waiting.pending_question?.question).toContain('echo standin > standin.txt');
    expect(
      waiting.events.some((e) => e.state === 'running' && /Codex thread .* started/.test(e.message ?? '')),
    ).toBe(true);
    await planner.ok('respond_to_worker', { task_id: taskId, content: { approve: true } });

    const done = await waitState(taskId, ['completed', 'failed']);
    expect(done.state, done.message).toBe('completed');
    expect(done.result?.text).toContain('Stand-in finished. The command said:');
    expect(done.result?.text).toContain('wrote standin.txt');
    expect(done.result?.structured).toMatchObject({
      ok: true,
      executor: 'codex-mcp',
      model: 'standin-model',
      settings: { sandbox: 'workspace-write', approval_policy: 'untrusted' },
      usage: {
        model: 'standin-model',
        input_tokens: 240,
        output_tokens: 60,
        cache_read_tokens: 40,
        reasoning_tokens: 10,
        turns: 2,
      },
      details: { turn_status: 'completed', approvals: [{ decision: 'accepted' }] },
      git: { changed_paths: [{ path: 'standin.txt', status: 'added' }] },
    });
    const messages = done.events.map((e) => e.message ?? '');
    expect(messages.some((m) => m.startsWith('running `'))).toBe(true);
    expect(messages.some((m) => m.includes('exited 0'))).toBe(true);
    const patch = done.artifacts?.find((a) => a.name === 'changes.patch');
    expect(readFileSync(patch!.path, 'utf8')).toContain('+standin');
    expect(done.artifacts?.map((a) => a.name)).toEqual(
      expect.arrayContaining(['codex-app-server.jsonl', 'codex-mcp-summary.json']),
    );
  }, 60_000);

  it('codex - a refused approval fails the task, saying what was refused', async () => {
    const taskId = 'codex-refuse';
    await planner.ok('orchestrate_task', {
      agent_id: 'w-codex',
      task_id: taskId,
      objective: 'Write standin.txt',
      timeout_ms: 55_000,
    });
    const waiting = await waitState(taskId, ['waiting_input', 'failed', 'completed']);
    expect(waiting.state, waiting.message).toBe('waiting_input');
    await planner.ok('respond_to_worker', { task_id: taskId, content: { approve: false } });
    const done = await waitState(taskId, ['completed', 'failed']);
    expect(done.state).toBe('failed');
    expect(done.message).toContain('the planner refused to run `');
    expect(done.message).toContain("Codex finished without it. Codex's final answer: Stand-in finished.");
    expect(existsSync(join(repo, 'standin.txt'))).toBe(false);
  }, 60_000);

  it('codex - cancel_task interrupts the turn and leaves no codex process', async () => {
    const taskId = 'codex-cancel';
    await planner.ok('orchestrate_task', {
      agent_id: 'w-codex',
      task_id: taskId,
      objective: 'Think about it for long #slow',
      timeout_ms: 55_000,
    });
    await followTask(
      planner,
      taskId,
      (s) => s.events.some((e) => /Codex thread/.test(e.message ?? '')),
      30_000,
      'the Codex thread to start',
    );
    expect(processesWithEnv(home).length).toBeGreaterThan(0);
    const r = await planner.ok<{ state: string }>('cancel_task', { task_id: taskId });
    expect(r.state).toBe('cancelled');
    await eventually(() => processesWithEnv(home).length === 0, 10_000, 'every codex process to be gone');
  }, 60_000);

  it('codex - an unreachable model API fails the task with the cause, after progress about the retries', async () => {
    const taskId = 'codex-down';
    const t0 = Date.now();
    await planner.ok('orchestrate_task', {
      agent_id: 'w-codex-down',
      task_id: taskId,
      objective: 'Say hello',
      timeout_ms: 55_000,
    });
    const done = await waitState(taskId, ['completed', 'failed'], 40_000);
    expect(done.state).toBe('failed');
    expect(done.message).toMatch(
      /Codex failed: the model API did not work for \d+s \(--unreachable-after\).*error sending request/,
    );
    expect(
      done.events.some((e) => e.state === 'running' && /Reconnecting|retrying/i.test(e.message ?? '')),
    ).toBe(true);
    expect(Date.now() - t0).toBeLessThan(40_000);
  }, 60_000);

  it('codex - a model API answering 500 fails the task with Codex’s error once its retries are spent', async () => {
    const taskId = 'codex-5xx';
    await planner.ok('orchestrate_task', {
      agent_id: 'w-codex-5xx',
      task_id: taskId,
      objective: 'Say hello',
    });
    const done = await waitState(taskId, ['completed', 'failed']);
    expect(done.state).toBe('failed');
    expect(done.message).toMatch(/FAILED: Codex failed: .*\[internalServerError\]/);
    expect(done.events.some((e) => /Codex: Reconnecting\.\.\. 1\/1 \(retrying\)/.test(e.message ?? ''))).toBe(
      true,
    );
  }, 60_000);
});

describe('codex-mcp start-up and check_ready with the real Codex CLI', () => {
  let standin: ChildProcess;
  let url: string;
  beforeAll(async () => {
    ({ url, child: standin } = await startStandIn('script'));
  });
  afterAll(() => standin?.kill());

  /** Calls check_ready on `nfltr codex-mcp` started with `env` through the TS MCP client. */
  async function checkReady(env: Record<string, string>): Promise<Record<string, unknown>> {
    const base = Object.fromEntries(
      Object.entries(process.env).filter(
        ([k]) => !/^(OPENAI_API_KEY|CODEX_API_KEY|CODEX_HOME|STANDIN_KEY)$/.test(k),
      ),
    ) as Record<string, string>;
    const transport = new StdioClientTransport({
      command: process.execPath,
      args: [NFLTR_BIN, 'codex-mcp', '--cwd', tempDir(), '--codex-command', CODEX],
      env: { ...base, ...env },
      stderr: 'pipe',
    });
    const client = new Client({ name: 'check-ready-test', version: '1.0.0' });
    await client.connect(transport);
    try {
      const tools = (await client.listTools()).tools.map((t) => t.name);
      expect(tools).toEqual(expect.arrayContaining(['run_task', 'check_ready']));
      const r = await client.callTool({ name: 'check_ready', arguments: {} });
      return r.structuredContent as Record<string, unknown>;
    } finally {
      await client.close();
    }
  }

  it("codex - check_ready names the provider's missing key and --executor-env", async () => {
    const r = await checkReady({ CODEX_HOME: codexHome(url) });
    expect(r).toMatchObject({ ready: false });
    expect(r.reason).toContain('STANDIN_KEY');
    expect(r.fix).toContain('--executor-env STANDIN_KEY');
    expect(await checkReady({ CODEX_HOME: codexHome(url), STANDIN_KEY: 'k' })).toEqual({ ready: true });
  }, 40_000);

  it('codex - check_ready without any OpenAI login names codex login and OPENAI_API_KEY', async () => {
    const empty = tempDir('nfltr-codex-empty-home-');
    const r = await checkReady({ CODEX_HOME: empty });
    expect(r).toMatchObject({ ready: false });
    expect(r.reason).toContain('no OpenAI credentials');
    expect(r.fix).toContain('codex login');
    expect(r.fix).toContain('--executor-env OPENAI_API_KEY');
    expect(await checkReady({ CODEX_HOME: empty, OPENAI_API_KEY: 'sk-test' })).toEqual({ ready: true });
  }, 40_000);

  it('codex - values the installed Codex does not accept stop the executor at start', async () => {
    const env = { ...process.env, CODEX_HOME: codexHome(url) };
    const sandbox = await nfltr(['codex-mcp', '--codex-command', CODEX, '--sandbox', 'bogus'], { env });
    expect(sandbox.code).not.toBe(0);
    expect(sandbox.stderr).toContain(
      'unknown variant `bogus`, expected one of `read-only`, `workspace-write`',
    );
    const effort = await nfltr(
      ['codex-mcp', '--codex-command', CODEX, '--model', 'gpt-6.2-sol', '--reasoning-effort', 'bogus'],
      { env },
    );
    expect(effort.code).not.toBe(0);
    expect(effort.stderr).toMatch(
      /--reasoning-effort "bogus" is not offered by .* for model gpt-6.2-sol; it offers: .*high/,
    );
    const policy = await nfltr(['codex-mcp', '--codex-command', CODEX, '--ask-for-approval', 'sometimes'], {
      env,
    });
    expect(policy.code).not.toBe(0);
    expect(policy.stderr).toContain('unknown variant `sometimes`, expected one of `untrusted`, `on-request`');
  }, 40_000);
});
