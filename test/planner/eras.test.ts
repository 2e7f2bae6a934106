/**
 * `nfltr mcp` driven by two independent client implementations, each in both protocol eras: the
 * official TypeScript SDK (v1 `Client` for 2025-11-25, v2 `Client` pinned to 2026-07-28) and the Python
 * `mcp` SDK 2.3 (test/fixtures/mcp-python-client.py, from the venv `.ci/run` creates). One scenario for
 * all four: every tool in the tools/list sent right after the handshake, an unknown argument refused,
 * a task-augmented orchestrate_task and wait_for_tasks, a wrong-typed answer refused with the task
 * still waiting, the corrected answer accepted, and wait_for_tasks reporting each event once.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { promisify } from 'node:util';
import { Client as ModernClient } from '@modelcontextprotocol/client';
import { StdioClientTransport as ModernStdio } from '@modelcontextprotocol/client/stdio';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import {
  type CallToolResult,
  CallToolResultSchema,
  CreateTaskResultSchema,
} from '@modelcontextprotocol/sdk/types.js';
import { PROTOCOL_VERSION_META_KEY as SDK_PROTOCOL_VERSION_META_KEY } from '@modelcontextprotocol/server';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PROTOCOL_VERSION_META_KEY } from '../../src/planner/server.js';
import { createKey, NFLTR_BIN, type RelayProcess, startRelayProcess, tempDir } from '../helpers/processes.js';
import { ALL_TOOLS, scriptedExecutor, startWorker, type WorkerProcess } from './helpers.js';

const SCHEMA = {
  type: 'object',
  properties: { approve: { type: 'boolean', description: 'ship it?' } },
  required: ['approve'],
};
const PYTHON_CLIENT = resolve(import.meta.dirname, '../fixtures/mcp-python-client.py');
/** The venv `.ci/run` creates with the Python `mcp` SDK; NFLTR_TEST_PYTHON names another interpreter. */
const PYTHON = process.env.NFLTR_TEST_PYTHON ?? resolve(import.meta.dirname, '../../.venv-test/bin/python');
const HAVE_PYTHON = existsSync(PYTHON);
const WORKER = 'eras-worker';

interface Call {
  is_error: boolean;
  text: string;
  structured?: Record<string, unknown> | null;
}

/** What one client saw; the Python fixture prints the same shape. */
interface Report {
  protocol_version: string;
  tools: string[];
  unknown_argument: Call;
  wait_task: Call;
  wrong_answer: Call;
  after_wrong: Call;
  good_answer: Call;
  orchestrate_task: Call;
  wait_done: Call;
  wait_again: Call;
  /** Status of each task handle a task-augmented call returned, by tool. */
  handles: Record<string, string>;
}

/** A connected TypeScript client: plain calls, and task-augmented ones where the SDK can make them. */
interface TsClient {
  version: string;
  tools: () => Promise<string[]>;
  call: (name: string, args: Record<string, unknown>) => Promise<Call>;
  taskCall?: (name: string, args: Record<string, unknown>, handles: Record<string, string>) => Promise<Call>;
  close: () => Promise<void>;
}

const callView = (r: { content?: unknown; isError?: boolean; structuredContent?: unknown }): Call => ({
  is_error: r.isError === true,
  text: ((r.content ?? []) as { type: string; text?: string }[]).map((c) => c.text ?? '').join(''),
  structured: (r.structuredContent as Record<string, unknown> | undefined) ?? null,
});

const plannerArgs = (relay: RelayProcess, name: string) => [
  NFLTR_BIN,
  'mcp',
  '--proxy-url',
  relay.httpUrl,
  '--server',
  relay.grpcAddr,
  '--name',
  name,
  '--state-dir',
  tempDir(`nfltr-${name}-`),
];

/** SDK v1: the 2025-11-25 handshake, and its experimental tasks for task-augmented calls. */
async function legacyClient(relay: RelayProcess, key: string): Promise<TsClient> {
  const client = new Client({ name: 'eras-test', version: '1.0.0' });
  const transport = new StdioClientTransport({
    command: process.execPath,
    args: plannerArgs(relay, 'ts-legacy'),
    env: { ...(process.env as Record<string, string>), NFLTR_API_KEY: key },
    stderr: 'ignore',
  });
  // The v1 Client hands the negotiated version to its transport, and has no getter for it.
  let version = '';
  (transport as unknown as { setProtocolVersion: (v: string) => void }).setProtocolVersion = (v) => {
    version = v;
  };
  await client.connect(transport);
  return {
    version,
    tools: async () => (await client.listTools()).tools.map((t) => t.name).sort(),
    call: async (name, args) =>
      callView((await client.callTool({ name, arguments: args })) as CallToolResult),
    taskCall: async (name, args, handles) => {
      const created = await client.request(
        { method: 'tools/call', params: { name, arguments: args, task: { ttl: 120_000 } } },
        CreateTaskResultSchema,
      );
      handles[name] = created.task.status;
      for (;;) {
        const t = await client.experimental.tasks.getTask(created.task.taskId);
        if (['completed', 'failed', 'cancelled'].includes(t.status)) break;
        await new Promise((r) => setTimeout(r, t.pollInterval ?? 500));
      }
      return callView(
        await client.experimental.tasks.getTaskResult(created.task.taskId, CallToolResultSchema),
      );
    },
    close: () => client.close(),
  };
}

/**
 * SDK v2 pinned to 2026-07-28. Its Client refuses a `resultType: "task"` result (UnsupportedResultType:
 * the Tasks extension lives outside the SDK), so it makes plain calls only; the Python client covers
 * task-augmented calls in this era.
 */
async function modernClient(relay: RelayProcess, key: string): Promise<TsClient & { raw: ModernClient }> {
  const client = new ModernClient(
    { name: 'eras-test', version: '1.0.0' },
    { versionNegotiation: { mode: { pin: '2026-07-28' } } },
  );
  await client.connect(
    new ModernStdio({
      command: process.execPath,
      args: plannerArgs(relay, 'ts-modern'),
      env: { ...(process.env as Record<string, string>), NFLTR_API_KEY: key },
      stderr: 'ignore',
    }),
  );
  return {
    raw: client,
    version: client.getNegotiatedProtocolVersion() ?? '',
    tools: async () => (await client.listTools()).tools.map((t) => t.name).sort(),
    call: async (name, args) => callView(await client.callTool({ name, arguments: args })),
    close: () => client.close(),
  };
}

/** The scenario of test/fixtures/mcp-python-client.py, for a TypeScript client. */
async function scenario(c: TsClient, era: string): Promise<Report> {
  const handles: Record<string, string> = {};
  const taskCall = (name: string, args: Record<string, unknown>) =>
    c.taskCall ? c.taskCall(name, args, handles) : c.call(name, args);
  const tools = await c.tools();
  const unknown_argument = await c.call('list_worker_peers', { labels: 'role=build' });
  const taskId = `ts-${era}`;
  const orchestrate = taskCall('orchestrate_task', {
    agent_id: WORKER,
    task_id: taskId,
    objective: 'ask for approval, then finish',
    constraints: { ask: true, question: 'Approve the release?', schema: SCHEMA },
  });
  const wait_task = await taskCall('wait_for_tasks', { states: ['waiting_input'], wait_ms: 40_000 });
  const wrong_answer = await c.call('respond_to_worker', { task_id: taskId, content: { approve: 'yes' } });
  const after_wrong = await c.call('get_task_status', { task_id: taskId });
  const good_answer = await c.call('respond_to_worker', { task_id: taskId, content: { approve: true } });
  const orchestrate_task = await orchestrate;
  const wait_done = await c.call('wait_for_tasks', { wait_ms: 20_000 });
  const wait_again = await c.call('wait_for_tasks', { wait_ms: 300 });
  return {
    protocol_version: c.version,
    tools,
    unknown_argument,
    wait_task,
    wrong_answer,
    after_wrong,
    good_answer,
    orchestrate_task,
    wait_done,
    wait_again,
    handles,
  };
}

type Event = { task_id: string; state: string; schema?: unknown; result?: { structured?: unknown } };
const events = (c: Call) => (c.structured?.events ?? []) as Event[];

function expectReport(r: Report, opts: { taskId: string; version: string; taskCalls: boolean }) {
  const { taskId } = opts;
  expect(r.protocol_version).toBe(opts.version);
  expect(r.tools).toEqual(ALL_TOOLS);
  expect(r.unknown_argument).toMatchObject({
    is_error: true,
    text: 'invalid arguments for list_worker_peers: unknown argument "labels": list_worker_peers takes selector',
  });
  // The waiting_input event, with the schema of the expected answer.
  expect(r.wait_task.is_error, r.wait_task.text).toBe(false);
  expect(events(r.wait_task)).toEqual([
    expect.objectContaining({ task_id: taskId, state: 'waiting_input', schema: SCHEMA }),
  ]);
  expect(r.wrong_answer.is_error).toBe(true);
  expect(r.wrong_answer.text).toMatch(
    /content does not match the schema .*: approve must be boolean \(got string "yes"\).*still waiting_input/,
  );
  expect(r.after_wrong.structured).toMatchObject({
    state: 'waiting_input',
    pending_question: { answered: false },
  });
  // The worker may already be past the question when the answer's result is read: no state asserted.
  expect(r.good_answer).toMatchObject({ is_error: false, structured: { answer_state: 'answer sent' } });
  // A plain orchestrate_task returns at acceptance; a task-augmented one carries the final task.
  expect(r.orchestrate_task.is_error, r.orchestrate_task.text).toBe(false);
  if (opts.taskCalls) {
    expect(r.handles).toEqual({ orchestrate_task: 'working', wait_for_tasks: 'working' });
    expect(r.orchestrate_task.structured).toMatchObject({
      task_id: taskId,
      state: 'completed',
      final: { state: 'completed', result: { structured: { answer: { approve: true } } } },
    });
  } else {
    expect(r.orchestrate_task.structured).toMatchObject({ task_id: taskId, state: 'accepted' });
  }
  // Each event once: the completion comes now, and not again.
  expect(events(r.wait_done)).toEqual([expect.objectContaining({ task_id: taskId, state: 'completed' })]);
  expect(events(r.wait_again)).toEqual([]);
  expect(r.wait_again.structured).toMatchObject({ open_tasks: 0 });
}

// Each client runs its scenario against a planner of its own, with task ids of its own, on one worker with
// a slot for each: they run at once.
describe.concurrent('nfltr mcp - MCP clients of both protocol eras', () => {
  let relay: RelayProcess;
  let key: string;
  let worker: WorkerProcess;

  beforeAll(async () => {
    const dataDir = tempDir();
    key = await createKey(dataDir, 'acct');
    relay = await startRelayProcess({ dataDir });
    worker = await startWorker({
      server: relay.grpcAddr,
      apiKey: key,
      name: WORKER,
      maxTasks: 4,
      stateDir: tempDir(),
      mcpCommand: scriptedExecutor(),
    });
  });
  afterAll(async () => {
    await worker?.stop();
    await relay?.stop();
  });

  it('era choice - the planner reads the 2026-07-28 claim under the key SDK v2 writes', () => {
    expect(PROTOCOL_VERSION_META_KEY).toBe(SDK_PROTOCOL_VERSION_META_KEY);
  });

  it('typescript sdk, 2025-11-25 - the scenario, with experimental tasks', async () => {
    const c = await legacyClient(relay, key);
    try {
      expectReport(await scenario(c, 'legacy'), {
        taskId: 'ts-legacy',
        version: '2025-11-25',
        taskCalls: true,
      });
    } finally {
      await c.close();
    }
  });

  it('typescript sdk, 2026-07-28 - the scenario with plain calls; a task-capable call gets a task handle', async () => {
    const c = await modernClient(relay, key);
    try {
      expectReport(await scenario(c, 'modern'), {
        taskId: 'ts-modern',
        version: '2026-07-28',
        taskCalls: false,
      });
      // Declaring the Tasks extension on the request makes the planner answer with a task handle, which
      // this SDK's Client does not take: its refusal names the result type it got.
      const tasks = {
        'io.modelcontextprotocol/clientCapabilities': { extensions: { 'io.modelcontextprotocol/tasks': {} } },
      };
      await expect(
        c.raw.callTool({ name: 'wait_for_tasks', arguments: { wait_ms: 100 }, _meta: tasks }),
      ).rejects.toThrow(/Unsupported result type 'task' for tools\/call/);
    } finally {
      await c.close();
    }
  });

  for (const era of ['legacy', 'modern'] as const) {
    it.skipIf(!HAVE_PYTHON && process.env.CI !== 'true')(
      `python mcp sdk, ${era === 'legacy' ? '2025-11-25' : '2026-07-28'} - the scenario, with task-augmented calls`,
      async () => {
        if (!HAVE_PYTHON) {
          throw new Error(
            `no Python with the mcp SDK at ${PYTHON}: .ci/run creates it (python3 -m venv .venv-test, then pip ` +
              'install mcp from the local index); or set NFLTR_TEST_PYTHON to an interpreter that has mcp 2.3',
          );
        }
        const run = await promisify(execFile)(
          PYTHON,
          [PYTHON_CLIENT, era, WORKER, process.execPath, ...plannerArgs(relay, `py-${era}`)],
          { env: { ...process.env, NFLTR_API_KEY: key }, timeout: 55_000, maxBuffer: 16 * 1024 * 1024 },
        ).catch((err: Error & { stderr?: string }) => {
          throw new Error(`the Python client failed: ${err.message}\n${err.stderr ?? ''}`);
        });
        const report = JSON.parse(run.stdout.trim().split('\n').at(-1)!) as Report;
        expectReport(report, {
          taskId: `py-${era}`,
          version: era === 'legacy' ? '2025-11-25' : '2026-07-28',
          taskCalls: true,
        });
      },
    );
  }
});
