/**
 * `nfltr claude-mcp` end to end: the real CLI (bin/nfltr.js, built by `npm run build`) spawned as an MCP server
 * over stdio and driven with the SDK client, the way a worker drives an executor, with
 * test/fixtures/fake-claude.mjs standing in for the claude CLI (same stream-json output, same
 * permission-prompt-tool protocol through the real permission bridge).
 */
import { execFile, execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { ElicitRequestSchema, type ElicitResult } from '@modelcontextprotocol/sdk/types.js';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { claudeReadiness } from '../../src/executors/claude-mcp/credentials.js';
import { ClaudeStream } from '../../src/executors/claude-mcp/index.js';
import { findHelpOption, splitCommand } from '../../src/executors/common/index.js';
import { connectTapped, runTaskIn } from './run-task.js';

const BIN = join(import.meta.dirname, '../../bin/nfltr.js');
const FAKE = join(import.meta.dirname, '../fixtures/fake-claude.mjs');
const FAKE_COMMAND = `'${process.execPath}' '${FAKE}'`;

let root: string;
let clients: Client[] = [];
let n = 0;
/** Executors shared by several tests (closed in afterAll): starting one costs about a second. */
const shared: Client[] = [];

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'nfltr-claude-mcp-'));
});
afterEach(async () => {
  await Promise.all(clients.map((c) => c.close()));
  clients = [];
});
afterAll(async () => {
  await Promise.all(shared.map((c) => c.close()));
  await rm(root, { recursive: true, force: true });
});

const gitIn = (cwd: string, ...args: string[]) => execFileSync('git', args, { cwd, encoding: 'utf8' }).trim();

async function newDir(name: string) {
  n += 1;
  const dir = join(root, `${name}-${n}`);
  await mkdir(dir, { recursive: true });
  return dir;
}

interface Question {
  message: string;
  schema: unknown;
}

async function start(opts: {
  cwd: string;
  args?: string[];
  ask?: (q: Question) => ElicitResult;
  keep?: boolean;
}) {
  const transport = new StdioClientTransport({
    command: process.execPath,
    args: [BIN, 'claude-mcp', '--cwd', opts.cwd, '--claude-command', FAKE_COMMAND, ...(opts.args ?? [])],
    stderr: 'pipe',
  });
  const client = new Client(
    { name: 'test-worker', version: '0' },
    { capabilities: opts.ask ? { elicitation: {} } : {} },
  );
  const questions: Question[] = [];
  if (opts.ask) {
    const ask = opts.ask;
    client.setRequestHandler(ElicitRequestSchema, async (req) => {
      const q = {
        message: req.params.message,
        schema: (req.params as { requestedSchema?: unknown }).requestedSchema,
      };
      questions.push(q);
      return ask(q);
    });
  }
  await connectTapped(client, transport);
  (opts.keep ? shared : clients).push(client);
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

describe('claude-mcp - command strings', () => {
  it('split like a shell without expanding anything', () => {
    expect(splitCommand(`node 'a b.mjs' --x "y \\"z\\"" c\\ d $HOME`)).toEqual([
      'node',
      'a b.mjs',
      '--x',
      'y "z"',
      'c d',
      '$HOME',
    ]);
    expect(() => splitCommand('node "open')).toThrow(/unterminated/);
  });

  it('--help parsing finds options, aliases and wrapped choices', () => {
    const help = [
      'Options:',
      '  -m, --model <model>            the model',
      '  --effort, --reasoning-effort <level>  effort (choices: "low",',
      '                                 "high")',
      '  --permission-mode <mode>       mode',
      '  --permission-mode-extra        not the same option',
    ].join('\n');
    expect(findHelpOption(help, '--model')).toMatchObject({ text: expect.stringContaining('the model') });
    expect(findHelpOption(help, '--reasoning-effort')?.choices).toEqual(['low', 'high']);
    expect(findHelpOption(help, '--effort')?.choices).toEqual(['low', 'high']);
    expect(findHelpOption(help, '--permission-mode')?.choices).toBeUndefined();
    expect(findHelpOption(help, '--mode')).toBeUndefined();
    // Claude Code 2.1.33x lists --effort values as a bare list (its real --help, wrapped the same way).
    const real = [
      '  --effort <level>                      Effort level for the current session',
      '                                        (low, medium, high, xhigh, max)',
      "  --model <model>                       Model for the current session. Use an alias (e.g. 'opus', or 'sonnet')",
    ].join('\n');
    expect(findHelpOption(real, '--effort')?.choices).toEqual(['low', 'medium', 'high', 'xhigh', 'max']);
    expect(findHelpOption(real, '--model')?.choices).toBeUndefined();
  });

  it("stream-json - Claude's retries and refusals become progress", () => {
    const said: string[] = [];
    const s = new ClaudeStream((m) => said.push(m), 'nfltr_bridge');
    s.line(
      JSON.stringify({
        type: 'system',
        subtype: 'init',
        model: 'm',
        mcp_servers: [{ name: 'nfltr_bridge', status: 'pending' }],
      }),
    );
    s.line(
      JSON.stringify({
        type: 'system',
        subtype: 'api_retry',
        attempt: 2,
        max_retries: 10,
        retry_delay_ms: 1009,
        error_status: null,
        error: 'unknown',
      }),
    );
    s.line(
      JSON.stringify({
        type: 'system',
        subtype: 'api_retry',
        attempt: 3,
        max_retries: 10,
        retry_delay_ms: 500,
        error_status: 529,
        error: 'overloaded',
      }),
    );
    s.line(
      JSON.stringify({
        type: 'system',
        subtype: 'permission_denied',
        tool_name: 'Bash',
        message: 'needs approval\nmore',
      }),
    );
    expect(said.slice(1)).toEqual([
      'Claude Code: the model API failed (no answer (connection failed)); retry 2 of 10 in 1.0 s',
      'Claude Code: the model API failed (HTTP 529 overloaded); retry 3 of 10 in 0.5 s',
      'Claude Code refused Bash: needs approval',
    ]);
    // A bridge still connecting at init is normal, not a problem to report.
    expect(s.bridgeProblem).toBeUndefined();
  });

  it('check_ready - credentials from the environment or claude login files, else the fix', async () => {
    const home = await mkdtemp(join(tmpdir(), 'nfltr-claude-home-'));
    const none = await claudeReadiness({ HOME: home });
    expect(none.ready).toBe(false);
    expect(none.reason).toContain(join(home, '.claude'));
    expect(none.fix).toMatch(/claude login.*ANTHROPIC_API_KEY.*--executor-env ANTHROPIC_API_KEY/);
    expect(await claudeReadiness({ HOME: home, ANTHROPIC_API_KEY: 'k' })).toEqual({ ready: true });
    expect(await claudeReadiness({ HOME: home, CLAUDE_CODE_USE_BEDROCK: '1' })).toEqual({ ready: true });
    await mkdir(join(home, '.claude'));
    await writeFile(join(home, '.claude', '.credentials.json'), '{"claudeAiOauth":{"accessToken":"x"}}');
    expect(await claudeReadiness({ HOME: home })).toEqual({ ready: true });
    await rm(home, { recursive: true, force: true });
  });
});

describe('nfltr claude-mcp', () => {
  /** One executor without elicitation support, in its own folder. */
  let plain: { client: Client; cwd: string } | undefined;
  const plainExecutor = async () => {
    if (!plain) {
      const cwd = await newDir('plain-shared');
      plain = { client: (await start({ cwd, keep: true })).client, cwd };
    }
    return plain;
  };

  it('runs a task: progress, result text and usage in structuredContent, pinned flags reach claude', async () => {
    const cwd = await newDir('plain');
    const { client } = await start({
      cwd,
      args: ['--model', 'opus', '--reasoning-effort', 'high', '--permission-mode', 'acceptEdits'],
    });
    const { tools } = await client.listTools();
    expect(tools.map((t) => t.name)).toEqual(['run_task', 'check_ready']);
    expect(tools[0]!.description).toContain('model opus');
    expect(tools[0]!.description).toContain('not changeable per task');

    const { task, result, text, progress } = await runTask(client, 'Summarise the repository');
    expect(result.isError).toBeFalsy();
    expect(text).toContain('fake-claude done (model=opus, effort=high, permission-mode=acceptEdits)');
    const sc = result.structuredContent as Record<string, unknown>;
    expect(sc).toMatchObject({
      task_id: task.task_id,
      executor: 'claude-mcp',
      ok: true,
      model: 'opus',
      settings: { model: 'opus', reasoning_effort: 'high', permission_mode: 'acceptEdits' },
      usage: {
        input_tokens: 1200,
        output_tokens: 250,
        cache_read_tokens: 4000,
        cache_write_tokens: 300,
        cost_usd: 0.0123,
        turns: 1,
        api_duration_ms: 800,
      },
    });
    expect(sc.session_id).toMatch(/^[0-9a-f-]{36}$/);
    expect(text).toContain('$0.0123');
    expect(progress[0]).toBe('Claude Code started (model opus, permission mode acceptEdits)');
    expect(progress).toContain('Claude: Working on: Summarise the repository');
    expect((await readdir(task.output_dir)).sort()).toEqual([
      'claude-events.jsonl',
      'claude-mcp-summary.json',
    ]);
    const events = (await readFile(join(task.output_dir, 'claude-events.jsonl'), 'utf8')).trim().split('\n');
    expect(JSON.parse(events.at(-1)!)).toMatchObject({ type: 'result', subtype: 'success' });
  });

  it('routes a permission prompt to the planner: allowed runs, refused does not and Claude hears why', async () => {
    const cwd = await newDir('perm');
    let approve = true;
    const { client, questions } = await start({
      cwd,
      ask: (): ElicitResult => ({
        action: 'accept',
        content: approve ? { approve: true } : { approve: false, reason: 'not now' },
      }),
    });
    const yes = await runTask(client, 'Create the marker #permission');
    expect(yes.result.isError).toBeFalsy();
    expect(questions).toHaveLength(1);
    expect(questions[0]!.message).toContain('Claude Code asks to run Bash: touch approved.txt');
    expect(questions[0]!.schema).toMatchObject({ required: ['approve'] });
    expect(existsSync(join(cwd, 'approved.txt'))).toBe(true);
    expect(yes.progress).toContain('planner allowed Bash: touch approved.txt');
    expect((yes.result.structuredContent as { details: unknown }).details).toMatchObject({
      permission_requests: [{ tool: 'Bash: touch approved.txt', decision: 'allowed' }],
    });

    await rm(join(cwd, 'approved.txt'));
    approve = false;
    const no = await runTask(client, 'Create the marker #permission');
    expect(no.result.isError).toBeFalsy(); // Claude carries on without the tool
    expect(existsSync(join(cwd, 'approved.txt'))).toBe(false);
    expect((no.result.structuredContent as { details: unknown }).details).toMatchObject({
      permission_denials: ['Bash'],
      permission_requests: [{ decision: 'denied', reason: 'not now' }],
    });
    const events = await readFile(join(no.task.output_dir, 'claude-events.jsonl'), 'utf8');
    expect(events).toContain('The planner refused this tool use: not now');
  });

  it('denies permission prompts when the client cannot be asked', async () => {
    const { client, cwd } = await plainExecutor();
    const { result } = await runTask(client, 'Create the marker #permission');
    expect(existsSync(join(cwd, 'approved.txt'))).toBe(false);
    expect((result.structuredContent as { details: unknown }).details).toMatchObject({
      permission_requests: [
        { decision: 'denied', reason: expect.stringContaining('no elicitation support') },
      ],
    });
  });

  it('reports an error result and a crash as isError with the CLI text', async () => {
    const { client } = await plainExecutor();
    const err = await runTask(client, 'Do it #error');
    expect(err.result.isError).toBe(true);
    expect(err.text).toContain('FAILED: API Error: 529');
    expect(err.result.structuredContent).toMatchObject({ ok: false, usage: { cost_usd: 0.0123 } });

    const crash = await runTask(client, 'Do it #crash');
    expect(crash.result.isError).toBe(true);
    expect(crash.text).toContain('claude exited with code 2 before its result: Error: fake-claude crashed');
  });

  it('kills the CLI process group on cancel', async () => {
    const { client } = await plainExecutor();
    const marker = `claude-cancel-${process.pid}-${Date.now()}`;
    const ac = new AbortController();
    const call = runTask(
      client,
      `Wait #hang:${marker}`,
      {},
      {
        signal: ac.signal,
        onprogress: (p) => {
          if (p.message === 'Bash: sleep 1000') setTimeout(() => ac.abort(), 100);
        },
      },
    );
    await expect(call).rejects.toThrow();
    expect(await gone(marker, 4000)).toBe(true);
  });

  it('kills a CLI that exceeds --timeout, SIGKILL when it ignores SIGTERM', async () => {
    const cwd = await newDir('timeout');
    const { client } = await start({ cwd, args: ['--timeout', '1s'] });
    const marker = `claude-timeout-${process.pid}-${Date.now()}`;
    const begun = Date.now();
    const { result, text } = await runTask(client, `Wait #hang:${marker} #stubborn`);
    expect(result.isError).toBe(true);
    expect(text).toContain('claude did not finish within 1s (--timeout) and was killed');
    expect(Date.now() - begun).toBeLessThan(8000);
    expect(await gone(marker, 1000)).toBe(true);
  });

  it('refuses git constraints on an executor started without --git-code-result', async () => {
    const { client } = await plainExecutor();
    const { result, text } = await runTask(client, 'x', { constraints: { allowed_paths: ['src/'] } });
    expect(result.isError).toBe(true);
    expect(text).toContain('need --git-code-result');
  });

  it('fails at start when the installed CLI lacks a pinned option', async () => {
    const r = await promisify(execFile)(
      process.execPath,
      [
        BIN,
        'claude-mcp',
        '--claude-command',
        `${FAKE_COMMAND} --fake-no-effort`,
        '--reasoning-effort',
        'high',
      ],
      {},
    ).catch((e: { code: number; stderr: string }) => e);
    expect((r as { code: number }).code).toBe(1);
    expect((r as { stderr: string }).stderr).toContain('--reasoning-effort high needs');
    expect((r as { stderr: string }).stderr).toContain('--effort');
  });
});

describe('nfltr claude-mcp --git-code-result', () => {
  let repo: string;
  let gitClient: Client;
  beforeAll(async () => {
    repo = join(root, 'repo');
    await mkdir(join(repo, 'src'), { recursive: true });
    gitIn(repo, 'init', '-q', '-b', 'main');
    gitIn(repo, 'config', 'user.email', 't@example.com');
    gitIn(repo, 'config', 'user.name', 'T');
    await writeFile(join(repo, 'README.md'), 'hello\n');
    await writeFile(join(repo, 'src', 'a.ts'), 'export const a = 1;\n');
    gitIn(repo, 'add', '-A');
    gitIn(repo, 'commit', '-q', '-m', 'first');
    gitClient = (await start({ cwd: repo, args: ['--git-code-result'], keep: true })).client;
  });

  it('returns the patch of allowed changes with verification results, and removes the worktree', async () => {
    const client = gitClient;
    const { task, result, text } = await runTask(
      client,
      'Add a module #write-file src/b.ts=export_b #write-file README.md=changed',
      {
        constraints: {
          allowed_paths: ['src/', 'README.md'],
          require_changed_paths: true,
          verification_commands: ['test -f src/b.ts', 'grep changed README.md'],
        },
      },
    );
    expect(result.isError).toBeFalsy();
    const git = (result.structuredContent as { git: Record<string, unknown> }).git;
    expect(git).toMatchObject({
      base_ref: 'HEAD',
      base_commit: gitIn(repo, 'rev-parse', 'HEAD'),
      patch: 'changes.patch',
      changed_paths: [
        { path: 'README.md', status: 'modified' },
        { path: 'src/b.ts', status: 'added' },
      ],
      disallowed_paths: [],
      verification: [
        { command: 'test -f src/b.ts', status: 'succeeded', exit_code: 0 },
        { command: 'grep changed README.md', status: 'succeeded', exit_code: 0, output_tail: ['changed'] },
      ],
    });
    const patch = await readFile(join(task.output_dir, 'changes.patch'), 'utf8');
    expect(patch).toContain('+export_b');
    expect(text).toContain('changes.patch');
    // The user's checkout is untouched and no worktree is left behind.
    expect(await readFile(join(repo, 'README.md'), 'utf8')).toBe('hello\n');
    expect(gitIn(repo, 'worktree', 'list').split('\n')).toHaveLength(1);
  });

  it('fails a change outside allowed_paths, naming it', async () => {
    const client = gitClient;
    const { result, text } = await runTask(client, 'Leak #write-file secrets.txt #write-file src/ok.ts', {
      constraints: { allowed_paths: ['src/'], verification_commands: ['true'] },
    });
    expect(result.isError).toBe(true);
    expect(text).toContain('changes outside constraints.allowed_paths: secrets.txt');
    const git = (result.structuredContent as { git: { disallowed_paths: string[]; verification: unknown[] } })
      .git;
    expect(git.disallowed_paths).toEqual(['secrets.txt']);
    expect(git.verification).toEqual([]); // not run for a change that is refused anyway
  });

  it('fails require_changed_paths when nothing changed, and reports failing verification', async () => {
    const client = gitClient;
    const none = await runTask(client, 'Look only', { constraints: { require_changed_paths: true } });
    expect(none.result.isError).toBe(true);
    expect(none.text).toContain('constraints.require_changed_paths is set but the task changed no file');

    const bad = await runTask(client, 'Change #write-file src/a.ts=broken', {
      context: { base_ref: 'main' },
      constraints: { verification_commands: ['echo type error >&2; exit 4'] },
    });
    expect(bad.result.isError).toBe(true);
    expect(bad.text).toContain('verification failed: `echo type error >&2; exit 4` exited with code 4');
    expect(bad.text).toContain('    type error');
  });

  it('runs two tasks on one repository at once without collisions', async () => {
    // Two executor processes, as a worker with --max-tasks 2 runs them.
    const other = (await start({ cwd: repo, args: ['--git-code-result'] })).client;
    const [ra, rb] = await Promise.all([
      runTask(gitClient, 'A #write-file src/same.ts=from_a'),
      runTask(other, 'B #write-file src/same.ts=from_b'),
    ]);
    expect(ra.result.isError).toBeFalsy();
    expect(rb.result.isError).toBeFalsy();
    const pa = await readFile(join(ra.task.output_dir, 'changes.patch'), 'utf8');
    const pb = await readFile(join(rb.task.output_dir, 'changes.patch'), 'utf8');
    expect(pa).toContain('+from_a');
    expect(pa).not.toContain('from_b');
    expect(pb).toContain('+from_b');
    expect(existsSync(join(repo, 'src', 'same.ts'))).toBe(false);
    expect(gitIn(repo, 'worktree', 'list').split('\n')).toHaveLength(1);
  });
});
