/**
 * The worker's pure parts: command-line splitting, label classes, tool choice and argument building,
 * TaskStart validation, answers to elicitations, and the CLI flags.
 */

import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { create } from '@bufbuild/protobuf';
import type { Tool } from '@modelcontextprotocol/sdk/types.js';
import { Command } from 'commander';
import { describe, expect, it, vi } from 'vitest';
import { register, type WorkerCommandOptions } from '../../src/cli/worker.js';
import { TaskStartSchema } from '../../src/protocol/a2a.js';
import { silentLogger } from '../../src/util/log.js';
import { cgroupParent, sweepStaleCgroups } from '../../src/worker/cgroup.js';
import type { ExecutorSession } from '../../src/worker/executor.js';
import { ExecutorTransport, LineReader } from '../../src/worker/executor-transport.js';
import {
  answerContent,
  buildToolArguments,
  checkUserLabels,
  chooseTool,
  claudeMcpCommand,
  executorEnvironment,
  isClaudeCodeServer,
  loadPct,
  mainStringField,
  memoryClassMb,
  parseExecutorCommand,
  parseTaskStart,
  splitCommandLine,
} from '../../src/worker/index.js';
import { cutText } from '../../src/worker/task-runner.js';
import { REFILL_AFTER_MS, WarmPool } from '../../src/worker/warm-pool.js';

const tool = (name: string, properties: Record<string, { type: string }>, required: string[] = []): Tool => ({
  name,
  inputSchema: { type: 'object', properties, required },
});

describe('worker units', () => {
  it('warm pool - a taken session is replaced after its task ended, or a second after it was taken', async () => {
    vi.useFakeTimers();
    try {
      let started = 0;
      const session = () =>
        ({
          alive: true,
          policy: 'single',
          closed: new Promise(() => {}),
          assign: () => {},
          stop: async () => {},
        }) as unknown as ExecutorSession;
      const pool = new WarmPool({
        size: 1,
        start: async () => {
          started++;
          return session();
        },
        idle: { logFile: '/dev/null' },
        logger: silentLogger,
      });
      await vi.advanceTimersByTimeAsync(0);
      expect([started, pool.ready]).toEqual([1, 1]);
      expect(pool.take()).toBeDefined();
      // Not while its task runs: starting a process takes the CPU that task is waiting for.
      await vi.advanceTimersByTimeAsync(REFILL_AFTER_MS / 2);
      expect(started).toBe(1);
      pool.refill(); // the task sent its final event
      await vi.advanceTimersByTimeAsync(100);
      expect([started, pool.ready]).toEqual([2, 1]);
      // A long task: its replacement warms while it runs.
      pool.take();
      await vi.advanceTimersByTimeAsync(REFILL_AFTER_MS - 1);
      expect(started).toBe(2);
      await vi.advanceTimersByTimeAsync(1);
      expect([started, pool.ready]).toEqual([3, 1]);
      await pool.close();
    } finally {
      vi.useRealTimers();
    }
  });

  it('executor env - keeps the relay key out and passes through only the named variables', () => {
    const env = {
      PATH: '/bin',
      NFLTR_API_KEY: 'k',
      NFLTR_API_KEY_FILE: '/k',
      NFLTR_E2EE_KEY_FILE: '/p',
      NFLTR_SERVER: 'relay:1',
      NFLTR_LOG_LEVEL: 'debug',
      ANTHROPIC_API_KEY: 'a',
      SECRET: 's',
    };
    const out = executorEnvironment({}, env, ['ANTHROPIC_API_KEY']);
    expect(out).toMatchObject({ PATH: '/bin', NFLTR_LOG_LEVEL: 'debug', ANTHROPIC_API_KEY: 'a' });
    expect(Object.keys(out).filter((k) => k.startsWith('NFLTR_'))).toEqual(['NFLTR_LOG_LEVEL']);
    expect(out.SECRET).toBeUndefined();
    expect(() => executorEnvironment({}, env, ['NFLTR_API_KEY'])).toThrow(
      /--executor-env NFLTR_API_KEY: that is the worker's own secret/,
    );
  });

  it('command line - quotes, escapes and ~ like a shell, no shell features', () => {
    expect(
      splitCommandLine(`nfltr shell-mcp --cwd ~/src --allow 'npm test *' --x "a \\"b\\" c" d\\ e`),
    ).toEqual([
      'nfltr',
      'shell-mcp',
      '--cwd',
      `${homedir()}/src`,
      '--allow',
      'npm test *',
      '--x',
      'a "b" c',
      'd e',
    ]);
    expect(splitCommandLine('echo $HOME; ls')).toEqual(['echo', '$HOME;', 'ls']);
    expect(() => splitCommandLine(`say 'unterminated`)).toThrow(/unterminated single quote/);
    expect(() => parseExecutorCommand('   ')).toThrow(/--mcp-command is empty/);
    expect(parseExecutorCommand('nfltr shell-mcp', { execPath: '/node', script: '/bin/nfltr.js' })).toEqual({
      command: '/node',
      args: ['/bin/nfltr.js', 'shell-mcp'],
    });
  });

  it('labels - automatic keys refused, memory classes stable at boundaries, load as a percent', () => {
    expect(() => checkUserLabels({ 'nfltr.worker.tool': 'x' })).toThrow(/set by the worker itself/);
    expect(() => checkUserLabels({ gpu: 'a100' })).not.toThrow();
    expect(memoryClassMb(5000)).toBe(4096);
    expect(memoryClassMb(1000)).toBe(768);
    expect(memoryClassMb(5100, 5120)).toBe(5120); // just under the class: keeps it
    expect(memoryClassMb(3000, 5120)).toBe(2048);
    expect(loadPct({ load1: 0.5, cores: 2, busySlots: 1, maxTasks: 2 })).toBe(50);
    expect(loadPct({ load1: 8, cores: 2, busySlots: 0, maxTasks: 2 })).toBe(100);
    expect(loadPct({ load1: 0.1, cores: 4, busySlots: 2, maxTasks: 3 })).toBe(67);
  });

  it('tool choice - --mcp-tool, then run_task, then the only tool; otherwise refuse listing tools', () => {
    const runTask = tool('run_task', { objective: { type: 'string' } });
    const prompt = tool('prompt', { model: { type: 'string' }, prompt: { type: 'string' } }, ['prompt']);
    expect(chooseTool([prompt, runTask]).name).toBe('run_task');
    expect(chooseTool([prompt])).toMatchObject({ name: 'prompt', mode: 'prompt', promptField: 'prompt' });
    expect(chooseTool([prompt, runTask], 'prompt').name).toBe('prompt');
    // A refusal names the working executors and lists the tools one per line, names only.
    const refusal = (() => {
      try {
        chooseTool([prompt, { ...tool('other', {}), description: 'x'.repeat(4000) }]);
      } catch (err) {
        return (err as Error).message;
      }
    })();
    expect(refusal).toMatch(/nfltr claude-mcp, nfltr copilot-mcp, nfltr codex-mcp\), or .*--mcp-tool NAME/);
    expect(refusal).toMatch(/its tools:\n {2}prompt\n {2}other$/);
    expect(refusal).not.toContain('xxx');
    expect(() => chooseTool([prompt], 'nope')).toThrow(/--mcp-tool nope: the executor has no such tool/);
    expect(() => chooseTool([tool('numbers', { n: { type: 'number' } }, ['n'])])).toThrow(
      /no string input .* needs n, which the worker cannot fill/,
    );
    // Every input optional (or defaulted): called without arguments.
    expect(chooseTool([tool('numbers', { n: { type: 'number' } })])).toMatchObject({ mode: 'bare' });
    // check_ready is never the task tool; a tool that needs task-based execution is marked so.
    const needsTask = { ...prompt, execution: { taskSupport: 'required' as const } };
    expect(chooseTool([needsTask, tool('check_ready', {})])).toMatchObject({ name: 'prompt', task: true });
  });

  it('claude mcp serve - recognised by server name or tools, replaced by nfltr claude-mcp', () => {
    const claudeTools = ['Agent', 'Bash', 'Edit', 'Read', 'Write', 'Skill'].map((n) => tool(n, {}));
    expect(isClaudeCodeServer({ name: 'claude/tengu', version: '2.1.332' }, [tool('Bash', {})])).toBe(true);
    expect(isClaudeCodeServer({ name: 'other', version: '1' }, claudeTools)).toBe(true);
    expect(isClaudeCodeServer({ name: 'other', version: '1' }, [tool('Bash', {})])).toBe(false);
    expect(isClaudeCodeServer({ name: 'claude/x', version: '1' }, [tool('run_task', {})])).toBe(false);
    const self = { execPath: '/node', script: '/nfltr.js' };
    expect(
      claudeMcpCommand({ command: 'npx', args: ['my claude', 'mcp', 'serve', '--debug'] }, self, '/r'),
    ).toEqual({
      command: '/node',
      args: ['/nfltr.js', 'claude-mcp', '--cwd', '/r', '--claude-command', "npx 'my claude'"],
    });
    expect(splitCommandLine("npx 'my claude'")).toEqual(['npx', 'my claude']);
  });

  it('arguments - run_task gets the contract fields; an adapted tool one composed prompt', () => {
    expect(
      mainStringField({
        properties: { a: { type: 'string' }, query: { type: 'string' } },
        required: ['a', 'query'],
      }),
    ).toBe('query');
    expect(
      mainStringField({ properties: { a: { type: 'string' }, b: { type: 'string' } }, required: ['b'] }),
    ).toBe('b');
    const input = {
      taskId: 't1',
      objective: 'do it',
      constraints: { max_minutes: 5 },
      inputDir: '/in',
      outputDir: '/out',
    };
    expect(buildToolArguments(chooseTool([tool('run_task', {})]), input)).toEqual({
      task_id: 't1',
      objective: 'do it',
      constraints: { max_minutes: 5 },
      input_dir: '/in',
      output_dir: '/out',
    });
    const adapted = buildToolArguments(
      chooseTool([tool('ask', { question: { type: 'string' } }, ['question'])]),
      input,
    );
    expect(Object.keys(adapted)).toEqual(['question']);
    expect(adapted.question).toMatch(/^do it\n\nConstraints \(JSON\):\n\{\n {2}"max_minutes": 5\n\}/);
    expect(adapted.question).toContain('/out');
    // Nothing sent, nothing said: no empty Context/Constraints lines.
    const bare = buildToolArguments(chooseTool([tool('ask', { q: { type: 'string' } }, ['q'])]), {
      ...input,
      context: {},
      constraints: undefined,
    });
    expect(bare.q).not.toMatch(/Context|Constraints/);
    // Other required strings (Claude's Agent tool needs a description) get the objective's first line.
    const agent = tool('Agent', { description: { type: 'string' }, prompt: { type: 'string' } }, [
      'description',
      'prompt',
    ]);
    expect(buildToolArguments(chooseTool([agent]), input)).toMatchObject({ description: 'do it' });
    expect(buildToolArguments(chooseTool([tool('n', { n: { type: 'number' } })]), input)).toEqual({});
  });

  it('task start - validated into a spec, or the problem in words', () => {
    const start = (init: Parameters<typeof create<typeof TaskStartSchema>>[1]) =>
      parseTaskStart('p', create(TaskStartSchema, { taskId: 't', objective: 'x', ...init }));
    expect(start({ contextJson: '{"a":1}' })).toMatchObject({ context: { a: 1 }, constraints: undefined });
    expect(start({ contextJson: '[1]' })).toBe('context_json is not a JSON object');
    expect(start({ constraintsJson: '{' })).toMatch(/^constraints_json is not valid JSON/);
    expect(start({ objective: '' })).toBe('objective is empty');
    expect(start({ inputFiles: [{ name: '../etc/passwd', size: 1n, sha256: '' }] })).toMatch(
      /'\.\.' is not allowed/,
    );
  });

  it('answers - objects pass through; a bare value goes into the schema field', () => {
    const params = {
      message: 'q',
      requestedSchema: {
        type: 'object' as const,
        properties: { env: { type: 'string' as const } },
        required: ['env'],
      },
    };
    expect(answerContent('{"env":"prod"}', params)).toEqual({ env: 'prod' });
    expect(answerContent('"staging"', params)).toEqual({ env: 'staging' });
    expect(answerContent('plain words', params)).toEqual({ env: 'plain words' });
    expect(answerContent('', params)).toEqual({});
  });

  it('sizes - event texts are cut to a byte budget, whole characters, saying how much went', () => {
    expect(cutText('short', 10)).toBe('short');
    const cut = cutText('é'.repeat(100), 11);
    expect(cut).toBe(`${'é'.repeat(5)}… [190 more bytes cut]`);
  });

  it("cgroups - a gone worker's executor cgroup is swept: what is in it killed, the folder removed", async () => {
    const parent = cgroupParent();
    if (parent instanceof Error)
      throw new Error(`cgroup v2 is not usable here (${parent.message}); this check needs it`);
    // A worker pid that is surely gone: a process that has exited.
    const gone = spawn('true');
    await new Promise((r) => gone.once('exit', r));
    const dir = join(parent, `nfltr-exec-${gone.pid}-1`);
    mkdirSync(dir);
    const orphan = spawn('sleep', ['30'], { detached: true, stdio: 'ignore' });
    writeFileSync(join(dir, 'cgroup.procs'), String(orphan.pid));
    const died = new Promise((r) => orphan.once('exit', (_c, sig) => r(sig)));
    // The count is not checked: it also includes what a worker of a test running alongside left behind, and
    // that worker may have swept this group first. What matters is that the orphan died and the folder went.
    await sweepStaleCgroups(parent);
    expect(await died).toBe('SIGKILL');
    expect(existsSync(dir)).toBe(false);
  });

  it('sizes - lines across chunks, CRLF, and a line over the limit stops the reader', () => {
    const r = new LineReader(10);
    expect(r.push(Buffer.from('{"a":'))).toEqual([]);
    expect(r.push(Buffer.from('1}\r\n{"b"'))).toEqual(['{"a":1}']);
    expect(r.push(Buffer.from(':2}\n\n'))).toEqual(['{"b":2}', '']);
    expect(r.overflow).toBe(false);
    expect(r.push(Buffer.from('x'.repeat(11)))).toEqual([]);
    expect(r.overflow).toBe(true);
    expect(r.push(Buffer.from('\n{}\n'))).toEqual([]);
  });

  it('sizes - an executor message over the limit stops the executor, saying why', async () => {
    const t = new ExecutorTransport({
      command: process.execPath,
      args: ['-e', "process.stdout.write('x'.repeat(2 * 1024 * 1024)); setInterval(() => {}, 1000)"],
      env: {},
      maxMessageBytes: 1024 * 1024,
    });
    const closed = new Promise<void>((r) => {
      t.onclose = r;
    });
    t.onerror = () => {};
    await t.start();
    await closed;
    expect(t.fatal?.message).toMatch(/an MCP message of more than 1048576 bytes.*output_dir/);
  });

  it('cli - --a2a-e2ee=false and --a2a-e2ee false both turn encryption off; defaults apply', async () => {
    const parse = async (...argv: string[]) => {
      const program = new Command().exitOverride();
      register(program);
      let got: WorkerCommandOptions | undefined;
      program.commands[0]!.action((o: WorkerCommandOptions) => {
        got = o;
      });
      await program.parseAsync(['worker', '--mcp-command', 'x', ...argv], { from: 'user' });
      return got!;
    };
    expect((await parse()).a2aE2ee).toBe(true);
    expect((await parse('--a2a-e2ee')).a2aE2ee).toBe(true);
    expect((await parse('--a2a-e2ee=false')).a2aE2ee).toBe(false);
    expect((await parse('--a2a-e2ee', 'false', '--max-tasks', '2')).a2aE2ee).toBe(false);
    const o = await parse('--labels', 'a=1,b=2', '--heartbeat-interval', '5s', '--shutdown-grace', '1m');
    expect(o).toMatchObject({
      labels: { a: '1', b: '2' },
      heartbeatInterval: 5000,
      shutdownGrace: 60_000,
      maxTasks: 1,
    });
    expect(o.maxArtifactBytes).toBe(1024 * 1024 * 1024);
    expect(o.stallAfter).toBe(60_000);
    expect((await parse('--stall-after', '90s')).stallAfter).toBe(90_000);
    expect(o.slotLease).toBe(60_000);
    expect((await parse('--slot-lease', '0')).slotLease).toBe(0);
    expect((await parse('--executor-user', 'builder')).executorUser).toBe('builder');
    process.env.NFLTR_STALL_AFTER = '2m';
    try {
      expect((await parse()).stallAfter).toBe(120_000);
    } finally {
      delete process.env.NFLTR_STALL_AFTER;
    }
    await expect(parse('--stall-after', 'soon')).rejects.toThrow(/expected a duration like 500ms/);
    await expect(parse('--a2a-e2ee=maybe')).rejects.toThrow(/expected true or false/);
  });
});
