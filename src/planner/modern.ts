/**
 * @module The planner for 2026-07-28 clients (stateless: `server/discover`, per-request envelope), on
 * SDK v2, with the Tasks extension (`io.modelcontextprotocol/tasks`, SEP-2663): a long tool called by
 * a client that declares the extension answers with a task handle (`resultType: "task"`), followed
 * with `tasks/get` and stopped with `tasks/cancel`. SDK v2 carries the extension's methods (the era
 * gate admits `tasks/get` and `tasks/cancel` registered with their own schemas) but runs no task
 * store, so the few tasks a planner session holds are kept here, in memory.
 */
import {
  type CallToolResult,
  CLIENT_CAPABILITIES_META_KEY,
  ProtocolError,
  ProtocolErrorCode,
  Server,
} from '@modelcontextprotocol/server';
import * as z from 'zod/v4';
import { VERSION } from '../util/version.js';
import type { ToolSurface } from './surface.js';

export const TASKS_EXTENSION = 'io.modelcontextprotocol/tasks';
const POLL_INTERVAL_MS = 1_000;
/** A finished task stays readable this long, then is forgotten. */
const KEEP_FINISHED_MS = 3_600_000;

type Status = 'working' | 'input_required' | 'completed' | 'failed' | 'cancelled';

interface McpTask {
  taskId: string;
  status: Status;
  statusMessage?: string;
  createdAt: string;
  lastUpdatedAt: string;
  result?: CallToolResult;
  abort: AbortController;
}

const taskView = (t: McpTask) => ({
  taskId: t.taskId,
  status: t.status,
  ...(t.statusMessage ? { statusMessage: t.statusMessage } : {}),
  createdAt: t.createdAt,
  lastUpdatedAt: t.lastUpdatedAt,
  ttlMs: null,
  pollIntervalMs: POLL_INTERVAL_MS,
});

const taskIdParams = { params: z.looseObject({ taskId: z.string().min(1) }) };

/** One connection's tasks (a stdio connection is one client). */
class TaskTable {
  readonly #tasks = new Map<string, McpTask>();
  #next = 0;

  start(run: (signal: AbortSignal, status: (message: string) => void) => Promise<CallToolResult>): McpTask {
    const now = new Date().toISOString();
    const t: McpTask = {
      taskId: `mcp-task-${++this.#next}-${Date.now().toString(36)}`,
      status: 'working',
      createdAt: now,
      lastUpdatedAt: now,
      abort: new AbortController(),
    };
    this.#tasks.set(t.taskId, t);
    const update = (patch: Partial<McpTask>) => {
      if (t.status !== 'working') return; // terminal states absorb everything
      Object.assign(t, patch, { lastUpdatedAt: new Date().toISOString() });
      if (t.status !== 'working') {
        setTimeout(() => this.#tasks.delete(t.taskId), KEEP_FINISHED_MS).unref();
      }
    };
    void run(t.abort.signal, (statusMessage) => update({ statusMessage })).then(
      // A tool's own error is still a completed call: the result carries isError (SEP-2663).
      (result) => update({ status: 'completed', result }),
      (err: Error) => update({ status: 'failed', statusMessage: err.message }),
    );
    return t;
  }

  get(taskId: string): McpTask {
    const t = this.#tasks.get(taskId);
    if (!t) {
      throw new ProtocolError(
        ProtocolErrorCode.InvalidParams,
        `unknown task ${JSON.stringify(taskId)}: this nfltr mcp session has no MCP task with that id`,
      );
    }
    return t;
  }

  cancel(taskId: string): void {
    const t = this.get(taskId);
    if (t.status !== 'working') return;
    t.abort.abort('the client cancelled the MCP task');
    Object.assign(t, { status: 'cancelled', lastUpdatedAt: new Date().toISOString() });
  }

  abortAll(): void {
    for (const t of this.#tasks.values()) t.abort.abort('the MCP connection closed');
  }
}

const wantsTask = (envelope: Record<string, unknown> | undefined): boolean => {
  const caps = envelope?.[CLIENT_CAPABILITIES_META_KEY] as
    | { extensions?: Record<string, unknown> }
    | undefined;
  return caps?.extensions?.[TASKS_EXTENSION] !== undefined;
};

/**
 * A v2 server instance for one era of a stdio connection. `legacy` is only reached by a client that
 * probed `server/discover` and then fell back to `initialize`: it gets the tools without tasks.
 */
export function createModernServer(
  surface: ToolSurface,
  instructions: string,
  era: 'legacy' | 'modern',
): Server {
  const modern = era === 'modern';
  const server = new Server(
    { name: 'nfltr', version: VERSION },
    {
      capabilities: { tools: {}, ...(modern ? { extensions: { [TASKS_EXTENSION]: {} } } : {}) },
      instructions,
    },
  );
  const tasks = new TaskTable();
  server.setRequestHandler('tools/list', () => ({ tools: surface.list('modern') }));
  server.setRequestHandler('tools/call', async (req, ctx) => {
    const { name, arguments: args } = req.params;
    if (!modern || !surface.long(name) || !wantsTask(ctx.mcpReq.envelope)) {
      return surface.call(name, args, { signal: ctx.mcpReq.signal, task: false });
    }
    const t = tasks.start((signal, status) => surface.call(name, args, { signal, task: true, status }));
    // The SDK types tools/call as CallToolResult; the extension's handle is the other result family.
    return { resultType: 'task', ...taskView(t) } as unknown as CallToolResult;
  });
  if (modern) {
    server.setRequestHandler('tasks/get', taskIdParams, ({ taskId }) => {
      const t = tasks.get(taskId);
      return {
        ...taskView(t),
        ...(t.status === 'completed' && t.result ? { result: t.result } : {}),
        ...(t.status === 'failed'
          ? { error: { code: ProtocolErrorCode.InternalError, message: t.statusMessage ?? 'failed' } }
          : {}),
      };
    });
    // nfltr's questions are answered with respond_to_worker, so a task never asks for input here.
    server.setRequestHandler(
      'tasks/update',
      {
        params: z.looseObject({
          taskId: z.string().min(1),
          inputResponses: z.record(z.string(), z.unknown()),
        }),
      },
      ({ taskId }) => {
        tasks.get(taskId);
        return {};
      },
    );
    server.setRequestHandler('tasks/cancel', taskIdParams, ({ taskId }) => {
      tasks.cancel(taskId);
      return {};
    });
  }
  server.onclose = () => tasks.abortAll();
  return server;
}
