/**
 * @module The planner's MCP tools, names exactly as the product documents give them, as plain
 * definitions that neither MCP SDK owns: a strict input schema (unknown arguments refused), an output
 * schema, what the tool needs to run, and the function. {@link ./surface.ts} lists and calls them for
 * both protocol eras. Discovery (`list_my_peers`, `list_worker_peers`) needs the relay's HTTP API;
 * `probe_worker` and the orchestration tools need the A2A link.
 */
import { isAbsolute } from 'node:path';
import type { ToolAnnotations } from '@modelcontextprotocol/sdk/types.js';
import { z } from 'zod';
import { HTTP_ROUTES_LABEL } from '../agent/index.js';
import { PlannerError } from './errors.js';
import { matchesSelector, type Peer, type PeerDirectory, parseSelector } from './peers.js';
import { INLINE_BODY_BYTES, proxyError } from './proxy.js';
import type { TaskManager } from './task-manager.js';
import type { TaskEventRecord } from './task-state.js';
import type { StoredTask } from './task-store.js';

/** proxy_request limits: inline bodies stay small (an LLM reads them); a call returns inside 60 s. */
const MAX_PROXY_BODY_CHARS = 8 * 1024 * 1024;
const MAX_PROXY_TIMEOUT_MS = 50_000;
const DEFAULT_PROXY_TIMEOUT_MS = 30_000;

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
      return 'The worker is on it: call wait_for_tasks to learn when it needs an answer or is done.';
    case 'waiting_input':
      return t.answered_seq === s.pending?.seq
        ? 'Your answer was given (it is delivered, or queued until the worker is reachable); call wait_for_tasks to learn what comes next.'
        : 'The worker asks a question: answer it with respond_to_worker {task_id, content} shaped by the schema (or action decline).';
    case 'completed':
      return 'Done: read result and the files listed in artifacts (verified, on this machine).';
    case 'failed':
      return 'The task failed (see reason and message): retry on this or another worker with orchestrate_task, or give up.';
    case 'cancelled':
      return 'The task was cancelled; its worker slot is free.';
    default:
      return 'Call wait_for_tasks.';
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
export const usageOf = (structured: unknown) => {
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

// ── definitions ────────────────────────────────────────────────────────────────────────────────────────

/** How a call runs: aborted when the client cancels it; `task` when the client asked for an MCP task. */
export interface RunContext {
  signal: AbortSignal;
  task: boolean;
  /** Reports progress of a task-augmented call (its MCP task status message). */
  status?: (message: string) => void;
}

export interface PlannerTool {
  name: string;
  title: string;
  description: string;
  /** Strict: an argument the schema does not name is refused. */
  input: z.AnyZodObject;
  output: z.ZodRawShape;
  annotations: ToolAnnotations;
  /** `discovery`: the relay's HTTP API (--proxy-url); `a2a`: the control link (--server). */
  needs: 'discovery' | 'a2a';
  /** Long work: the call may be task-augmented (MCP tasks, both protocol eras). */
  long?: true;
  run: (args: never, ctx: RunContext) => Promise<Record<string, unknown>>;
}

export interface ToolContext {
  directory: PeerDirectory;
  /** With --server: the task manager; undefined without it (its tools then say why they cannot run). */
  manager?: TaskManager;
  /** This planner's agent id, when it is on the relay. */
  selfId?: string;
}

/** A definition whose `run` is typed by its own input schema. */
function tool<I extends z.AnyZodObject>(
  t: Omit<PlannerTool, 'input' | 'run'> & {
    input: I;
    run: (args: z.infer<I>, ctx: RunContext) => Promise<Record<string, unknown>>;
  },
): PlannerTool {
  return t as unknown as PlannerTool;
}

const strict = <S extends z.ZodRawShape>(shape: S) => z.object(shape).strict();

/** Terminal states and waiting_input: what wait_for_tasks reports. */
export const NOTABLE_STATES = ['waiting_input', 'completed', 'failed', 'cancelled'] as const;
/** Longest wait_for_tasks wait: a plain call returns well inside MCP clients' usual 60 s timeout. */
export const MAX_WAIT_MS = 50_000;
const DEFAULT_WAIT_MS = 25_000;

/** Every tool of the planner, always the same set whatever the link state. */
export function plannerTools(ctx: ToolContext): PlannerTool[] {
  const m = () => ctx.manager!; // `needs: 'a2a'` tools run only with a manager (see surface.ts)
  return [
    tool({
      name: 'list_my_peers',
      title: 'List peers',
      description:
        'List every peer (workers, planners, tunnels) connected to the relay under this API key, with its ' +
        'id, kind, labels, connected_since and last_seen. Peers with the label nfltr.http.routes serve HTTP ' +
        '(call them with proxy_request). Use it to see what is online; for choosing ' +
        'where to run a task, prefer list_worker_peers (workers only, with a label selector), then ' +
        'probe_worker to check live capacity.',
      input: strict({}),
      output: { peers: z.array(peerShape), count: z.number().int() },
      annotations: { readOnlyHint: true, openWorldHint: true },
      needs: 'discovery',
      run: async () => {
        const peers = (await ctx.directory.list()).map((p) => peerView(p, ctx.selfId));
        return { peers, count: peers.length };
      },
    }),
    tool({
      name: 'list_worker_peers',
      title: 'List worker peers',
      description:
        'List the worker peers (machines running `nfltr worker`) under this API key, optionally filtered ' +
        'by a label selector such as "zone=eu,gpu!=none" (every term must hold; k!=v also matches workers ' +
        'without k). Each worker has its user labels plus automatic ones: coord.cpu_cores, ' +
        'coord.memory_mb, coord.load_pct, coord.transfer, nfltr.worker.protocol, nfltr.worker.tool, ' +
        'nfltr.worker.max_tasks. Next: probe_worker the candidates for live free slots, then ' +
        'orchestrate_task on one of them.',
      input: strict({
        selector: z
          .string()
          .max(1000)
          .optional()
          .describe(
            'Label selector: comma-separated key=value or key!=value terms, e.g. "zone=eu,role=build"',
          ),
      }),
      output: {
        workers: z.array(peerShape),
        count: z.number().int(),
        selector: z.string().optional(),
      },
      annotations: { readOnlyHint: true, openWorldHint: true },
      needs: 'discovery',
      run: async ({ selector }) => {
        const terms = parseSelector(selector ?? '');
        const workers = (await ctx.directory.list())
          .filter((p) => p.kind === 'worker' && matchesSelector(p.labels, terms))
          .map((p) => peerView(p, ctx.selfId));
        return { workers, count: workers.length, ...(selector ? { selector } : {}) };
      },
    }),
    tool({
      name: 'probe_worker',
      title: 'Probe a worker',
      description:
        'Ask one worker, live over the encrypted A2A channel, whether it can take a task now. Returns ' +
        'available, free_slots, max_tasks, protocol, tool, labels, executor health and round_trip_ms. A ' +
        'worker that does not answer within a few seconds is reported available: false with a reason. ' +
        'Next: orchestrate_task on an available worker with free_slots > 0.',
      input: strict({ agent_id: agentId }),
      output: {
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
      needs: 'a2a',
      run: async ({ agent_id }) => {
        await assertWorker(ctx.directory, agent_id);
        const r = await m().probe(agent_id);
        return {
          ...r,
          round_trip_ms: r.round_trip_ms === null ? null : Math.round(r.round_trip_ms * 10) / 10,
        };
      },
    }),
    tool({
      name: 'proxy_request',
      title: 'HTTP request to a peer service',
      description:
        'Make one HTTP request to a service a peer exposes (`nfltr http`, or `nfltr worker --expose`; ' +
        'list_my_peers shows them by the label nfltr.http.routes), end-to-end encrypted over the A2A ' +
        'channel: the relay sees only routing. Returns status, headers and the body: as text, or ' +
        `body_base64 when it is binary; a body over ${INLINE_BODY_BYTES / 1024} KiB is saved under the ` +
        "planner's state folder and returned as body_file; a large request body is sent from a local file " +
        '(body_file). Errors name the cause: agent_not_connected, ' +
        'not_exposed, no_route, service_refused, timeout, agent_gone, body_too_large.',
      input: strict({
        agent_id: z
          .string({ required_error: 'agent_id is required: the id of a peer serving HTTP (list_my_peers)' })
          .min(1, 'agent_id is empty: pass the id of a peer serving HTTP (list_my_peers)')
          .describe('Id of a peer that exposes HTTP (label nfltr.http.routes)'),
        method: z
          .string({ required_error: 'method is required: GET, POST, PUT, PATCH, DELETE, HEAD, …' })
          .regex(/^[A-Za-z][A-Za-z0-9-]{0,31}$/, 'method must be an HTTP method such as GET or POST')
          .describe('HTTP method'),
        path: z
          .string({ required_error: "path is required: the path and query, starting with '/'" })
          .regex(/^\/\S*$/, "path must start with '/' and hold no spaces (URL-encode them)")
          .max(8192)
          .describe("Path and query on the peer's service, e.g. /api/items?limit=10"),
        headers: z.record(z.string()).optional().describe('Request headers'),
        body: z
          .string()
          .max(MAX_PROXY_BODY_CHARS, `body_too_large: body is limited to ${MAX_PROXY_BODY_CHARS} characters`)
          .optional()
          .describe('Request body as text (UTF-8)'),
        body_base64: z
          .string()
          .max(
            MAX_PROXY_BODY_CHARS,
            `body_too_large: body_base64 is limited to ${MAX_PROXY_BODY_CHARS} characters`,
          )
          .regex(/^[A-Za-z0-9+/]*={0,2}$/, 'body_base64 must be standard base64')
          .optional()
          .describe('Request body as base64, for binary bodies (instead of body)'),
        body_file: z
          .string()
          .refine(isAbsolute, 'body_file must be an absolute path on the machine of this planner')
          .optional()
          .describe(
            'Absolute path of a local file sent as the body, streamed (for bodies too large for a tool call; instead of body)',
          ),
        timeout_ms: z
          .number()
          .int()
          .min(100, 'timeout_ms must be at least 100')
          .max(
            MAX_PROXY_TIMEOUT_MS,
            `timeout_ms must be at most ${MAX_PROXY_TIMEOUT_MS} (a call returns well inside MCP clients' 60 s timeout)`,
          )
          .optional()
          .describe(`Time for the whole response, ms (default ${DEFAULT_PROXY_TIMEOUT_MS})`),
      }),
      output: {
        agent_id: z.string(),
        status: z.number().int(),
        headers: z.record(z.union([z.string(), z.array(z.string())])),
        trailers: z.record(z.union([z.string(), z.array(z.string())])).optional(),
        body: z.string().optional().describe('the body as text, when it is UTF-8'),
        body_base64: z.string().optional().describe('the body as base64, when it is binary'),
        body_file: z.string().optional().describe('absolute path of the saved body, when it was large'),
        body_bytes: z.number().int(),
        elapsed_ms: z.number(),
      },
      annotations: { openWorldHint: true },
      needs: 'a2a',
      run: async (a, run) => {
        if ([a.body, a.body_base64, a.body_file].filter((b) => b !== undefined).length > 1)
          throw new PlannerError('invalid_argument', 'pass one of body, body_base64 or body_file');
        await assertHttpPeer(ctx.directory, a.agent_id);
        const started = performance.now();
        const r = await m().proxy.request({
          agentId: a.agent_id,
          method: a.method.toUpperCase(),
          path: a.path,
          headers: a.headers ?? {},
          body:
            a.body_base64 !== undefined
              ? Buffer.from(a.body_base64, 'base64')
              : a.body !== undefined
                ? Buffer.from(a.body, 'utf8')
                : undefined,
          bodyFile: a.body_file,
          timeoutMs: a.timeout_ms ?? DEFAULT_PROXY_TIMEOUT_MS,
          signal: run.signal,
        });
        const body =
          'file' in r.body
            ? { body_file: r.body.file, body_bytes: r.body.size }
            : { ...bodyView(r.body.bytes), body_bytes: r.body.bytes.byteLength };
        return {
          agent_id: a.agent_id,
          status: r.status,
          headers: r.headers,
          ...(r.trailers ? { trailers: r.trailers } : {}),
          ...body,
          elapsed_ms: Math.round((performance.now() - started) * 10) / 10,
        };
      },
    }),
    tool({
      name: 'orchestrate_task',
      title: 'Dispatch a task to a worker',
      description:
        'Send one task to a worker: an objective, optional structured context and constraints, optional ' +
        'local files (artifact_files, streamed over the encrypted task channel into the task input folder) ' +
        'and an optional timeout_ms. A plain call returns as soon as the worker accepted it, with the ' +
        'task_id (generated when you omit it; a task_id this planner already used is refused) and state ' +
        'accepted; a task-augmented call (MCP tasks) runs until the task is completed, failed or cancelled ' +
        'and its result is the final get_task_status. A refusal (e.g. no_free_slots) is an error with its ' +
        'reason: probe_worker and pick another worker. Then: wait_for_tasks to learn when it needs an ' +
        'answer (respond_to_worker) or is done; cancel_task stops it. For fan-out, call this once per worker.',
      input: strict({
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
      }),
      output: {
        task_id: z.string(),
        agent_id: z.string(),
        state: z.enum(STATES),
        last_seq: z.number().int(),
        input_files: z.array(inputFileShape),
        timeout_ms: z.number().int().optional(),
        next_step: z.string(),
        final: z
          .object(taskStatusShape)
          .optional()
          .describe('task-augmented calls only: the task once completed, failed or cancelled'),
      },
      annotations: { destructiveHint: false, openWorldHint: true },
      needs: 'a2a',
      long: true,
      run: async (args, run) => {
        await assertWorker(ctx.directory, args.agent_id);
        const { snapshot, request } = await m().dispatch(args);
        const out = {
          task_id: snapshot.task_id,
          agent_id: snapshot.agent_id,
          state: snapshot.state ?? 'accepted',
          last_seq: snapshot.last_seq,
          input_files: request.input_files ?? [],
          ...(request.timeout_ms ? { timeout_ms: request.timeout_ms } : {}),
          next_step: `Call wait_for_tasks {"task_ids": ["${snapshot.task_id}"]} to learn when it needs an answer or is done.`,
        };
        if (!run.task) return out;
        // An MCP task follows the whole task: its status message tracks the worker's events.
        const final = await m().untilFinal(snapshot.task_id, run.signal, (t) =>
          run.status?.(
            t.snapshot.state === 'waiting_input' && t.snapshot.pending
              ? `waiting_input: ${t.snapshot.pending.question} (answer with respond_to_worker)`
              : `${t.snapshot.state}`,
          ),
        );
        const { task, events, more } = m().status(final.snapshot.task_id);
        return { ...out, state: task.snapshot.state, final: statusView(task, events, more) };
      },
    }),
    tool({
      name: 'wait_for_tasks',
      title: 'Wait for tasks to need you',
      description:
        "Block until one of this planner's tasks reaches a final state (completed, failed, cancelled) or " +
        'waiting_input, or until wait_ms passes; return those events. Each event is returned once per ' +
        'planner, even across restarts: what this call returns is not returned again. Filter with ' +
        'task_ids and states. An empty events list means nothing happened in time: call again. The ' +
        'planner loop is orchestrate_task → wait_for_tasks → respond_to_worker or read the result; never poll.',
      input: strict({
        task_ids: z
          .array(taskId)
          .max(1000)
          .optional()
          .describe('Only these tasks (default: every task of this planner)'),
        wait_ms: z
          .number()
          .int()
          .min(0)
          .max(MAX_WAIT_MS)
          .optional()
          .describe(`Longest wait in ms, at most ${MAX_WAIT_MS} (default ${DEFAULT_WAIT_MS})`),
        states: z
          .array(z.enum(NOTABLE_STATES))
          .min(1)
          .optional()
          .describe('Only events into these states (default: all four)'),
      }),
      output: {
        events: z.array(
          taskSummaryShape.extend({
            schema: z.unknown().optional().describe('waiting_input: JSON schema of the expected answer'),
            message: z.string().optional(),
            result: z.object({ text: z.string(), structured: z.unknown().optional() }).optional(),
            artifacts: z.array(artifactShape).optional(),
            next_step: z.string(),
          }),
        ),
        count: z.number().int(),
        open_tasks: z.number().int().describe('tasks of this planner not final yet'),
        next_step: z.string(),
      },
      annotations: { readOnlyHint: false, idempotentHint: false },
      needs: 'a2a',
      long: true,
      run: async ({ task_ids, wait_ms, states }, run) => {
        const tasks = await m().waitForTasks({
          taskIds: task_ids,
          states: states ?? [...NOTABLE_STATES],
          waitMs: wait_ms ?? DEFAULT_WAIT_MS,
          signal: run.signal,
        });
        const events = tasks.map((t) => {
          const s = t.snapshot;
          return {
            ...summaryView(t),
            ...(s.state === 'waiting_input' && s.pending ? { schema: s.pending.schema ?? null } : {}),
            ...(s.message && (s.state === 'failed' || s.state === 'cancelled') ? { message: s.message } : {}),
            ...(s.result ? { result: s.result } : {}),
            ...(s.state === 'completed' ? { artifacts: s.artifacts } : {}),
            next_step: nextStep(t),
          };
        });
        const open = m().list(false).length;
        return {
          events,
          count: events.length,
          open_tasks: open,
          next_step: events.length
            ? 'Handle each event (respond_to_worker for waiting_input; read result and artifacts when completed), then call wait_for_tasks again while open_tasks > 0.'
            : open > 0
              ? 'Nothing new yet: call wait_for_tasks again.'
              : 'No open task: dispatch one with orchestrate_task.',
        };
      },
    }),
    tool({
      name: 'get_task_status',
      title: 'Get task status',
      description:
        'Read a task from the local durable store: state (accepted, running, waiting_input, completed, ' +
        'failed, cancelled), the numbered events after after_seq (progress messages), the pending question ' +
        'and its answer schema when waiting_input, and when completed the result (text and structured) and ' +
        'artifacts: files already verified (SHA-256) on this machine, with their local paths. Pass the ' +
        'returned last_seq as after_seq next time to get only new events. next_step says what to do. To ' +
        'wait for several tasks at once, use wait_for_tasks.',
      input: strict({
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
      }),
      output: taskStatusShape,
      annotations: { readOnlyHint: true },
      needs: 'a2a',
      run: async ({ task_id, after_seq, wait_ms }) => {
        await m().waitForEvent(task_id, after_seq ?? 0, wait_ms ?? 0);
        const { task, events, more } = m().status(task_id, after_seq ?? 0);
        return statusView(task, events, more);
      },
    }),
    tool({
      name: 'respond_to_worker',
      title: 'Answer a waiting worker',
      description:
        'Answer the pending question of a task in waiting_input (see pending_question in get_task_status ' +
        'or the waiting_input event of wait_for_tasks), as MCP elicitation does: action accept (default) ' +
        'sends content, an object shaped by the question schema (e.g. {"approve": true}; a bare string or ' +
        'value fills its first required field); decline refuses to answer and cancel dismisses the ' +
        'question, both without content. content is checked against the schema before it leaves: a ' +
        'mismatch is an error naming the field and the expected type, and the task stays waiting_input so ' +
        'you can answer again. artifact_files are local files placed in the task input folder before the ' +
        'worker resumes. answer_state "answer sent" means it is on its way, "answer queued" that the ' +
        'worker or relay is unreachable right now and it is delivered once the worker is back.',
      input: strict({
        task_id: taskId,
        content: z
          .union([z.string(), z.number(), z.boolean(), z.record(z.unknown())])
          .optional()
          .describe(
            'The answer (action accept): an object matching pending_question.schema, or a bare value for its first field',
          ),
        artifact_files: localPaths.optional(),
        action: z
          .enum(['accept', 'decline', 'cancel'])
          .optional()
          .describe(
            'accept (default) sends content; decline refuses the question; cancel dismisses it (no content)',
          ),
      }),
      output: {
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
      needs: 'a2a',
      run: async (args) => {
        const { task, files, delivery } = await m().respond(
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
            ` Call wait_for_tasks {"task_ids": ["${task.snapshot.task_id}"]}.`,
        };
      },
    }),
    tool({
      name: 'cancel_task',
      title: 'Cancel a task',
      description:
        'Stop a task that is not finished: the worker cancels it (its executor is killed) and the state ' +
        'becomes cancelled. Waits a few seconds for the worker to confirm; if the worker is gone or silent ' +
        'the task is marked cancelled locally and the note says so. Refused for tasks already completed, ' +
        'failed or cancelled.',
      input: strict({
        task_id: taskId,
        reason: z.string().max(1000).optional().describe('Why; recorded and passed to the worker'),
      }),
      output: {
        task_id: z.string(),
        agent_id: z.string(),
        state: z.enum(STATES),
        confirmed_by_worker: z.boolean(),
        note: z.string(),
      },
      annotations: { destructiveHint: true, openWorldHint: true },
      needs: 'a2a',
      run: async ({ task_id, reason }) => {
        const r = await m().cancel(task_id, reason);
        return {
          task_id: r.snapshot.task_id,
          agent_id: r.snapshot.agent_id,
          state: r.snapshot.state ?? 'cancelled',
          confirmed_by_worker: r.confirmed,
          note: r.note,
        };
      },
    }),
    tool({
      name: 'list_active_tasks',
      title: 'List tracked tasks',
      description:
        'List every task this planner tracks that is not finished (accepted, running, waiting_input), ' +
        'oldest first, with its worker, state and pending question. With all: true, also the most recent ' +
        'finished ones (completed, failed, cancelled). Use get_task_status for one task in detail.',
      input: strict({
        all: z.boolean().optional().describe('Also list recent completed, failed and cancelled tasks'),
      }),
      output: { tasks: z.array(taskSummaryShape), count: z.number().int() },
      annotations: { readOnlyHint: true },
      needs: 'a2a',
      run: async ({ all }) => {
        const tasks = m()
          .list(all ?? false)
          .map(summaryView);
        return { tasks, count: tasks.length };
      },
    }),
  ];
}

/** Checks with the relay's peer list that `id` is a connected worker; skipped if the HTTP API fails. */
/** Refuses, naming what is connected, a peer that is absent or serves no HTTP (nfltr.http.routes). */
async function assertHttpPeer(directory: PeerDirectory, id: string): Promise<void> {
  if (!directory.configured) return;
  let peers: Peer[];
  const serves = (p: Peer) => p.agent_id === id && p.labels[HTTP_ROUTES_LABEL] !== undefined;
  try {
    // The last list when it shows the peer serving, as dispatch does: no HTTP round trip per request.
    peers = await directory.recent(2_000);
    if (!peers.some(serves)) peers = await directory.list();
  } catch {
    return; // the A2A send itself reports an unknown peer
  }
  const peer = peers.find((p) => p.agent_id === id);
  const serving = peers.filter((p) => p.labels[HTTP_ROUTES_LABEL] !== undefined).map((p) => p.agent_id);
  const known = serving.length ? `peers serving HTTP now: ${serving.join(', ')}` : 'no peer serves HTTP now';
  if (!peer)
    throw proxyError('agent_not_connected', `agent ${id} is not connected under this API key (${known})`);
  if (peer.labels[HTTP_ROUTES_LABEL] === undefined)
    throw proxyError(
      'not_exposed',
      `agent ${id} (${peer.kind}) exposes no HTTP service: run \`nfltr http\` there, or start the worker with --expose PORT (${known})`,
    );
}

/** A body as text when it is UTF-8, else as base64. */
function bodyView(bytes: Buffer): { body: string } | { body_base64: string } {
  try {
    return { body: new TextDecoder('utf-8', { fatal: true }).decode(bytes) };
  } catch {
    return { body_base64: bytes.toString('base64') };
  }
}

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
