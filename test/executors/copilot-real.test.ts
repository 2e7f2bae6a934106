/**
 * The real GitHub Copilot CLI (@github/copilot 1.0.102, a pinned dev dependency) behind `nfltr
 * copilot-mcp` and a real worker, relay and planner. Without credentials, Copilot refuses session/new
 * and the planner must read why and how to fix it; with its bring-your-own-provider settings
 * (COPILOT_PROVIDER_BASE_URL …, passed by the worker's --executor-env) pointing at the loopback OpenAI-API
 * stand-in (Chat Completions), it runs a whole task: a shell call put to the planner, then an answer.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitState as followState } from '../durability/helpers.js';
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
const COPILOT = devCli('copilot', 'GitHub Copilot CLI', '@github/copilot');
const STANDIN = join(ROOT, 'test/fixtures/model-api/openai.mjs');

/** Credentials Copilot would pick up from the test's own environment; none may leak in. */
const CREDENTIAL_ENV =
  /^(COPILOT_GITHUB_TOKEN|GH_TOKEN|GITHUB_TOKEN|COPILOT_PROVIDER_.*|COPILOT_MODEL|COPILOT_HOME)$/;

async function startStandIn(): Promise<{ url: string; child: ChildProcess }> {
  const child = spawn(process.execPath, [STANDIN], { stdio: ['pipe', 'pipe', 'inherit'] });
  const url = await new Promise<string>((res, rej) => {
    child.stdout!.setEncoding('utf8').once('data', (d: string) => res(JSON.parse(d.split('\n')[0]!).url));
    child.once('exit', (code) => rej(new Error(`stand-in exited with ${code}`)));
  });
  return { url, child };
}

/** The bring-your-own-provider settings of Copilot CLI (`copilot help environment`) for the stand-in. */
const byok = (url: string) => ({
  COPILOT_PROVIDER_BASE_URL: url,
  COPILOT_PROVIDER_API_KEY: 'k',
  COPILOT_MODEL: 'standin-model',
  COPILOT_OFFLINE: 'true',
});

const gitIn = (cwd: string, ...args: string[]) => execFileSync('git', args, { cwd, encoding: 'utf8' }).trim();

describe('copilot-mcp with the real Copilot CLI behind nfltr worker', () => {
  let relay: RelayProcess;
  let planner: Planner;
  let standin: ChildProcess;
  const workers: WorkerProcess[] = [];
  let repo: string;
  const saved = { ...process.env };

  const waitState = (taskId: string, states: string[], ms = 45_000) =>
    followState(planner, taskId, states, ms);

  beforeAll(async () => {
    const dataDir = tempDir();
    const key = await createKey(dataDir, 'acct');
    relay = await startRelayProcess({ dataDir });
    const s = await startStandIn();
    standin = s.child;
    repo = tempDir('nfltr-copilot-real-repo-');
    gitIn(repo, 'init', '-q', '-b', 'main');
    gitIn(repo, 'config', 'user.email', 't@example.com');
    gitIn(repo, 'config', 'user.name', 'T');
    writeFileSync(join(repo, 'README.md'), 'hello\n');
    gitIn(repo, 'add', '-A');
    gitIn(repo, 'commit', '-q', '-m', 'first');
    // The workers inherit this environment; only what --executor-env names reaches the executor.
    for (const k of Object.keys(process.env)) if (CREDENTIAL_ENV.test(k)) delete process.env[k];
    Object.assign(process.env, byok(s.url));
    const copilotCommand = `"env COPILOT_HOME=${tempDir('nfltr-copilot-home-')} ${COPILOT}"`;
    const started = await Promise.all([
      startWorker({
        server: relay.grpcAddr,
        apiKey: key,
        name: 'w-copilot-byok',
        stateDir: tempDir(),
        mcpCommand: `nfltr copilot-mcp --cwd ${repo} --git-code-result --copilot-command ${copilotCommand}`,
        args: ['--executor-env', Object.keys(byok(s.url)).join(',')],
      }),
      startWorker({
        server: relay.grpcAddr,
        apiKey: key,
        name: 'w-copilot-nologin',
        stateDir: tempDir(),
        mcpCommand: `nfltr copilot-mcp --cwd ${repo} --model gpt-5.2 --reasoning-effort high --copilot-command ${copilotCommand}`,
      }),
      startPlanner(
        [
          '--proxy-url',
          relay.httpUrl,
          '--server',
          relay.grpcAddr,
          '--name',
          'copilot-planner',
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
  }, 60_000);

  afterAll(async () => {
    process.env = saved;
    await planner?.close();
    await Promise.all(workers.map((w) => w.stop()));
    await relay?.stop();
    standin?.kill();
    await rm(repo, { recursive: true, force: true });
  });

  it("copilot - without credentials the planner reads Copilot's advice and the --executor-env fix", async () => {
    const taskId = 'copilot-nologin';
    await planner.ok('orchestrate_task', {
      agent_id: 'w-copilot-nologin',
      task_id: taskId,
      objective: 'Say hello',
    });
    const done = await waitState(taskId, ['completed', 'failed']);
    expect(done.state).toBe('failed');
    expect(done.message).toContain('Authentication required (JSON-RPC error -32000)');
    expect(done.message).toContain(
      'Copilot says: Log in with Copilot CLI: Run `copilot login` in the terminal',
    );
    expect(done.message).toContain('nfltr worker --executor-env NAME');
    expect(done.message).toContain('GH_TOKEN');
  }, 60_000);

  it('copilot - bring-your-own-provider: progress, the permission answered yes, completed with the patch', async () => {
    const taskId = 'copilot-byok';
    await planner.ok('orchestrate_task', {
      agent_id: 'w-copilot-byok',
      task_id: taskId,
      objective: 'Write standin.txt',
      constraints: { require_changed_paths: true },
      timeout_ms: 55_000,
    });
    const waiting = await waitState(taskId, ['waiting_input', 'failed', 'completed']);
    expect(waiting.state, waiting.message).toBe('waiting_input');
    expect(waiting.pending_question?.question).toContain('Copilot asks permission for write standin.txt');
    expect(waiting.events.some((e) => /Copilot session .* started/.test(e.message ?? ''))).toBe(true);
    await planner.ok('respond_to_worker', { task_id: taskId, content: { approve: true } });
    const done = await waitState(taskId, ['completed', 'failed']);
    expect(done.state, done.message).toBe('completed');
    expect(done.result?.text).toContain('Stand-in finished. The command said: wrote standin.txt');
    expect(done.result?.structured).toMatchObject({
      ok: true,
      executor: 'copilot-mcp',
      usage: { input_tokens: 240, output_tokens: 60 },
      details: { stop_reason: 'end_turn', permission_requests: [{ decision: 'allowed' }] },
      git: { changed_paths: [{ path: 'standin.txt', status: 'added' }] },
    });
    expect(done.events.some((e) => /write standin.txt done/.test(e.message ?? ''))).toBe(true);
    const patch = done.artifacts?.find((a) => a.name === 'changes.patch');
    expect(readFileSync(patch!.path, 'utf8')).toContain('+standin');
  }, 60_000);
});

describe('copilot-mcp start-up and check_ready with the real Copilot CLI', () => {
  let standin: ChildProcess;
  let url: string;
  beforeAll(async () => {
    ({ url, child: standin } = await startStandIn());
  });
  afterAll(() => standin?.kill());

  const cleanEnv = () =>
    Object.fromEntries(Object.entries(process.env).filter(([k]) => !CREDENTIAL_ENV.test(k))) as Record<
      string,
      string
    >;

  async function checkReady(env: Record<string, string>): Promise<Record<string, unknown>> {
    const transport = new StdioClientTransport({
      command: process.execPath,
      args: [NFLTR_BIN, 'copilot-mcp', '--cwd', tempDir(), '--copilot-command', COPILOT],
      env: { ...cleanEnv(), COPILOT_HOME: tempDir('nfltr-copilot-home-'), ...env },
      stderr: 'pipe',
    });
    const client = new Client({ name: 'check-ready-test', version: '1.0.0' });
    await client.connect(transport);
    try {
      const r = await client.callTool({ name: 'check_ready', arguments: {} });
      return r.structuredContent as Record<string, unknown>;
    } finally {
      await client.close();
    }
  }

  it('copilot - check_ready says no credentials with the fix, and ready with its own provider', async () => {
    const none = await checkReady({});
    expect(none).toMatchObject({ ready: false });
    expect(none.reason).toContain('Authentication required');
    expect(none.fix).toContain('copilot login');
    expect(none.fix).toContain('--executor-env NAME');
    expect(await checkReady(byok(url))).toEqual({ ready: true });
  }, 50_000);

  it('copilot - --reasoning-effort and --mode values the installed CLI does not accept stop it at start', async () => {
    const effort = await nfltr(['copilot-mcp', '--copilot-command', COPILOT, '--reasoning-effort', 'bogus']);
    expect(effort.code).not.toBe(0);
    expect(effort.stderr).toContain('--reasoning-effort "bogus" is not accepted by');
    expect(effort.stderr).toContain('it accepts: none, minimal, low, medium, high, xhigh, max');
    const mode = await nfltr(['copilot-mcp', '--copilot-command', COPILOT, '--mode', 'bogus']);
    expect(mode.code).not.toBe(0);
    expect(mode.stderr).toContain('--mode "bogus" is not accepted by');
    expect(mode.stderr).toContain('it accepts: interactive, plan, autopilot');
  }, 30_000);
});
