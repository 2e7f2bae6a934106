/**
 * The generic tool mapping against a third-party MCP server: the real `@modelcontextprotocol/server-everything`
 * (a dev dependency) behind real `nfltr worker` processes and a relay. A tool whose inputs all have
 * defaults is called (its progress becomes `running`), the elicitation tool is offered at start (the
 * check declares the same capabilities as task sessions) and its question round-trips, a tool that
 * requires task-based execution runs as an MCP task, a prompt carries no empty Context/Constraints, and
 * a server without a task tool is refused with the alternatives and its tools one per line.
 */
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { taskStateName } from '../../src/protocol/a2a.js';
import { withRelay } from '../helpers/processes.js';
import { startWorker, TestPlanner, type WorkerProcess } from './helpers.js';

const EVERYTHING = resolve(
  import.meta.dirname,
  '../../node_modules/@modelcontextprotocol/server-everything/dist/index.js',
);
const command = `"${process.execPath}" "${EVERYTHING}"`;

const fixture = withRelay({ accounts: ['acme'] });
let planner: TestPlanner;
const workers: WorkerProcess[] = [];

const start = async (name: string, tool: string) => {
  const w = await startWorker(fixture.relay, fixture.key, {
    name,
    mcpCommand: command,
    args: ['--mcp-tool', tool],
  });
  workers.push(w);
  return w;
};

beforeAll(async () => {
  if (!existsSync(EVERYTHING)) {
    throw new Error(
      `@modelcontextprotocol/server-everything is missing (${EVERYTHING}); run npm ci (it is a dev dependency)`,
    );
  }
  planner = await new TestPlanner(fixture.relay, fixture.key).start();
  await Promise.all([
    start('w-long', 'trigger-long-running-operation'),
    start('w-elicit', 'trigger-elicitation-request'),
    start('w-research', 'simulate-research-query'),
    start('w-echo', 'echo'),
  ]);
}, 60_000);

afterAll(async () => {
  await planner?.close();
  await Promise.all(workers.map((w) => w.stop()));
});

// Concurrent: each case has its own worker, and the long operation waits 10 s (its default duration).
describe.concurrent('server-everything behind nfltr worker', () => {
  it('a tool whose inputs all have defaults is called, its progress becomes running', async () => {
    const id = await planner.startTask('w-long', { objective: 'run the long operation' });
    const end = await planner.waitEnd(id, 30_000);
    expect(taskStateName(end.state), end.message).toBe('completed');
    const running = planner.events.get(id)!.filter((e) => taskStateName(e.state) === 'running');
    expect(running.map((e) => [e.progress, e.total])).toEqual(
      expect.arrayContaining([
        [1, 5],
        [5, 5],
      ]),
    );
    expect(end.resultText).toContain('Long running operation completed');
  }, 40_000);

  it('the elicitation tool exists at start and its question round-trips', async () => {
    const id = await planner.startTask('w-elicit', { objective: 'fill the form' });
    const q = await planner.waitFor(id, 'waiting_input');
    expect(q.question).toBe('Please provide inputs for the following fields:');
    expect(JSON.parse(q.requestedSchemaJson).properties).toHaveProperty('name');
    await planner.respond('w-elicit', id, { content: { name: 'Ada', check: true } });
    const end = await planner.waitEnd(id);
    expect(taskStateName(end.state), end.message).toBe('completed');
    expect(end.resultText).toContain('Ada');
  });

  it('a tool that requires task-based execution runs as an MCP task, its status as running', async () => {
    const id = await planner.startTask('w-research', { objective: 'quantum error correction' });
    const end = await planner.waitEnd(id, 30_000);
    expect(taskStateName(end.state), end.message).toBe('completed');
    expect(end.resultText).toContain('# Research Report: quantum error correction');
    const messages = planner.events.get(id)!.map((e) => e.message);
    expect(messages.some((m) => /executor task .* working: Gathering sources/.test(m))).toBe(true);
    expect(workers.find((w) => w.name === 'w-research')!.stderr()).toContain('task_based');
  }, 40_000);

  it('a prompt carries no empty Context/Constraints lines', async () => {
    const id = await planner.startTask('w-echo', { objective: 'say hi', context: {}, constraints: {} });
    const end = await planner.waitEnd(id);
    expect(taskStateName(end.state), end.message).toBe('completed');
    expect(end.resultText).toMatch(/^Echo: say hi\n\nInput files/);
  });

  it('without a task tool the worker refuses, naming the alternatives, tools one per line', async () => {
    const err = await startWorker(fixture.relay, fixture.key, { name: 'w-none', mcpCommand: command }).then(
      () => '',
      (e: Error) => e.message,
    );
    expect(err).toMatch(/exited with 2/);
    expect(err).toContain('nfltr claude-mcp, nfltr copilot-mcp, nfltr codex-mcp');
    expect(err).toContain('--mcp-tool NAME');
    expect(err).toMatch(/its tools:\n {2}echo\n {2}get-annotated-message\n/);
  });
});
