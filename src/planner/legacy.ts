/**
 * @module The planner for 2025-era clients (`initialize`; 2025-06-18, 2025-11-25): SDK v1's low-level
 * server, which also runs the 2025-11-25 experimental tasks (`tasks/get`, `tasks/result`,
 * `tasks/list`, `tasks/cancel` over its task store). SDK v2 serves this era's handshake too, but
 * refuses a task handle as a `tools/call` result there, so task-augmented calls need v1.
 */
import { InMemoryTaskStore } from '@modelcontextprotocol/sdk/experimental/tasks/stores/in-memory.js';
import { Server } from '@modelcontextprotocol/sdk/server/index.js';
import {
  CallToolRequestSchema,
  ErrorCode,
  ListToolsRequestSchema,
  McpError,
  type Task,
} from '@modelcontextprotocol/sdk/types.js';
import { VERSION } from '../util/version.js';
import type { ToolSurface } from './surface.js';

/** v1's in-memory task store, plus an abort signal per task that `tasks/cancel` fires. */
class AbortingTaskStore extends InMemoryTaskStore {
  readonly #aborts = new Map<string, AbortController>();

  signal(taskId: string): AbortSignal {
    const ac = new AbortController();
    this.#aborts.set(taskId, ac);
    return ac.signal;
  }

  override async updateTaskStatus(
    taskId: string,
    status: Task['status'],
    statusMessage?: string,
    sessionId?: string,
  ): Promise<void> {
    await super.updateTaskStatus(taskId, status, statusMessage, sessionId);
    if (status === 'cancelled') this.#aborts.get(taskId)?.abort('the client cancelled the MCP task');
  }

  settled(taskId: string): void {
    this.#aborts.delete(taskId);
  }

  abortAll(): void {
    for (const ac of this.#aborts.values()) ac.abort('the MCP connection closed');
    this.#aborts.clear();
    this.cleanup();
  }
}

/** How often a 2025-11-25 client is asked to poll `tasks/get`. */
const POLL_INTERVAL_MS = 1_000;

export function createLegacyServer(surface: ToolSurface, instructions: string): Server {
  const tasks = new AbortingTaskStore();
  const server = new Server(
    { name: 'nfltr', version: VERSION },
    {
      // The tool set never changes, so there is no tools/list_changed to announce.
      capabilities: {
        tools: {},
        tasks: { list: {}, cancel: {}, requests: { tools: { call: {} } } },
      },
      instructions,
      taskStore: tasks,
    },
  );
  server.setRequestHandler(ListToolsRequestSchema, () => ({ tools: surface.list('legacy') }));
  server.setRequestHandler(CallToolRequestSchema, async (req, extra) => {
    const { name, arguments: args, task } = req.params;
    if (!task) return surface.call(name, args, { signal: extra.signal, task: false });
    if (!surface.long(name) || !extra.taskStore) {
      throw new McpError(
        ErrorCode.InvalidParams,
        `${name} does not run as a task (execution.taskSupport is forbidden): call it without "task"`,
      );
    }
    const store = extra.taskStore;
    const created = await store.createTask({ ttl: task.ttl ?? null, pollInterval: POLL_INTERVAL_MS });
    const id = created.taskId;
    const signal = tasks.signal(id);
    const status = (message: string) => void store.updateTaskStatus(id, 'working', message).catch(() => {});
    void surface
      .call(name, args, { signal, task: true, status })
      .then((result) => store.storeTaskResult(id, result.isError ? 'failed' : 'completed', result))
      .catch(() => {}) // cancelled meanwhile: the store refuses a result for a terminal task
      .finally(() => tasks.settled(id));
    return { task: created };
  });
  server.onclose = () => tasks.abortAll();
  return server;
}
