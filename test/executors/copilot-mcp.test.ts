/**
 * `nfltr copilot-mcp` end to end: the real CLI (bin/nfltr.js, built by `npm run build`) spawned as an MCP server
 * over stdio and driven with the SDK client, the way a worker drives an executor, with
 * test/fixtures/fake-copilot.mjs standing in for GitHub Copilot CLI (an ACP agent over stdio, and the
 * `-p` prompt mode).
 */
import { execFile, execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { ElicitRequestSchema, type ElicitResult } from '@modelcontextprotocol/sdk/types.js';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { JsonRpcPeer, planSettings, possibleValues } from '../../src/executors/copilot-mcp/index.js';
import { connectTapped, runTaskIn } from './run-task.js';

const BIN = join(import.meta.dirname, '../../bin/nfltr.js');
const FAKE = join(import.meta.dirname, '../fixtures/fake-copilot.mjs');
const FAKE_COMMAND = `'${process.execPath}' '${FAKE}'`;

let root: string;
let clients: Client[] = [];
let n = 0;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'nfltr-copilot-mcp-'));
});
afterEach(async () => {
  await Promise.all(clients.map((c) => c.close()));
  clients = [];
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

const gitIn = (cwd: string, ...args: string[]) => execFileSync('git', args, { cwd, encoding: 'utf8' }).trim();

async function newDir(name: string) {
  n += 1;
  const dir = join(root, `${name}-${n}`);
  await mkdir(dir, { recursive: true });
  return dir;
}

async function start(opts: {
  cwd: string;
  args?: string[];
  command?: string;
  ask?: (message: string) => ElicitResult;
}) {
  const transport = new StdioClientTransport({
    command: process.execPath,
    args: [
      BIN,
      'copilot-mcp',
      '--cwd',
      opts.cwd,
      '--copilot-command',
      opts.command ?? FAKE_COMMAND,
      ...(opts.args ?? []),
    ],
    stderr: 'pipe',
  });
  const client = new Client(
    { name: 'test-worker', version: '0' },
    { capabilities: opts.ask ? { elicitation: {} } : {} },
  );
  const questions: string[] = [];
  if (opts.ask) {
    const ask = opts.ask;
    client.setRequestHandler(ElicitRequestSchema, async (req) => {
      questions.push(req.params.message);
      return ask(req.params.message);
    });
  }
  await connectTapped(client, transport);
  clients.push(client);
  return { client, questions };
}

const runTask = async (
  client: Client,
  objective: string,
  extra?: Parameters<typeof runTaskIn>[4],
  opts?: Parameters<typeof runTaskIn>[5],
) => runTaskIn(client, await newDir('task'), `t${n}`, objective, extra, opts);

function pgrep(marker: string): string {
  try {
    return execFileSync('pgrep', ['-f', marker], { encoding: 'utf8' }).trim();
  } catch {
    return '';
  }
}

async function gone(marker: string, ms: number) {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (pgrep(marker) === '') return true;
    await new Promise((r) => setTimeout(r, 100));
  }
  return pgrep(marker) === '';
}

describe('copilot-mcp - ACP pieces', () => {
  it('JSON-RPC peer correlates responses, answers requests and fails pending calls on close', async () => {
    const sent: Record<string, unknown>[] = [];
    const peer = new JsonRpcPeer((line) => sent.push(JSON.parse(line)), {
      request: async (method) => ({ echoed: method }),
      notification: () => {},
    });
    const answer = peer.request('ping', {});
    peer.line(JSON.stringify({ jsonrpc: '2.0', id: sent[0]!.id, result: { pong: true } }));
    await expect(answer).resolves.toEqual({ pong: true });
    const failed = peer.request('boom', {});
    peer.line(
      JSON.stringify({ jsonrpc: '2.0', id: sent[1]!.id, error: { code: -32000, message: 'Auth required' } }),
    );
    await expect(failed).rejects.toThrow('Auth required');
    peer.line(JSON.stringify({ jsonrpc: '2.0', id: 'x', method: 'fs/read', params: {} }));
    await new Promise((r) => setTimeout(r, 0));
    expect(sent[2]).toEqual({ jsonrpc: '2.0', id: 'x', result: { echoed: 'fs/read' } });
    const pending = peer.request('never', {});
    peer.close(new Error('copilot exited with code 1'));
    await expect(pending).rejects.toThrow('copilot exited with code 1');
  });

  it('maps pinned settings onto what the session offers, or says what it offers', () => {
    const session = {
      sessionId: 's',
      modes: {
        currentModeId: 'x#agent',
        availableModes: [
          { id: 'x#agent', name: 'Agent' },
          { id: 'x#plan', name: 'Plan' },
        ],
      },
      configOptions: [
        {
          id: 'effort',
          category: 'thought_level',
          type: 'select',
          currentValue: 'medium',
          options: [{ value: 'medium' }, { value: 'high' }],
        },
      ],
    };
    expect(planSettings({ mode: 'plan', reasoningEffort: 'high' }, session)).toEqual([
      { method: 'session/set_mode', params: { sessionId: 's', modeId: 'x#plan' }, what: '--mode x#plan' },
      {
        method: 'session/set_config_option',
        params: { sessionId: 's', configId: 'effort', value: 'high' },
        what: '--reasoning-effort high',
      },
    ]);
    expect(planSettings({ mode: 'interactive' }, session)).toEqual([]); // interactive is the Agent mode
    expect(planSettings({ mode: 'autopilot' }, session)).toMatch(
      /--mode autopilot is not offered.*Agent, Plan/,
    );
    expect(planSettings({ model: 'gpt-5.2' }, { sessionId: 's' })).toEqual([]); // left to the --model flag
  });
});

describe('nfltr copilot-mcp (ACP)', () => {
  it('runs a task: plan, messages and tool calls as progress; answer, usage and session in the result', async () => {
    const cwd = await newDir('plain');
    const { client } = await start({
      cwd,
      args: ['--model', 'gpt-5.2', '--mode', 'plan', '--reasoning-effort', 'high'],
    });
    const { tools } = await client.listTools();
    expect(tools[0]!.description).toContain('A task cannot override the model, mode or reasoning effort');
    expect(tools[0]!.description).toContain('model gpt-5.2');

    const { task, result, text, progress } = await runTask(client, 'Write the notes #write-file notes.md=hi');
    expect(result.isError).toBeFalsy();
    expect(text).toContain('Working on it (model=gpt-5.2, mode=Plan, effort=high). fake-copilot done.');
    expect(await readFile(join(cwd, 'notes.md'), 'utf8')).toBe('hi\n');
    const sc = result.structuredContent as Record<string, unknown>;
    expect(sc).toMatchObject({
      ok: true,
      executor: 'copilot-mcp',
      settings: { model: 'gpt-5.2', mode: 'plan', reasoning_effort: 'high', protocol: 'acp' },
      usage: {
        input_tokens: 5200,
        output_tokens: 250,
        total_tokens: 5450,
        reasoning_tokens: 40,
        cache_read_tokens: 3000,
        cost_usd: 0.042,
      },
      details: { stop_reason: 'end_turn', mode: expect.stringMatching(/#plan$/) },
    });
    expect(sc.session_id).toMatch(/^sess_/);
    expect(progress).toContain(
      'session set to --mode https://agentclientprotocol.com/protocol/session-modes#plan',
    );
    expect(progress).toContain('plan: [x] Read the task; [~] Do the work');
    expect(progress).toContain('Create notes.md (edit)');
    expect(progress).toContain('Create notes.md done');
    const transcript = await readFile(join(task.output_dir, 'copilot-acp.jsonl'), 'utf8');
    expect(transcript).toContain('"method":"session/set_mode"');
  });

  it('routes session/request_permission to the planner: allow picks allow_once, refusal reject_once', async () => {
    const cwd = await newDir('perm');
    let approve = true;
    const { client, questions } = await start({
      cwd,
      ask: () => ({ action: 'accept', content: { approve } }),
    });
    const yes = await runTask(client, 'Make the marker #permission');
    expect(yes.result.isError).toBeFalsy();
    expect(questions[0]).toContain('Copilot asks permission for Run touch approved.txt');
    expect(existsSync(join(cwd, 'approved.txt'))).toBe(true);
    expect(yes.progress).toContain('Run touch approved.txt done');

    await rm(join(cwd, 'approved.txt'));
    approve = false;
    const no = await runTask(client, 'Make the marker #permission');
    expect(no.result.isError).toBeFalsy();
    expect(existsSync(join(cwd, 'approved.txt'))).toBe(false);
    expect(no.progress).toContain('Run touch approved.txt failed: Permission denied by the user');
    expect((no.result.structuredContent as { details: unknown }).details).toMatchObject({
      permission_requests: [{ tool: 'Run touch approved.txt', decision: 'denied', reason: 'refused' }],
    });
    const transcript = await readFile(join(no.task.output_dir, 'copilot-acp.jsonl'), 'utf8');
    expect(transcript).toContain('"optionId":"reject-once"');
  });

  it('reports a JSON-RPC error and a crash as isError with the CLI text', async () => {
    const cwd = await newDir('err');
    const { client } = await start({ cwd });
    const err = await runTask(client, 'Do it #error');
    expect(err.result.isError).toBe(true);
    expect(err.text).toContain(
      'copilot answered with an error: Internal error: fake model overloaded (JSON-RPC error -32603)',
    );

    const crash = await runTask(client, 'Do it #crash');
    expect(crash.result.isError).toBe(true);
    expect(crash.text).toContain('copilot exited with code 3: Error: fake-copilot crashed mid-prompt');
  });

  it('a model provider that cannot be reached fails the task with Copilot’s words, retries as progress', async () => {
    const cwd = await newDir('down');
    const { client } = await start({ cwd });
    const r = await runTask(client, 'Say hello #provider-down');
    expect(r.result.isError).toBe(true);
    expect(r.text).toContain(
      'Copilot could not get an answer: Could not connect to local model provider at http://127.0.0.1:9/v1. Check that the service is running and the port is correct.',
    );
    expect(r.progress).toContain('Copilot Info: Response was interrupted due to a server error. Retrying...');
  });

  it("without credentials: the task fails with Copilot's advice and the fix; check_ready says so", async () => {
    const cwd = await newDir('noauth');
    const { client } = await start({ cwd, command: `${FAKE_COMMAND} --fake-no-auth` });
    const r = await runTask(client, 'Say hello');
    expect(r.result.isError).toBe(true);
    expect(r.text).toContain(
      'copilot refused to start a session: Authentication required (JSON-RPC error -32000). Copilot says: Log in with Copilot CLI: Run `copilot login` in the terminal. On a worker: run `copilot login`',
    );
    expect(r.text).toContain('`nfltr worker --executor-env NAME`');
    const ready = await client.callTool({ name: 'check_ready', arguments: {} });
    expect(ready.structuredContent).toMatchObject({
      ready: false,
      reason: expect.stringContaining('Authentication required'),
      fix: expect.stringContaining('COPILOT_GITHUB_TOKEN / GH_TOKEN / GITHUB_TOKEN'),
    });
    const { client: good } = await start({ cwd });
    expect((await good.callTool({ name: 'check_ready', arguments: {} })).structuredContent).toEqual({
      ready: true,
    });
  });

  it('reads option choices from clap-style help ([possible values: …]) as Copilot CLI 1.0 prints them', () => {
    expect(
      possibleValues(
        '--mode <mode>  Set the initial agent mode [possible values: interactive, plan, autopilot]',
      ),
    ).toEqual(['interactive', 'plan', 'autopilot']);
    expect(possibleValues('--model <model>  Set the AI model to use')).toBeUndefined();
  });

  it('kills the CLI process group on cancel, even when the agent ignores session/cancel', async () => {
    const cwd = await newDir('cancel');
    const { client } = await start({ cwd });
    const marker = `copilot-cancel-${process.pid}-${Date.now()}`;
    const ac = new AbortController();
    const call = runTask(
      client,
      `Wait #hang:${marker}`,
      {},
      {
        signal: ac.signal,
        onprogress: (p) => {
          if (p.message?.startsWith('Run sleep 1000')) setTimeout(() => ac.abort(), 100);
        },
      },
    );
    await expect(call).rejects.toThrow();
    expect(await gone(marker, 4000)).toBe(true);
  });

  it('kills a CLI that exceeds --timeout', async () => {
    const cwd = await newDir('timeout');
    const { client } = await start({ cwd, args: ['--timeout', '1s'] });
    const marker = `copilot-timeout-${process.pid}-${Date.now()}`;
    const { result, text } = await runTask(client, `Wait #hang:${marker}`);
    expect(result.isError).toBe(true);
    expect(text).toContain('copilot did not finish within 1s (--timeout) and was killed');
    expect(await gone(marker, 1000)).toBe(true);
  });

  it('fails at start when the installed CLI lacks a pinned option', async () => {
    const r = await promisify(execFile)(process.execPath, [
      BIN,
      'copilot-mcp',
      '--copilot-command',
      `${FAKE_COMMAND} --fake-no-mode`,
      '--mode',
      'plan',
    ]).catch((e: { code: number; stderr: string }) => e);
    expect((r as { code: number }).code).toBe(1);
    expect((r as { stderr: string }).stderr).toContain('--mode plan needs');
  });
});

describe('nfltr copilot-mcp (prompt mode and git)', () => {
  it('falls back to copilot -p --allow-all-tools when the CLI has no --acp', async () => {
    const cwd = await newDir('prompt');
    const { client } = await start({
      cwd,
      command: `${FAKE_COMMAND} --fake-no-acp`,
      args: ['--mode', 'autopilot'],
    });
    const { tools } = await client.listTools();
    expect(tools[0]!.description).toContain('prompt mode');
    const { result, text, progress } = await runTask(client, 'Write it #write-file out.txt');
    expect(result.isError).toBeFalsy();
    expect(text).toContain('fake-copilot done');
    expect(progress).toContain(
      'copilot: Working on it (model=claude-sonnet-4.5, mode=autopilot, effort=default)',
    );
    expect(existsSync(join(cwd, 'out.txt'))).toBe(true);
    expect(result.structuredContent).toMatchObject({
      settings: { protocol: 'prompt' },
      details: { protocol: 'prompt' },
    });
  });

  it('--git-code-result: returns the allowed patch with verification, fails a disallowed path', async () => {
    const repo = await newDir('repo');
    gitIn(repo, 'init', '-q', '-b', 'main');
    gitIn(repo, 'config', 'user.email', 't@example.com');
    gitIn(repo, 'config', 'user.name', 'T');
    await writeFile(join(repo, 'README.md'), 'hello\n');
    gitIn(repo, 'add', '-A');
    gitIn(repo, 'commit', '-q', '-m', 'first');
    const { client } = await start({ cwd: repo, args: ['--git-code-result'] });

    const ok = await runTask(client, 'Add #write-file lib/x.js=x', {
      context: { base_ref: 'main' },
      constraints: { allowed_paths: ['lib/**'], verification_commands: ['cat lib/x.js'] },
    });
    expect(ok.result.isError).toBeFalsy();
    expect((ok.result.structuredContent as { git: unknown }).git).toMatchObject({
      base_ref: 'main',
      patch: 'changes.patch',
      changed_paths: [{ path: 'lib/x.js', status: 'added' }],
      verification: [{ command: 'cat lib/x.js', status: 'succeeded', exit_code: 0, output_tail: ['x'] }],
    });
    expect(await readFile(join(ok.task.output_dir, 'changes.patch'), 'utf8')).toContain('+x');

    const bad = await runTask(client, 'Add #write-file other/y.js', {
      constraints: { allowed_paths: ['lib/**'] },
    });
    expect(bad.result.isError).toBe(true);
    expect(bad.text).toContain('changes outside constraints.allowed_paths: other/y.js');
    expect(existsSync(join(repo, 'lib'))).toBe(false);
    expect(gitIn(repo, 'worktree', 'list').split('\n')).toHaveLength(1);
  });
});
