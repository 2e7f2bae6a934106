/**
 * Progress as it comes off the executor's pipe, as the worker reads it (src/worker/executor.ts). The SDK
 * client hands a notification to its handler a microtask late but settles a response at once, so a
 * progress notification read in the same chunk as the result is dropped (typescript-sdk#2580): on a
 * loaded machine the last lines of a short task often are.
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import type { Transport } from '@modelcontextprotocol/sdk/shared/transport.js';
import {
  type CallToolResult,
  CallToolResultSchema,
  ProgressNotificationSchema,
} from '@modelcontextprotocol/sdk/types.js';

export interface ProgressParams {
  progress: number;
  message?: string;
}

const taps = new WeakMap<Client, ProgressParams[]>();

/** Connects `client` over `transport`, recording every progress notification first. */
export async function connectTapped(client: Client, transport: Transport): Promise<ProgressParams[]> {
  const seen: ProgressParams[] = [];
  // Set before connect: the SDK chains its own handler after this one.
  transport.onmessage = (m) => {
    const progress = ProgressNotificationSchema.safeParse(m);
    if (progress.success) seen.push(progress.data.params);
  };
  await client.connect(transport);
  taps.set(client, seen);
  return seen;
}

/**
 * Calls `run_task` on an executor (a client from {@link connectTapped}) with fresh `in` and `out` folders
 * made under `dir`; `progress` holds the messages read off the pipe meanwhile.
 */
export async function runTaskIn(
  client: Client,
  dir: string,
  taskId: string,
  objective: string,
  extra: { context?: Record<string, unknown>; constraints?: Record<string, unknown> } = {},
  opts: { onprogress?: (p: ProgressParams) => void; signal?: AbortSignal } = {},
) {
  const task = {
    task_id: taskId,
    objective,
    input_dir: join(dir, 'in'),
    output_dir: join(dir, 'out'),
    ...extra,
  };
  const seen = taps.get(client);
  if (!seen) throw new Error('runTaskIn: connect the client with connectTapped');
  await mkdir(task.input_dir);
  await mkdir(task.output_dir);
  const from = seen.length;
  const result = (await client.callTool({ name: 'run_task', arguments: task }, CallToolResultSchema, {
    onprogress: (p) => opts.onprogress?.(p), // asks for progress, read off the pipe
    ...(opts.signal ? { signal: opts.signal } : {}),
    timeout: 60_000,
  })) as CallToolResult;
  const progress = seen.slice(from);
  return {
    task,
    result,
    progress: progress.map((p) => p.message ?? ''),
    text: (result.content[0] as { text: string }).text,
  };
}
