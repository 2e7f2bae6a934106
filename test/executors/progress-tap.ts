/**
 * Progress as it comes off the executor's pipe, as the worker reads it (src/worker/executor.ts). The SDK
 * client hands a notification to its handler a microtask late but settles a response at once, so a
 * progress notification read in the same chunk as the result is dropped (typescript-sdk#2580): on a
 * loaded machine the last lines of a short task often are.
 */
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import type { Transport } from '@modelcontextprotocol/sdk/shared/transport.js';
import { ProgressNotificationSchema } from '@modelcontextprotocol/sdk/types.js';

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

/** Runs `call` on a client from {@link connectTapped}; returns its value and the progress read meanwhile. */
export async function withProgress<T>(
  client: Client,
  call: () => Promise<T>,
): Promise<{ value: T; progress: ProgressParams[] }> {
  const seen = taps.get(client);
  if (!seen) throw new Error('withProgress: connect the client with connectTapped');
  const from = seen.length;
  const value = await call();
  return { value, progress: seen.slice(from) };
}
