/**
 * @module The planner's MCP tools, names exactly as the product documents give them. Discovery
 * (`list_my_peers`, `list_worker_peers`) needs only the relay's HTTP API; `probe_worker` and the
 * orchestration tools need the A2A link. Every tool returns JSON (text and structuredContent) or an
 * `isError` result whose text says what to do next.
 */
import type { McpServer, RegisteredTool } from '@modelcontextprotocol/sdk/server/mcp.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { z } from 'zod';
import { type Logger, silentLogger } from '../util/log.js';
import { PlannerError } from './errors.js';
import { matchesSelector, type Peer, type PeerDirectory, parseSelector } from './peers.js';
import type { TaskManager } from './task-manager.js';
import type { TaskEventRecord } from './task-state.js';
import type { StoredTask } from './task-store.js';

const STATES = ['accepted', 'running', 'waiting_input', 'completed', 'failed', 'cancelled'] as const;
/** Longest get_task_status wait: well inside MCP clients' usual 60 s request timeout. */
const MAX_STATUS_WAIT_MS = 30_000;

// ── schemas ────────────────────────────────────────────────────────────────────────────────────────────

const agentId = z
  .string({ required_error: 'agent_id is required: the id of a worker from list_worker_peers' })
  .min(1, 'agent_id is empty: pass the id of a worker from list_worker_peers')
  .describe('Id of a worker peer, as list_worker_peers returns it');
const taskId = z
  .string({ required_error: 'task_id is required: the id orchestrate_task returned' })
  .min(1, 'task_id is empty: pass the id orchestrate_task returned')
  .describe('Id of a task this planner dispatched');
const localPaths = z
  .array(z.string().min(1, 'artifact_files entries must be non-empty paths'))
  .max(1000)
  .describe(
    'Local paths (files or folders) on the planner machine, streamed to the worker over the encrypted task channel',
  );

const peerShape = z.object({
  agent_id: z.string(),
  kind: z.string().describe('worker, planner or tunnel'),
  labels: z.record(z.string()),
  connected_since: z.string(),
  last_seen: z.string(),
  is_self: z.boolean().optional().describe('true for this planner itself'),
});

const artifactShape = z.object({
  name: z.string(),
  size: z.number(),
  sha256: z.string(),
  path: z.string().describe('absolute local path of the verified file'),
});

const inputFileShape = z.object({ name: z.string(), size: z.number(), sha256: z.string() });

const eventShape = z.object({
  seq: z.number().int(),
  state: z.enum(STATES),
  time: z.string(),
  origin: z.enum(['worker', 'planner']),
  message: z.string().optional(),
  question: z.string().optional().describe('waiting_input: the question asked'),
  reason: z.string().optional(),
  progress: z.number().optional(),
  total: z.number().optional(),
});

const taskSummaryShape = z.object({
  task_id: z.string(),
  agent_id: z.string(),
  state: z.enum(STATES),
  objective: z.string(),
  created_at: z.string(),
  updated_at: z.string(),
  last_seq: z.number().int(),
  question: z.string().optional().describe('the pending question, when waiting_input'),
  reason: z.string().optional(),
});

const taskStatusShape = {
  task_id: z.string(),
  agent_id: z.string(),
  state: z.enum(STATES),
  objective: z.string(),
  created_at: z.string(),
  updated_at: z.string(),
  last_seq: z.number().int().describe('pass as after_seq next time to get only newer events'),
  events: z.array(eventShape),
  more_events: z
    .boolean()
    .describe('true when more events follow; call again with after_seq = last listed seq'),
  pending_question: z
    .object({
      seq: z.number().int(),
      question: z.string(),
      schema: z.unknown().describe('JSON schema of the expected answer'),
      answered: z
        .boolean()
        .describe('true once respond_to_worker sent an answer the worker has not taken yet'),
    })
    .optional(),
  result: z.object({ text: z.string(), structured: z.unknown().optional() }).optional(),
  usage: z
    .record(z.unknown())
    .optional()
    .describe('model, turns, tokens, cost, as the executor reported them'),
  artifacts: z.array(artifactShape).optional(),
  reason: z.string().optional(),
  message: z.string().optional(),
  next_step: z.string(),
};

// ── helpers ────────────────────────────────────────────────────────────────────────────────────────────

const iso = (ms: number) => new Date(ms).toISOString();

function ok(out: Record<string, unknown>): CallToolResult {
  return { content: [{ type: 'text', text: JSON.stringify(out, null, 2) }], structuredContent: out };
}

function wrap<A>(log: Logger, tool: string, fn: (args: A) => Promise<Record<string, unknown>>) {
  return async (args: A): Promise<CallToolResult> => {
    try {
      return ok(await fn(args));
    } catch (err) {
      const e = err as Error;
      if (!(e instanceof PlannerError))
        log.error('tool failed unexpectedly', { tool, error: e.stack ?? e.message });
      return { content: [{ type: 'text', text: e.message }], isError: true };
    }
  };
}

function eventView(e: TaskEventRecord) {
  return {
    seq: e.seq,
    state: e.state,
    time: iso(e.time),
    origin: e.origin,
    ...(e.message ? { message: e.message } : {}),
    ...(e.state === 'waiting_input' && e.question ? { question: e.question } : {}),
    ...(e.reason ? { reason: e.reason } : {}),
    ...(e.progress !== undefined ? { progress: e.progress } : {}),
    ...(e.total !== undefined ? { total: e.total } : {}),
  };
}

function nextStep(t: StoredTask): string {
  const s = t.snapshot;
  switch (s.state) {
    case 'accepted':
    case 'running':
      return 'The worker is on it: call get_task_status again (with after_seq = last_seq) in a few seconds.';
    case 'waiting_input':
      return t.answered_seq === s.pending?.seq
        ? 'Your answer was given (it is delivered, or queued until the worker is reachable); call get_task_status again shortly to see the worker continue.'
        : 'The worker asks a question: answer it with respond_to_worker {task_id, content} shaped by the schema.';
    case 'completed':
      return 'Done: read result and the files listed in artifacts (verified, on this machine).';
    case 'failed':
      return 'The task failed (see reason and message): retry on this or another worker with orchestrate_task, or give up.';
    case 'cancelled':
      return 'The task was cancelled; its worker slot is free.';
    default:
      return 'Call get_task_status again shortly.';
  }
}

function summaryView(t: StoredTask) {
  const s = t.snapshot;
  return {
    task_id: s.task_id,
    agent_id: s.agent_id,
    state: s.state ?? 'accepted',
    objective: s.objective,
    created_at: iso(s.created_at),
    updated_at: iso(s.updated_at),
    last_seq: s.last_seq,
    ...(s.state === 'waiting_input' && s.pending ? { question: s.pending.question } : {}),
    ...(s.reason ? { reason: s.reason } : {}),
  };
}

/** `usage` of an executor's structured result (docs/executor-contract.md), lifted into the status. */
const usageOf = (structured: unknown) => {
  const u = (structured as { usage?: unknown } | undefined)?.usage;
  return u && typeof u === 'object' && !Array.isArray(u) ? { usage: u as Record<string, unknown> } : {};
};

function statusView(t: StoredTask, events: TaskEventRecord[], more: boolean) {
  const s = t.snapshot;
  const { question: _question, ...summary } = summaryView(t);
  return {
    ...summary,
    events: events.map(eventView),
    more_events: more,
    ...(s.state === 'waiting_input' && s.pending
      ? {
          pending_question: {
            seq: s.pending.seq,
            question: s.pending.question,
            schema: s.pending.schema ?? null,
            answered: t.answered_seq === s.pending.seq,
          },
        }
      : {}),
    ...(s.result ? { result: s.result } : {}),
    ...usageOf(s.result?.structured),
    ...(s.artifacts.length || s.state === 'completed' ? { artifacts: s.artifacts } : {}),
    ...(s.message && (s.state === 'failed' || s.state === 'cancelled') ? { message: s.message } : {}),
    next_step: nextStep(t),
  };
}

// ── discovery ──────────────────────────────────────────────────────────────────────────────────────────

export interface ToolContext {
  directory: PeerDirectory;
  /** This planner's agent id, when it is on the relay. */
  selfId?: string;
  logger?: Logger;
}

function peerView(p: Peer, selfId?: string) {
  return {
    agent_id: p.agent_id,
    kind: p.kind,
    labels: p.labels,
    connected_since: p.connected_since,
    last_seen: p.last_seen,
    ...(p.agent_id === selfId ? { is_self: true } : {}),
  };
}

/** Registers the tools that need only the relay's HTTP API. */
export function registerDiscoveryTools(server: McpServer, ctx: ToolContext): RegisteredTool[] {
  const log = ctx.logger ?? silentLogger;
  return [
    server.registerTool(
      'list_my_peers',
      {
        title: 'List peers',
        description:
          'List every peer (workers, planners, tunnels) connected to the relay under this API key, with its ' +
          'id, kind, labels, connected_since and last_seen. Use it to see what is online; for choosing ' +
          'where to run a task, prefer list_worker_peers (workers only, with a label selector), then ' +
          'probe_worker to check live capacity.',
        inputSchema: {},
        outputSchema: { peers: z.array(peerShape), count: z.number().int() },
        annotations: { readOnlyHint: true, openWorldHint: true },
      },
      wrap(log, 'list_my_peers', async () => {
        const peers = (await ctx.directory.list()).map((p) => peerView(p, ctx.selfId));
        return { peers, count: peers.length };
      }),
    ),
    server.registerTool(
      'list_worker_peers',
      {
        title: 'List worker peers',
        description:
          'List the worker peers (machines running `nfltr worker`) under this API key, optionally filtered ' +
          'by a label selector such as "zone=eu,gpu!=none" (every term must hold; k!=v also matches workers ' +
          'without k). Each worker has its user labels plus automatic ones: coord.cpu_cores, ' +
          'coord.memory_mb, coord.load_pct, coord.transfer, nfltr.worker.protocol, nfltr.worker.tool, ' +
          'nfltr.worker.max_tasks. Next: probe_worker the candidates for live free slots, then ' +
          'orchestrate_task on one of them.',
        inputSchema: {
          selector: z
            .string()
            .max(1000)
            .optional()
            .describe(
              'Label selector: comma-separated key=value or key!=value terms, e.g. "zone=eu,role=build"',
            ),
        },
        outputSchema: {
          workers: z.array(peerShape),
          count: z.number().int(),
          selector: z.string().optional(),
        },
        annotations: { readOnlyHint: true, openWorldHint: true },
      },
      wrap(log, 'list_worker_peers', async ({ selector }: { selector?: string }) => {
        const terms = parseSelector(selector ?? '');
        const workers = (await ctx.directory.list())
          .filter((p) => p.kind === 'worker' && matchesSelector(p.labels, terms))
          .map((p) => peerView(p, ctx.selfId));
        return { workers, count: workers.length, ...(selector ? { selector } : {}) };
      }),
    ),
  ];
}

// ── A2A tools ──────────────────────────────────────────────────────────────────────────────────────────

/** Checks with the relay's peer list that `id` is a connected worker; skipped if the HTTP API fails. */
async function assertWorker(directory: PeerDirectory, id: string): Promise<void> {
  if (!directory.configured) return;
  let peers: Peer[];
  try {
    peers = await directory.recent(2_000);
    if (!peers.some((p) => p.agent_id === id && p.kind === 'worker')) peers = await directory.list();
  } catch {
    return; // the A2A send itself reports an unknown peer
  }
  const peer = peers.find((p) => p.agent_id === id);
  const workers = peers.filter((p) => p.kind === 'worker').map((p) => p.agent_id);
  const known = workers.length
    ? `workers connected now: ${workers.join(', ')}`
    : 'no worker is connected now';
  if (!peer) {
    throw new PlannerError(
      'unknown_agent',
      `unknown agent ${JSON.stringify(id)}: no peer with that id is connected under this API key (${known}). ` +
        'Call list_worker_peers and use one of its agent_id values',
    );
  }
  if (peer.kind !== 'worker') {
    throw new PlannerError(
      'unknown_agent',
      `agent ${JSON.stringify(id)} is a ${peer.kind}, not a worker, and cannot run tasks (${known})`,
    );
  }
}

/** Registers probe_worker and the orchestration tools; returns their handles. */
export function registerA2aTools(
  server: McpServer,
  ctx: ToolContext & { manager: TaskManager },
): RegisteredTool[] {
  const log = ctx.logger ?? silentLogger;
  const m = ctx.manager;
  return [
    server.registerTool(
      'probe_worker',
      {
        title: 'Probe a worker',
        description:
          'Ask one worker, live over the encrypted A2A channel, whether it can take a task now. Returns ' +
          'available, free_slots, max_tasks, protocol, tool, labels, executor health and round_trip_ms. A ' +
          'worker that does not answer within a few seconds is reported available: false with a reason. ' +
          'Next: orchestrate_task on an available worker with free_slots > 0.',
        inputSchema: { agent_id: agentId },
        outputSchema: {
          agent_id: z.string(),
          available: z.boolean(),
          free_slots: z.number().int().optional(),
          max_tasks: z.number().int().optional(),
          protocol: z.string().optional(),
          tool: z.string().optional(),
          labels: z.record(z.string()).optional(),
          executor_healthy: z.boolean().optional(),
          executor_error: z.string().optional(),
          executor_ready: z.boolean().optional(),
          executor_reason: z.string().optional(),
          executor_fix: z.string().optional(),
          draining: z.boolean().optional(),
          round_trip_ms: z.number().nullable(),
          reason: z.string().optional(),
        },
        annotations: { readOnlyHint: true, openWorldHint: true },
      },
      wrap(log, 'probe_worker', async ({ agent_id }: { agent_id: string }) => {
        await assertWorker(ctx.directory, agent_id);
        const r = await m.probe(agent_id);
        return {
          ...r,
          round_trip_ms: r.round_trip_ms === null ? null : Math.round(r.round_trip_ms * 10) / 10,
        };
      }),
    ),
    server.registerTool(
      'orchestrate_task',
      {
        title: 'Dispatch a task to a worker',
        description:
          'Send one task to a worker: an objective, optional structured context and constraints, optional ' +
          'local files (artifact_files, streamed over the encrypted task channel into the task input folder) ' +
          'and an optional timeout_ms. Returns as soon as the worker accepted it, with the task_id ' +
          '(generated when you omit it; a task_id this planner already used is refused) and state accepted. ' +
          'A refusal (e.g. no_free_slots) is an error with its reason: probe_worker and pick another worker. ' +
          'The task then runs on its own: poll get_task_status, answer questions (waiting_input) with ' +
          'respond_to_worker, stop it with cancel_task. For fan-out, call this once per worker.',
        inputSchema: {
          agent_id: agentId,
          task_id: z
            .string()
            .min(1)
            .max(128)
            .optional()
            .describe('Your id for the task (letters, digits, . _ : -); generated when omitted'),
          objective: z
            .string({ required_error: 'objective is required: say what the worker should do' })
            .min(1, 'objective is empty: say what the worker should do')
            .describe('What the worker should do, in plain words'),
          context: z
            .record(z.unknown())
            .optional()
            .describe('Structured context passed to the executor untouched'),
          constraints: z
            .record(z.unknown())
            .optional()
            .describe(
              'Limits and executor options, passed untouched (e.g. {"max_minutes": 15}; for nfltr shell-mcp ' +
                'workers {"commands": ["npm test"]})',
            ),
          artifact_files: localPaths.optional(),
          timeout_ms: z
            .number()
            .int()
            .positive()
            .max(7 * 24 * 3_600_000)
            .optional()
            .describe('Time limit; the worker fails the task with reason timeout, waiting_input included'),
        },
        outputSchema: {
          task_id: z.string(),
          agent_id: z.string(),
          state: z.enum(STATES),
          last_seq: z.number().int(),
          input_files: z.array(inputFileShape),
          timeout_ms: z.number().int().optional(),
          next_step: z.string(),
        },
        annotations: { destructiveHint: false, openWorldHint: true },
      },
      wrap(
        log,
        'orchestrate_task',
        async (args: {
          agent_id: string;
          task_id?: string;
          objective: string;
          context?: Record<string, unknown>;
          constraints?: Record<string, unknown>;
          artifact_files?: string[];
          timeout_ms?: number;
        }) => {
          await assertWorker(ctx.directory, args.agent_id);
          const { snapshot, request } = await m.dispatch(args);
          return {
            task_id: snapshot.task_id,
            agent_id: snapshot.agent_id,
            state: snapshot.state ?? 'accepted',
            last_seq: snapshot.last_seq,
            input_files: request.input_files ?? [],
            ...(request.timeout_ms ? { timeout_ms: request.timeout_ms } : {}),
            next_step: `Call get_task_status {"task_id": "${snapshot.task_id}"} to follow it.`,
          };
        },
      ),
    ),
    server.registerTool(
      'get_task_status',
      {
        title: 'Get task status',
        description:
          'Read a task from the local durable store: state (accepted, running, waiting_input, completed, ' +
          'failed, cancelled), the numbered events after after_seq (progress messages), the pending question ' +
          'and its answer schema when waiting_input, and when completed the result (text and structured) and ' +
          'artifacts: files already verified (SHA-256) on this machine, with their local paths. Pass the ' +
          'returned last_seq as after_seq next time to get only new events. next_step says what to do.',
        inputSchema: {
          task_id: taskId,
          after_seq: z
            .number()
            .int()
            .min(0)
            .optional()
            .describe('Only events with a higher seq are returned (default 0: all)'),
          wait_ms: z
            .number()
            .int()
            .min(0)
            .max(MAX_STATUS_WAIT_MS)
            .optional()
            .describe(
              `Wait up to this long (at most ${MAX_STATUS_WAIT_MS} ms) for an event after after_seq before ` +
                'answering; answers at once when there is one or the task is final (default 0: no wait)',
            ),
        },
        outputSchema: taskStatusShape,
        annotations: { readOnlyHint: true },
      },
      wrap(
        log,
        'get_task_status',
        async ({
          task_id,
          after_seq,
          wait_ms,
        }: {
          task_id: string;
          after_seq?: number;
          wait_ms?: number;
        }) => {
          await m.waitForEvent(task_id, after_seq ?? 0, wait_ms ?? 0);
          const { task, events, more } = m.status(task_id, after_seq ?? 0);
          return statusView(task, events, more);
        },
      ),
    ),
    server.registerTool(
      'respond_to_worker',
      {
        title: 'Answer a waiting worker',
        description:
          'Answer the pending question of a task in waiting_input (see pending_question in get_task_status): ' +
          'content is an object shaped by the question schema (e.g. {"approve": true}) or a string; ' +
          'artifact_files are local files placed in the task input folder before the worker resumes. ' +
          'action decline refuses to answer. Refused with an error in any other state. The answer is kept ' +
          'by the planner: answer_state "answer sent" means it is on its way, "answer queued" that the worker ' +
          'or relay is unreachable right now and it is delivered once the worker is back. Next: get_task_status.',
        inputSchema: {
          task_id: taskId,
          content: z
            .union([z.string(), z.record(z.unknown())], {
              required_error:
                'content is required: the answer, an object shaped by the question schema or a string',
            })
            .describe('The answer: an object matching pending_question.schema, or a string'),
          artifact_files: localPaths.optional(),
          action: z
            .enum(['accept', 'decline', 'cancel'])
            .optional()
            .describe('accept (default) sends content; decline refuses the question; cancel dismisses it'),
        },
        outputSchema: {
          task_id: z.string(),
          agent_id: z.string(),
          state: z.enum(STATES),
          answered_seq: z.number().int(),
          answer_state: z
            .enum(['answer sent', 'answer queued'])
            .describe('queued: kept here and delivered when the worker is reachable again'),
          files: z.array(inputFileShape),
          next_step: z.string(),
        },
        annotations: { destructiveHint: false, openWorldHint: true },
      },
      wrap(
        log,
        'respond_to_worker',
        async (args: {
          task_id: string;
          content: string | Record<string, unknown>;
          artifact_files?: string[];
          action?: 'accept' | 'decline' | 'cancel';
        }) => {
          const { task, files, delivery } = await m.respond(
            args.task_id,
            args.content,
            args.artifact_files,
            args.action,
          );
          return {
            task_id: task.snapshot.task_id,
            agent_id: task.snapshot.agent_id,
            state: task.snapshot.state ?? 'waiting_input',
            answered_seq: task.answered_seq,
            answer_state: delivery === 'sent' ? 'answer sent' : 'answer queued',
            files,
            next_step:
              (delivery === 'sent'
                ? 'Answer sent.'
                : `Answer queued: worker ${task.snapshot.agent_id} cannot be reached right now; it gets the answer when it is back (do not answer again).`) +
              ` Call get_task_status {"task_id": "${task.snapshot.task_id}", "after_seq": ${task.snapshot.last_seq}}.`,
          };
        },
      ),
    ),
    server.registerTool(
      'cancel_task',
      {
        title: 'Cancel a task',
        description:
          'Stop a task that is not finished: the worker cancels it (its executor is killed) and the state ' +
          'becomes cancelled. Waits a few seconds for the worker to confirm; if the worker is gone or silent ' +
          'the task is marked cancelled locally and the note says so. Refused for tasks already completed, ' +
          'failed or cancelled.',
        inputSchema: {
          task_id: taskId,
          reason: z.string().max(1000).optional().describe('Why; recorded and passed to the worker'),
        },
        outputSchema: {
          task_id: z.string(),
          agent_id: z.string(),
          state: z.enum(STATES),
          confirmed_by_worker: z.boolean(),
          note: z.string(),
        },
        annotations: { destructiveHint: true, openWorldHint: true },
      },
      wrap(log, 'cancel_task', async ({ task_id, reason }: { task_id: string; reason?: string }) => {
        const r = await m.cancel(task_id, reason);
        return {
          task_id: r.snapshot.task_id,
          agent_id: r.snapshot.agent_id,
          state: r.snapshot.state ?? 'cancelled',
          confirmed_by_worker: r.confirmed,
          note: r.note,
        };
      }),
    ),
    server.registerTool(
      'list_active_tasks',
      {
        title: 'List tracked tasks',
        description:
          'List every task this planner tracks that is not finished (accepted, running, waiting_input), ' +
          'oldest first, with its worker, state and pending question. With all: true, also the most recent ' +
          'finished ones (completed, failed, cancelled). Use get_task_status for one task in detail.',
        inputSchema: {
          all: z.boolean().optional().describe('Also list recent completed, failed and cancelled tasks'),
        },
        outputSchema: { tasks: z.array(taskSummaryShape), count: z.number().int() },
        annotations: { readOnlyHint: true },
      },
      wrap(log, 'list_active_tasks', async ({ all }: { all?: boolean }) => {
        const tasks = m.list(all ?? false).map(summaryView);
        return { tasks, count: tasks.length };
      }),
    ),
  ];
}
