/**
 * Helpers for the durability tests: the steady executor, waiting on task states through the planner's
 * tools, the exactly-once check of a finished task, and a TCP proxy that can cut one agent off the
 * relay while everything else stays connected.
 */
import { once } from 'node:events';
import { createServer, type Server, Socket } from 'node:net';
import { expect } from 'vitest';
import { fixturePath } from '../helpers/fixtures.js';
import { eventually } from '../helpers/processes.js';
import type { Planner } from '../planner/helpers.js';

export const STEADY_EXECUTOR = fixturePath('steady-executor.mjs');
export const steadyExecutor = () => `'${process.execPath}' '${STEADY_EXECUTOR}'`;

export interface Status {
  task_id: string;
  agent_id: string;
  state: string;
  last_seq: number;
  events: {
    seq: number;
    state: string;
    message?: string;
    reason?: string;
    question?: string;
    origin: string;
  }[];
  more_events: boolean;
  pending_question?: { seq: number; question: string; answered: boolean; schema?: unknown };
  result?: { text: string; structured?: Record<string, unknown> };
  artifacts?: { name: string; size: number; sha256: string; path: string }[];
  usage?: Record<string, unknown>;
  reason?: string;
  message?: string;
}

/** What {@link followTask} reads of a get_task_status answer. */
export interface TaskView {
  state: string;
  last_seq: number;
  events: { seq: number }[];
}

export const status = (p: Planner, taskId: string) => p.ok<Status>('get_task_status', { task_id: taskId });

/**
 * Follows a task through get_task_status's long poll (after_seq with wait_ms: the planner answers when the
 * next event is stored, or at once when the task is final) until `done` holds; resolves with the status
 * then, carrying every event so far. Asking every 50 ms instead cost the planner and the test ~70 ms of
 * CPU per second of waiting.
 */
export async function followTask<S extends TaskView = Status>(
  p: Planner,
  taskId: string,
  done: (s: S) => boolean,
  ms = 20_000,
  what = 'the condition',
): Promise<S> {
  const deadline = Date.now() + ms;
  const events: S['events'] = [];
  let cursor = 0;
  let last = 'no answer yet';
  for (;;) {
    const wait = Math.max(0, Math.min(deadline - Date.now(), 5_000));
    let next = cursor;
    try {
      const s = await p.ok<S>('get_task_status', { task_id: taskId, after_seq: cursor, wait_ms: wait });
      events.push(...s.events);
      const seen = { ...s, events: [...events] };
      if (done(seen)) return seen;
      last = `state ${s.state}, last_seq ${s.last_seq}`;
      next = s.events.at(-1)?.seq ?? cursor;
    } catch (err) {
      last = String(err); // not dispatched yet, or the planner is off the relay: ask again
    }
    if (Date.now() >= deadline) throw new Error(`timed out waiting for task ${taskId}: ${what} (${last})`);
    // Nothing new: the task is final (answered at once), the wait ran out, or the call failed. No spinning.
    if (next === cursor) await new Promise((r) => setTimeout(r, 50));
    cursor = next;
  }
}

/** Follows the task until it is in one of `states`. */
export const waitState = <S extends TaskView = Status>(
  p: Planner,
  taskId: string,
  states: string[],
  ms = 20_000,
): Promise<S> => followTask<S>(p, taskId, (s) => states.includes(s.state), ms, `in ${states.join('/')}`);

/** Follows the task until it is completed, failed or cancelled. */
export const waitFinal = <S extends TaskView = Status>(p: Planner, taskId: string, ms = 20_000): Promise<S> =>
  waitState<S>(p, taskId, ['completed', 'failed', 'cancelled'], ms);

/** Polls until the planner is on the relay and `agentId` answers a probe (after a restart of either). */
export async function waitLinked(p: Planner, agentId: string, ms = 20_000): Promise<void> {
  await eventually(
    async () => {
      const r = await p.call('probe_worker', { agent_id: agentId });
      return !r.isError && (r.structuredContent as { available?: boolean }).available === true;
    },
    ms,
    `planner linked to ${agentId}`,
  );
}

/** Follows the task until it has stored at least `n` events. */
export const waitEvents = (p: Planner, taskId: string, n: number, ms = 20_000): Promise<Status> =>
  followTask(p, taskId, (s) => s.last_seq >= n, ms, `${n} events`);

/**
 * A task of the steady executor that completed: events 1..n, gapless, each seq once, every progress
 * step exactly once and in order, one terminal event (the last), and the result present.
 */
export function expectExactlyOnce(s: Status, steps: number): void {
  expect(s.more_events).toBe(false);
  expect(s.state).toBe('completed');
  const seqs = s.events.map((e) => e.seq);
  expect(seqs).toEqual(seqs.map((_, i) => i + 1));
  expect(s.events.every((e) => e.origin === 'worker')).toBe(true);
  const stepsSeen = s.events.filter((e) => /^step \d+$/.test(e.message ?? '')).map((e) => e.message);
  expect(stepsSeen).toEqual(Array.from({ length: steps }, (_, i) => `step ${i + 1}`));
  const terminal = s.events.filter((e) => ['completed', 'failed', 'cancelled'].includes(e.state));
  expect(terminal).toHaveLength(1);
  expect(s.events.at(-1)?.state).toBe('completed');
  expect(s.result?.structured).toMatchObject({ task_id: s.task_id, steps });
}

/** Whether a process is alive (signal 0). */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * A TCP forwarder on a fixed port to an upstream address. `cut()` closes the listener and every
 * connection (the agent behind it sees its relay vanish and keeps redialling); `restore()` listens again.
 */
export class LinkProxy {
  readonly port: number;
  readonly #upstream: { host: string; port: number };
  readonly #sockets = new Set<Socket>();
  #server: Server | undefined;

  constructor(port: number, upstream: string) {
    this.port = port;
    const [host, p] = upstream.split(':');
    this.#upstream = { host: host!, port: Number(p) };
  }

  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  async restore(): Promise<void> {
    if (this.#server) return;
    const server = createServer((client) => {
      const up = new Socket();
      up.connect(this.#upstream.port, this.#upstream.host);
      for (const s of [client, up]) {
        this.#sockets.add(s);
        s.on('close', () => this.#sockets.delete(s));
        s.on('error', () => {});
      }
      client.pipe(up);
      up.pipe(client);
      client.on('close', () => up.destroy());
      up.on('close', () => client.destroy());
    });
    server.listen(this.port, '127.0.0.1');
    await once(server, 'listening');
    this.#server = server;
  }

  async cut(): Promise<void> {
    const server = this.#server;
    this.#server = undefined;
    for (const s of this.#sockets) s.destroy();
    this.#sockets.clear();
    if (server) await new Promise((r) => server.close(r));
  }
}
