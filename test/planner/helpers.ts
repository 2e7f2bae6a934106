/**
 * Helpers for the planner tests: `nfltr mcp` driven by the official MCP client over stdio, and real
 * `nfltr worker` processes.
 */
import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { type CallToolResult, ToolListChangedNotificationSchema } from '@modelcontextprotocol/sdk/types.js';
import { expect } from 'vitest';
import { fixturePath } from '../helpers/fixtures.js';
import { NFLTR_BIN, spawnNfltr } from '../helpers/processes.js';

/** Kept here too: suites import it from the planner helpers. */
export { freePort } from '../helpers/processes.js';

export const SCRIPTED_EXECUTOR = fixturePath('scripted-executor.mjs');

export interface Planner {
  client: Client;
  pid: number | null;
  stderr: () => string;
  /** How many notifications/tools/list_changed arrived. */
  listChanged: () => number;
  call: (name: string, args?: Record<string, unknown>) => Promise<CallToolResult>;
  /** Calls a tool that must succeed; returns its structuredContent (checked equal to the JSON text). */
  ok: <T = Record<string, unknown>>(name: string, args?: Record<string, unknown>) => Promise<T>;
  /** Calls a tool that must fail; returns the error text. */
  fails: (name: string, args?: Record<string, unknown>) => Promise<string>;
  toolNames: () => Promise<string[]>;
  close: () => Promise<void>;
}

/**
 * `nfltr mcp ARGS` under the official MCP client; `opts` sets its working folder, adds to its env, and
 * may run it under a wrapper (`['ip', 'netns', 'exec', NS]`).
 */
export async function startPlanner(
  args: string[],
  apiKey: string,
  opts: { cwd?: string; env?: Record<string, string>; wrap?: string[] } = {},
): Promise<Planner> {
  const [command, ...prefix] = [...(opts.wrap ?? []), process.execPath];
  const transport = new StdioClientTransport({
    command: command!,
    args: [...prefix, NFLTR_BIN, 'mcp', ...args],
    env: { ...(process.env as Record<string, string>), NFLTR_API_KEY: apiKey, ...opts.env },
    cwd: opts.cwd,
    stderr: 'pipe',
  });
  let err = '';
  transport.stderr?.on('data', (d: Buffer) => {
    err += d.toString();
  });
  const client = new Client({ name: 'planner-test', version: '1.0.0' });
  let changed = 0;
  client.setNotificationHandler(ToolListChangedNotificationSchema, async () => {
    changed++;
  });
  await client.connect(transport);
  const call = async (name: string, a: Record<string, unknown> = {}) =>
    (await client.callTool({ name, arguments: a })) as CallToolResult;
  const text = (r: CallToolResult) => r.content.map((c) => (c.type === 'text' ? c.text : '')).join('');
  return {
    client,
    pid: transport.pid,
    stderr: () => err,
    listChanged: () => changed,
    call,
    ok: async <T>(name: string, a: Record<string, unknown> = {}) => {
      const r = await call(name, a);
      if (r.isError) throw new Error(`${name} failed: ${text(r)}`);
      expect(JSON.parse(text(r))).toEqual(r.structuredContent);
      return r.structuredContent as T;
    },
    fails: async (name: string, a: Record<string, unknown> = {}) => {
      const r = await call(name, a);
      expect(r.isError, `${name} should fail, got ${text(r)}`).toBe(true);
      return text(r);
    },
    toolNames: async () => (await client.listTools()).tools.map((t) => t.name).sort(),
    close: () => client.close(),
  };
}

export interface WorkerProcess {
  child: ChildProcess;
  name: string;
  stderr: () => string;
  stop: () => Promise<void>;
}

export async function startWorker(opts: {
  server: string;
  apiKey: string;
  name: string;
  stateDir: string;
  mcpCommand: string;
  labels?: string;
  maxTasks?: number;
  args?: string[];
}): Promise<WorkerProcess> {
  const w = await spawnNfltr(
    'worker',
    [
      '--server',
      opts.server,
      '--name',
      opts.name,
      '--labels',
      opts.labels ?? '',
      '--max-tasks',
      String(opts.maxTasks ?? 2),
      '--state-dir',
      opts.stateDir,
      '--shutdown-grace',
      '1s',
      '--mcp-command',
      opts.mcpCommand,
      ...(opts.args ?? []),
    ],
    /nfltr worker ready/,
    { env: { ...process.env, NFLTR_API_KEY: opts.apiKey } },
  );
  const child = w.child;
  return {
    child,
    name: opts.name,
    stderr: w.stderr,
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = once(child, 'exit');
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 5_000);
      await exited;
      clearTimeout(t);
    },
  };
}

export const scriptedExecutor = () => `'${process.execPath}' '${SCRIPTED_EXECUTOR}'`;

/** Every tool of `nfltr mcp`, sorted: listed from the first tools/list whatever the link's state. */
export const ALL_TOOLS = [
  'cancel_task',
  'get_task_status',
  'list_active_tasks',
  'list_my_peers',
  'list_worker_peers',
  'orchestrate_task',
  'probe_worker',
  'proxy_request',
  'respond_to_worker',
  'wait_for_tasks',
];
