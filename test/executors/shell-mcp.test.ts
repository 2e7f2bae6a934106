/**
 * `nfltr shell-mcp` end to end: the real CLI (bin/nfltr.js, built by `npm run build`) spawned as an MCP server
 * over stdio and driven with the SDK client, the way a worker drives an executor.
 */
import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import {
  type CallToolResult,
  CallToolResultSchema,
  ElicitRequestSchema,
  type ElicitResult,
} from '@modelcontextprotocol/sdk/types.js';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { compileAllowPattern } from '../../src/executors/shell-mcp/allow.js';
import { eventually } from '../helpers/processes.js';
import { connectTapped } from './run-task.js';

const CLI = join(import.meta.dirname, '../../bin/nfltr.js');

let root: string;
let cwd: string;
let clients: Client[] = [];
let taskN = 0;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'nfltr-shell-mcp-'));
  cwd = join(root, 'cwd');
  await mkdir(cwd);
});
afterEach(async () => {
  await Promise.all(clients.map((c) => c.close()));
  clients = [];
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

/** Starts `nfltr shell-mcp` and connects a client; `ask` answers elicitations (undefined: no support). */
async function start(
  opts: { allow?: string[]; timeout?: string; ask?: (message: string) => ElicitResult } = {},
) {
  const args = [CLI, 'shell-mcp', '--cwd', cwd];
  for (const a of opts.allow ?? ['echo *']) args.push('--allow', a);
  if (opts.timeout) args.push('--timeout', opts.timeout);
  const transport = new StdioClientTransport({ command: process.execPath, args, stderr: 'pipe' });
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
  const progress = await connectTapped(client, transport);
  clients.push(client);
  return { client, questions, progress, pid: transport.pid };
}

async function newTask() {
  taskN += 1;
  const dir = join(root, `task-${taskN}`);
  await mkdir(join(dir, 'in'), { recursive: true });
  await mkdir(join(dir, 'out'), { recursive: true });
  return { task_id: `t${taskN}`, input_dir: join(dir, 'in'), output_dir: join(dir, 'out') };
}

async function runTask(
  client: Client,
  constraints: Record<string, unknown> | undefined,
  opts: { onprogress?: (p: { progress: number; message?: string }) => void; signal?: AbortSignal } = {},
) {
  const task = await newTask();
  const result = (await client.callTool(
    { name: 'run_task', arguments: { ...task, objective: 'test', ...(constraints ? { constraints } : {}) } },
    CallToolResultSchema,
    opts,
  )) as CallToolResult;
  return { task, result, text: (result.content[0] as { text: string }).text };
}

describe('allow patterns', () => {
  it('match the whole command; * stops at shell control characters, ** does not', () => {
    const echo = compileAllowPattern('echo *');
    expect(echo.test('echo hello world')).toBe(true);
    expect(echo.test('  echo hi  ')).toBe(true);
    expect(echo.test('echo')).toBe(false);
    expect(echo.test('echo hi; rm -rf x')).toBe(false);
    expect(echo.test('echo $(id)')).toBe(false);
    expect(echo.test('echo a | sh')).toBe(false);
    expect(echo.test('xecho a')).toBe(false);
    expect(compileAllowPattern('npm test').test('npm test --x')).toBe(false);
    expect(compileAllowPattern('echo a > *').test('echo a > f.txt')).toBe(true);
    expect(compileAllowPattern('**').test('anything; at | all')).toBe(true);
    expect(compileAllowPattern('a.b').test('aXb')).toBe(false);
  });
});

describe('nfltr shell-mcp', () => {
  it('lists run_task, runs allowed commands, streams progress and writes logs', async () => {
    // `*` does not match `$`, so the second command needs its own (literal) pattern.
    const { client, progress } = await start({ allow: ['echo *', 'echo "$NFLTR_TASK_OUTPUT_DIR"'] });
    const { tools } = await client.listTools(); // also makes the client check structuredContent
    expect(tools.map((t) => t.name)).toEqual(['run_task']);
    expect(tools[0]!.description).toContain('constraints.commands');

    const { task, result, text } = await runTask(
      client,
      { commands: ['echo one', 'echo "$NFLTR_TASK_OUTPUT_DIR"', 'echo two'] },
      { onprogress: () => {} }, // asks for progress; it is read off the pipe (connectTapped)
    );
    expect(result.isError).toBeFalsy();
    expect(text).toContain('3/3 commands succeeded');
    const sc = result.structuredContent as { ok: boolean; results: Record<string, unknown>[] };
    expect(sc.ok).toBe(true);
    expect(sc.results.map((r) => [r.command, r.exit_code, r.status, r.log])).toEqual([
      ['echo one', 0, 'succeeded', 'command-1.log'],
      ['echo "$NFLTR_TASK_OUTPUT_DIR"', 0, 'succeeded', 'command-2.log'],
      ['echo two', 0, 'succeeded', 'command-3.log'],
    ]);
    expect(typeof sc.results[0]!.duration_ms).toBe('number');

    expect((await readdir(task.output_dir)).sort()).toEqual([
      'command-1.log',
      'command-2.log',
      'command-3.log',
      'summary.json',
    ]);
    expect(await readFile(join(task.output_dir, 'command-1.log'), 'utf8')).toBe('one\n');
    expect(await readFile(join(task.output_dir, 'command-2.log'), 'utf8')).toBe(`${task.output_dir}\n`);
    const summary = JSON.parse(await readFile(join(task.output_dir, 'summary.json'), 'utf8'));
    expect(summary).toMatchObject({ task_id: task.task_id, ok: true, objective: 'test' });

    const messages = progress.map((p) => p.message);
    expect(messages).toContain('[1/3] $ echo one: one');
    expect(messages).toContain('[3/3] $ echo two: two');
    expect(progress.map((p) => p.progress)).toEqual(progress.map((_, i) => i + 1));
  });

  it('stops at a failing command and names it with its exit code', async () => {
    const { client } = await start({ allow: ['**'] });
    const { task, result, text } = await runTask(client, {
      commands: ['echo before', 'echo oops >&2; exit 7', 'echo never'],
    });
    expect(result.isError).toBe(true);
    expect(text).toContain('command `echo oops >&2; exit 7` failed with exit code 7');
    expect(text).toContain('oops');
    const sc = result.structuredContent as { ok: boolean; error: string; results: Record<string, unknown>[] };
    expect(sc.ok).toBe(false);
    expect(sc.results.map((r) => r.exit_code)).toEqual([0, 7]);
    expect(await readFile(join(task.output_dir, 'command-2.log'), 'utf8')).toBe('oops\n');
    expect(await readdir(task.output_dir)).not.toContain('command-3.log');
  });

  it('asks before a command no --allow pattern matches and runs it only on yes', async () => {
    let approve = true;
    const { client, questions } = await start({
      ask: () => ({ action: 'accept', content: { approve } }),
    });
    const yes = await runTask(client, { commands: ['echo ok', 'printf "%s\\n" approved'] });
    expect(yes.result.isError).toBeFalsy();
    expect(questions).toHaveLength(1);
    expect(questions[0]).toContain('run `printf "%s\\n" approved`? yes/no');
    expect(await readFile(join(yes.task.output_dir, 'command-2.log'), 'utf8')).toBe('approved\n');

    approve = false;
    const no = await runTask(client, { commands: [`touch ${join(root, 'should-not-exist')}`] });
    expect(no.result.isError).toBe(true);
    expect(no.text).toContain(`command \`touch ${join(root, 'should-not-exist')}\` was not approved`);
    await expect(readFile(join(root, 'should-not-exist'))).rejects.toThrow();
    expect((no.result.structuredContent as { results: { status: string }[] }).results[0]!.status).toBe(
      'not_approved',
    );
  });

  it("asks before git -c alias.x='!…' x under --allow 'git *', and runs it only on yes", async () => {
    const pwned = join(root, 'pwned-by-alias');
    const { client, questions } = await start({ allow: ['git *'], ask: () => ({ action: 'decline' }) });
    const status = await runTask(client, { commands: ['git --version'] });
    expect(questions).toHaveLength(0);
    expect(status.result.isError).toBeFalsy();
    const { result, text } = await runTask(client, { commands: [`git -c alias.x='!touch ${pwned}' x`] });
    expect(result.isError).toBe(true);
    expect(questions).toHaveLength(1);
    expect(questions[0]).toContain(`it matches --allow "git *", but \`-c\`: git takes code or a program`);
    expect(text).toContain('was not approved');
    await expect(readFile(pwned)).rejects.toThrow();
  });

  it('treats a declined question as not approved', async () => {
    const { client } = await start({ ask: () => ({ action: 'decline' }) });
    const { result, text } = await runTask(client, { commands: ['ls'] });
    expect(result.isError).toBe(true);
    expect(text).toContain('command `ls` was not approved');
  });

  it('fails a non-allowed command naming --allow when the client cannot be asked', async () => {
    const { client } = await start();
    const { result, text } = await runTask(client, { commands: ['ls'] });
    expect(result.isError).toBe(true);
    expect(text).toContain('--allow');
    expect(text).toContain('`ls`');
  });

  it('refuses a task without constraints.commands, clearly', async () => {
    const { client } = await start();
    const missing = await runTask(client, undefined);
    expect(missing.result.isError).toBe(true);
    expect(missing.text).toContain('constraints.commands is missing');
    const wrong = await runTask(client, { commands: ['echo a', 42] });
    expect(wrong.result.isError).toBe(true);
    expect(wrong.text).toContain('constraints.commands[1] must be a non-empty string');
  });

  it('kills the whole process group of a cancelled command quickly', async () => {
    const { client } = await start({ allow: ['**'] });
    const marker = `nfltr-cancel-${process.pid}-${Date.now()}`;
    const ac = new AbortController();
    const begun = Date.now();
    const call = runTask(
      client,
      { commands: [`sh -c 'sleep 30; echo ${marker}' & sleep 30`] },
      {
        signal: ac.signal,
        onprogress: () => {},
      },
    );
    // Aborted once the command runs (its shell carries the marker), not after a guessed delay.
    await eventually(() => pgrepMarker(marker) !== '', 5_000, 'the command to start');
    ac.abort();
    await expect(call).rejects.toThrow();
    // Both the shell's `sleep 30` and the background one are in the command's process group.
    const deadline = Date.now() + 3000;
    let left = '';
    while (Date.now() < deadline) {
      left = pgrepMarker(marker);
      if (left === '') break;
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(left).toBe('');
    expect(Date.now() - begun).toBeLessThan(3500);
  });

  it('kills a command that exceeds --timeout', async () => {
    const { client } = await start({ allow: ['sleep *'], timeout: '300ms' });
    const { result, text } = await runTask(client, { commands: ['sleep 30'] });
    expect(result.isError).toBe(true);
    expect(text).toContain('timed out after 300ms');
    expect((result.structuredContent as { results: { status: string }[] }).results[0]!.status).toBe(
      'timed_out',
    );
  });
});

/** Processes whose command line contains `marker` (empty string when none). */
function pgrepMarker(marker: string): string {
  try {
    return execFileSync('pgrep', ['-f', marker], { encoding: 'utf8' }).trim();
  } catch {
    return ''; // pgrep exits 1 when nothing matches
  }
}
