/**
 * @module The planner's task manager: probes, dispatch, the numbered event stream of every task (stored,
 * acknowledged, gaps resumed), answers, cancels, timeouts and result artifacts. It speaks A2A through an
 * {@link A2aEndpoint} and keeps every task in a {@link TaskStore}.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { join } from 'node:path';
import { create } from '@bufbuild/protobuf';
import {
  ArtifactReceiver,
  ArtifactSender,
  checkArtifactLimit,
  DEFAULT_MAX_ARTIFACT_BYTES,
  describeFiles,
  type LocalFile,
  resolveLocalPaths,
} from '../agent/artifacts.js';
import type { A2aBody, A2aEndpoint, A2aFailure, A2aInbound, AgentClient } from '../agent/index.js';
import { A2aError, AgentError } from '../agent/index.js';
import {
  AckSchema,
  type ArtifactAck,
  type ArtifactChunk,
  CancelSchema,
  ProbeSchema,
  RespondSchema,
  ResumeSchema,
  type TaskEvent,
  type TaskRefused,
  TaskStartSchema,
  taskStateName,
} from '../protocol/a2a.js';
import { DEFAULT_MAX_FRAME_BYTES } from '../protocol/control.js';
import { type Logger, silentLogger } from '../util/log.js';
import { PlannerError } from './errors.js';
import { PeerWatch } from './peer-watch.js';
import { isTerminal, type TaskEventRecord, type TaskSnapshot, type TaskStateName } from './task-state.js';
import type { QueuedAnswer, StoredTask, TaskRequest, TaskStore } from './task-store.js';

/** Probes travel on this channel; task messages on the task id. */
export const PROBE_CHANNEL = 'probe';
const RESERVED_CHANNELS = new Set([PROBE_CHANNEL, 'handshake']);
const TASK_ID_RE = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/;
/** Flow control for files: wait while this much is queued for the relay. */
const MAX_QUEUED_BYTES = 8 * 1024 * 1024;
const LIMIT_FLAG = '--max-artifact-bytes of nfltr mcp';

export interface TaskManagerOptions {
  agent: AgentClient;
  a2a: A2aEndpoint;
  store: TaskStore;
  /** Result artifacts go to `<stateDir>/artifacts/<task_id>/`. */
  stateDir: string;
  /** Relay control addresses, named in errors while disconnected. */
  servers: string[];
  maxArtifactBytes?: number;
  logger?: Logger;
  /** How long orchestrate_task waits for accepted/refused (default 15 s). */
  acceptTimeoutMs?: number;
  /** How long cancel_task waits for the worker's `cancelled` (default 5 s). */
  cancelWaitMs?: number;
  /** A worker that does not answer a probe within this is reported unavailable (default 4 s). */
  probeTimeoutMs?: number;
  /** Added to a task's timeout_ms before the planner itself marks it failed (default 10 s). */
  timeoutGraceMs?: number;
  /**
   * A worker the relay reports not connected for this long has its open tasks failed with reason
   * `worker_lost` (default 30 s, `--worker-lost-grace`).
   */
  workerLostGraceMs?: number;
}

export interface DispatchRequest {
  agent_id: string;
  task_id?: string;
  objective: string;
  context?: Record<string, unknown>;
  constraints?: Record<string, unknown>;
  artifact_files?: string[];
  timeout_ms?: number;
}

export interface ProbeReport {
  agent_id: string;
  available: boolean;
  free_slots?: number;
  max_tasks?: number;
  protocol?: string;
  tool?: string;
  labels?: Record<string, string>;
  executor_healthy?: boolean;
  executor_error?: string;
  /** The executor's own check_ready (credentials…); reason and fix when false. */
  executor_ready?: boolean;
  executor_reason?: string;
  executor_fix?: string;
  draining?: boolean;
  round_trip_ms: number | null;
  /** Why the worker is reported unavailable, when it is. */
  reason?: string;
}

export interface CancelOutcome {
  snapshot: TaskSnapshot;
  /** True when the worker itself reported the terminal state. */
  confirmed: boolean;
  note: string;
}

interface PendingDispatch {
  task_id: string;
  agent_id: string;
  objective: string;
  created_at: number;
  request: TaskRequest;
  resolve: (s: TaskSnapshot) => void;
  reject: (err: Error) => void;
  failed?: Error;
  /** The TaskStart, kept to send again if it was lost in a reconnect. */
  start: A2aBody;
  /**
   * `sent`: as dispatched. `probing`: after a resync, a Resume(0) asks the worker whether it has the
   * task. `resent`: it had not, so the TaskStart went again.
   */
  phase: 'sent' | 'probing' | 'resent';
}

interface PendingProbe {
  peer: string;
  resolve: (r: ProbeReport) => void;
  reject: (err: Error) => void;
}

interface ManagerEvents {
  /** A task's snapshot changed; the event is already stored. */
  task: [TaskSnapshot, TaskEventRecord];
  /** The relay said a peer is not connected. */
  peerGone: [string];
}

/** `task-20260414T101112Z-3f9a1c`: sortable, unique enough, and valid as a channel and folder name. */
export function generateTaskId(now = new Date()): string {
  const stamp = now
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d+Z$/, 'Z');
  return `task-${stamp}-${randomBytes(3).toString('hex')}`;
}

export function taskIdProblem(id: string): string | undefined {
  if (!TASK_ID_RE.test(id) || RESERVED_CHANNELS.has(id)) {
    return `task_id ${JSON.stringify(id)} is not usable: 1-128 characters of letters, digits, '.', '_', ':' or '-', starting with a letter or digit (or omit task_id to get one generated)`;
  }
  return undefined;
}

const plural = (n: number, one: string) => `${n} ${one}${n === 1 ? '' : 's'}`;

/** The largest `content` of one answer: a relay frame, less room for the envelope and encryption. */
export const MAX_ANSWER_BYTES = DEFAULT_MAX_FRAME_BYTES - 64 * 1024;

export class TaskManager extends EventEmitter<ManagerEvents> {
  readonly #agent: AgentClient;
  readonly #a2a: A2aEndpoint;
  readonly #store: TaskStore;
  readonly #opts: TaskManagerOptions;
  readonly #log: Logger;
  readonly #pending = new Map<string, PendingDispatch>();
  readonly #probes = new Map<string, PendingProbe>();
  readonly #chains = new Map<string, Promise<void>>();
  /** Result files of a task, received before the event that lists them. */
  readonly #receivers = new Map<string, ArtifactReceiver>();
  /** Input and answer files going out, per task. */
  readonly #transfers = new Map<string, Set<{ sender: ArtifactSender; abort: AbortController }>>();
  readonly #timers = new Map<string, NodeJS.Timeout>();
  /** get_task_status calls waiting (wait_ms) for a task's next event. */
  readonly #eventWaiters = new Map<string, Set<() => void>>();
  /** Last seq for which a Resume was asked, per task, so one gap asks once. */
  readonly #resumeAsked = new Map<string, number>();
  /** Tasks given up before acceptance; a late acceptance is cancelled. */
  readonly #abandoned = new Set<string>();
  readonly #answering = new Set<string>();
  readonly #watch: PeerWatch;
  /** Last time a Cancel was resent per task, so a chatty worker does not get one per event. */
  readonly #cancelResent = new Map<string, number>();
  #closed = false;

  constructor(opts: TaskManagerOptions) {
    super();
    this.setMaxListeners(0);
    this.#opts = opts;
    this.#agent = opts.agent;
    this.#a2a = opts.a2a;
    this.#store = opts.store;
    this.#log = opts.logger ?? silentLogger;
    this.#a2a.on('message', (m) => this.#onMessage(m));
    this.#a2a.on('failure', (f) => this.#onFailure(f));
    this.#a2a.on('resync', ({ peer }) => {
      this.#resyncTransfers(peer);
      this.#recover(peer, 'resync');
    });
    this.#agent.on('status', (s) => {
      if (s.type === 'connected') this.#onConnected();
      else if (s.type === 'disconnected') this.#watch.linkDown();
    });
    this.#watch = new PeerWatch({
      graceMs: opts.workerLostGraceMs ?? 30_000,
      peers: () => this.#owedPeers(),
      check: (peer) => this.#recover(peer, 'check'),
      lost: (peer, ms, why) => this.#declareLost(peer, ms, why),
      silenceCounts: (peer) =>
        this.#store
          .owed()
          .some(
            (t) =>
              t.snapshot.agent_id === peer && t.snapshot.state !== undefined && !isTerminal(t.snapshot.state),
          ),
      connected: () => this.#agent.connected && !this.#closed,
      logger: this.#log,
    });
    this.#watch.start();
    for (const t of this.#store.active()) this.#armTimeout(t);
  }

  get connected(): boolean {
    return this.#agent.connected;
  }

  // ── tool operations ────────────────────────────────────────────────────────────────────────────────

  /** Asks a worker for its live capacity. A worker that does not answer in time is reported unavailable. */
  async probe(agentId: string): Promise<ProbeReport> {
    this.#requireLink();
    const timeoutMs = this.#opts.probeTimeoutMs ?? 4_000;
    const probeId = randomUUID();
    const started = performance.now();
    let timer: NodeJS.Timeout | undefined;
    try {
      return await new Promise<ProbeReport>((resolve, reject) => {
        this.#probes.set(probeId, { peer: agentId, resolve, reject });
        timer = setTimeout(
          () =>
            resolve({
              agent_id: agentId,
              available: false,
              round_trip_ms: null,
              reason: `no probe answer within ${timeoutMs / 1000} s: the worker is overloaded, stuck or gone`,
            }),
          timeoutMs,
        );
        this.#send(agentId, PROBE_CHANNEL, { case: 'probe', value: create(ProbeSchema, { probeId }) }).catch(
          (err: Error) => reject(this.#sendError(err, agentId)),
        );
      }).then((r) =>
        r.round_trip_ms === null && r.available ? { ...r, round_trip_ms: performance.now() - started } : r,
      );
    } finally {
      clearTimeout(timer);
      this.#probes.delete(probeId);
    }
  }

  /** Sends a task; resolves once the worker accepted it (with the stored snapshot), rejects if refused. */
  async dispatch(req: DispatchRequest): Promise<{ snapshot: TaskSnapshot; request: TaskRequest }> {
    const taskId = req.task_id ?? generateTaskId();
    const problem = taskIdProblem(taskId);
    if (problem) throw new PlannerError('invalid_argument', problem);
    this.#assertNewTaskId(taskId);
    if (!req.objective.trim()) {
      throw new PlannerError('invalid_argument', 'objective is empty: say what the worker should do');
    }
    this.#requireLink();
    let files: LocalFile[] = [];
    let inputs: Awaited<ReturnType<typeof describeFiles>> = [];
    try {
      files = req.artifact_files?.length ? await resolveLocalPaths(req.artifact_files) : [];
      checkArtifactLimit(files, this.#maxArtifactBytes, LIMIT_FLAG);
      inputs = await describeFiles(files);
    } catch (err) {
      throw new PlannerError(
        'invalid_argument',
        `${(err as Error).message}; nothing was sent. Fix artifact_files (local paths on the planner machine) and retry`,
      );
    }
    this.#assertNewTaskId(taskId);

    const request: TaskRequest = {
      context: req.context,
      constraints: req.constraints,
      timeout_ms: req.timeout_ms,
      input_files: inputs.map((f) => ({ name: f.name, size: Number(f.size), sha256: f.sha256 })),
    };
    const start: A2aBody = {
      case: 'taskStart',
      value: create(TaskStartSchema, {
        taskId,
        objective: req.objective,
        contextJson: JSON.stringify(req.context ?? {}),
        constraintsJson: JSON.stringify(req.constraints ?? {}),
        timeoutMs: BigInt(req.timeout_ms ?? 0),
        inputFiles: inputs,
      }),
    };
    let pending!: PendingDispatch;
    const accepted = new Promise<TaskSnapshot>((resolve, reject) => {
      pending = {
        task_id: taskId,
        agent_id: req.agent_id,
        objective: req.objective,
        created_at: Date.now(),
        request,
        resolve,
        reject: (err) => {
          pending.failed ??= err;
          reject(err);
        },
        start,
        phase: 'sent',
      };
    });
    accepted.catch(() => {}); // awaited below; a refusal may come while files are still streaming
    this.#pending.set(taskId, pending);
    // The id is taken durably before anything goes out: a planner restarted from here on still asks
    // the worker about it (Resume) instead of losing a task that may be running.
    this.#store.begin(pending);
    // On disk while the TaskStart travels: the answer waits for both, not one after the other.
    const stored = this.#store.synced();
    stored.catch(() => {}); // awaited below, after the worker's answer
    let timer: NodeJS.Timeout | undefined;
    try {
      await this.#send(req.agent_id, taskId, start);
      const timeoutMs = this.#opts.acceptTimeoutMs ?? 15_000;
      timer = setTimeout(
        () =>
          pending.reject(
            new PlannerError(
              'timeout',
              `worker ${req.agent_id} did not accept or refuse task ${taskId} within ${timeoutMs / 1000} s; ` +
                'probe_worker it, or dispatch to another worker',
            ),
          ),
        timeoutMs,
      );
      const snapshot = await accepted;
      await stored;
      // Accepted: the worker waits for the files before its executor sees the task; they stream on
      // their own, with progress as task events.
      if (files.length) this.#startTransfer(req.agent_id, taskId, files, 'input files');
      return { snapshot, request };
    } catch (err) {
      if (this.#pending.get(taskId) === pending) this.#pending.delete(taskId);
      this.#store.remove(taskId);
      if (err instanceof PlannerError && err.code === 'timeout') {
        this.#abandoned.add(taskId);
        this.#trySend(req.agent_id, taskId, {
          case: 'cancel',
          value: create(CancelSchema, { taskId, reason: 'not accepted in time' }),
        });
      }
      throw pending.failed ?? this.#sendError(err as Error, req.agent_id);
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * Resolves once the task has an event after `afterSeq` or is final, or after `ms`: a planner watching
   * a task waits in one call instead of polling.
   */
  async waitForEvent(taskId: string, afterSeq: number, ms: number): Promise<void> {
    const s = this.#task(taskId).snapshot;
    if (ms <= 0 || this.#closed || s.last_seq > afterSeq || isTerminal(s.state)) return;
    const waiters = this.#eventWaiters.get(taskId) ?? new Set();
    this.#eventWaiters.set(taskId, waiters);
    await new Promise<void>((resolve) => {
      const wake = () => {
        clearTimeout(timer);
        waiters.delete(wake);
        if (waiters.size === 0 && this.#eventWaiters.get(taskId) === waiters)
          this.#eventWaiters.delete(taskId);
        resolve();
      };
      const timer = setTimeout(wake, ms);
      waiters.add(wake);
    });
  }

  /** A task with its events after `afterSeq`. */
  status(
    taskId: string,
    afterSeq = 0,
    limit = 200,
  ): { task: StoredTask; events: TaskEventRecord[]; more: boolean } {
    const task = this.#task(taskId);
    const events = this.#store.events(taskId, afterSeq, limit + 1);
    const more = events.length > limit;
    return { task, events: more ? events.slice(0, limit) : events, more };
  }

  /**
   * Answers the pending question of a `waiting_input` task. The answer is stored first; it goes out at
   * once when the worker is reachable (`sent`), else when it is back (`queued`), and is sent again after
   * a reconnect until the worker moves past the question.
   */
  async respond(
    taskId: string,
    content: unknown,
    artifactFiles: string[] = [],
    action: 'accept' | 'decline' | 'cancel' = 'accept',
  ): Promise<{
    task: StoredTask;
    files: { name: string; size: number; sha256: string }[];
    delivery: 'sent' | 'queued';
  }> {
    const task = this.#task(taskId);
    const s = task.snapshot;
    if (s.state !== 'waiting_input' || !s.pending) {
      throw new PlannerError(
        'wrong_state',
        `task ${taskId} is ${s.state}, not waiting_input: respond_to_worker only answers a pending question. ` +
          'Call get_task_status to see what the task is doing',
      );
    }
    if (task.answered_seq === s.pending.seq || this.#answering.has(taskId)) {
      throw new PlannerError(
        'wrong_state',
        `the question of task ${taskId} (event ${s.pending.seq}) was already answered; the worker has not ` +
          'moved on yet. Call get_task_status in a moment',
      );
    }
    if (this.#closed) throw new PlannerError('relay_unreachable', 'the planner is shutting down');
    this.#answering.add(taskId);
    try {
      let files: LocalFile[];
      let infos: Awaited<ReturnType<typeof describeFiles>>;
      try {
        files = await resolveLocalPaths(artifactFiles);
        checkArtifactLimit(files, this.#maxArtifactBytes, LIMIT_FLAG);
        const taken = new Set((task.request.input_files ?? []).map((f) => f.name));
        const clash = files.find((f) => taken.has(f.name));
        if (clash) {
          throw new Error(
            `${clash.name} was already sent with the task (input files are never replaced); give the new file another name`,
          );
        }
        infos = await describeFiles(files);
      } catch (err) {
        throw new PlannerError('invalid_argument', `${(err as Error).message}; the answer was not sent`);
      }
      const answer: QueuedAnswer = { content_json: JSON.stringify(content), action, files: artifactFiles };
      // Refused before it is stored: one Respond must fit one relay frame, and the question stays open.
      const size = Buffer.byteLength(answer.content_json ?? '');
      if (size > MAX_ANSWER_BYTES) {
        throw new PlannerError(
          'invalid_argument',
          `the answer's content is ${size} bytes, over the ${MAX_ANSWER_BYTES} bytes one answer can carry (one relay frame); ` +
            'put large data in a file and pass it in artifact_files instead. The answer was not sent; the question is still open',
        );
      }
      this.#store.setAnswer(taskId, s.pending.seq, answer);
      const stored = this.#store.synced();
      const sent =
        this.#reachable(s.agent_id) &&
        (await this.#sendAnswer(s.agent_id, taskId, s.pending.seq, answer, { files, infos }));
      await stored;
      return {
        task: this.#store.get(taskId)!,
        files: infos.map((f) => ({ name: f.name, size: Number(f.size), sha256: f.sha256 })),
        delivery: sent ? 'sent' : 'queued',
      };
    } finally {
      this.#answering.delete(taskId);
    }
  }

  /** Cancels a task: tells the worker and waits for its `cancelled`; marks it locally if it cannot. */
  async cancel(taskId: string, reason = 'cancelled by planner'): Promise<CancelOutcome> {
    const task = this.#task(taskId);
    const s = task.snapshot;
    if (isTerminal(s.state)) {
      throw new PlannerError(
        'wrong_state',
        `task ${taskId} is already ${s.state}${s.reason ? ` (${s.reason})` : ''}; there is nothing to cancel`,
      );
    }
    // Ended here without the worker's word: the Cancel is kept and sent again whenever the worker is
    // back, until it confirms (its final event, or "unknown task").
    const local = async (note: string): Promise<CancelOutcome> => {
      this.#store.setCancelPending(taskId, true);
      const snapshot = await this.#localEvent(taskId, {
        state: 'cancelled',
        reason: 'cancelled',
        message: note,
      });
      await this.#store.synced();
      return { snapshot, confirmed: false, note };
    };
    if (!this.#agent.connected) {
      return local(
        `the relay is unreachable (${this.#linkProblem()}), so worker ${s.agent_id} could not be told yet; ` +
          'marked cancelled locally, and the cancel is delivered once the link is back',
      );
    }
    if (this.#watch.isUnreachable(s.agent_id)) {
      return local(
        `worker ${s.agent_id} is not connected to the relay now; marked cancelled locally, and the cancel ` +
          'is delivered if it comes back',
      );
    }
    const waitMs = this.#opts.cancelWaitMs ?? 5_000;
    const outcome = this.#waitTerminal(taskId, s.agent_id, waitMs);
    try {
      await this.#send(s.agent_id, taskId, {
        case: 'cancel',
        value: create(CancelSchema, { taskId, reason }),
      });
    } catch (err) {
      outcome.stop();
      return local(
        `the cancel could not be sent to ${s.agent_id} (${(err as Error).message}); marked cancelled locally`,
      );
    }
    const r = await outcome.done;
    if (r.type === 'terminal') {
      const note =
        r.snapshot.state === 'cancelled'
          ? `worker ${s.agent_id} stopped the task`
          : `the task ended as ${r.snapshot.state} before the cancel took effect`;
      return { snapshot: r.snapshot, confirmed: true, note };
    }
    return local(
      r.type === 'gone'
        ? `worker ${s.agent_id} is not connected; marked cancelled locally (the cancel is delivered if it comes back)`
        : `worker ${s.agent_id} did not confirm within ${waitMs / 1000} s; marked cancelled locally (the worker may still be stopping it)`,
    );
  }

  /**
   * Tasks not terminal, oldest first; with `all`, also the most recent terminal ones. Tasks still being
   * dispatched (no answer from the worker yet) are not listed.
   */
  list(all = false, recentLimit = 50): StoredTask[] {
    const started = (t: StoredTask) => t.snapshot.state !== undefined;
    const active = this.#store.active().filter(started);
    if (!all) return active;
    const ids = new Set(active.map((t) => t.snapshot.task_id));
    const terminal = this.#store
      .recent(recentLimit + ids.size)
      .filter((t) => started(t) && !ids.has(t.snapshot.task_id));
    return [...active, ...terminal.slice(0, recentLimit)];
  }

  close(): void {
    this.#closed = true;
    this.#watch.stop();
    for (const t of this.#timers.values()) clearTimeout(t);
    this.#timers.clear();
    const err = new PlannerError('relay_unreachable', 'the planner is shutting down');
    for (const set of this.#transfers.values())
      for (const t of set) t.abort.abort('the planner is shutting down');
    for (const p of this.#pending.values()) p.reject(err);
    for (const p of this.#probes.values()) p.reject(err);
    for (const set of this.#eventWaiters.values()) for (const wake of [...set]) wake();
  }

  // ── inbound ────────────────────────────────────────────────────────────────────────────────────────

  #onMessage({ peer, channel, msg }: A2aInbound): void {
    // A worker that was unreachable is back: whatever was queued for it goes out now.
    if (this.#watch.heard(peer)) this.#recover(peer, 'back');
    switch (msg.case) {
      case 'probeResult': {
        const p = this.#probes.get(msg.value.probeId);
        if (!p || p.peer !== peer) return;
        const v = msg.value;
        p.resolve({
          agent_id: peer,
          available: v.available,
          free_slots: v.freeSlots,
          max_tasks: v.maxTasks,
          protocol: v.protocol,
          tool: v.tool,
          labels: { ...v.labels },
          executor_healthy: v.executorHealthy,
          executor_error: v.executorError || undefined,
          executor_ready: v.executorReady,
          executor_reason: v.executorReason || undefined,
          executor_fix: v.executorFix || undefined,
          draining: v.draining,
          round_trip_ms: null,
          reason: v.available
            ? undefined
            : v.draining
              ? 'the worker is draining (shutting down)'
              : !v.executorHealthy
                ? `the executor is unhealthy${v.executorError ? `: ${v.executorError}` : ''}`
                : !v.executorReady
                  ? `the executor is not ready: ${v.executorReason || 'no reason given'}${v.executorFix ? ` (fix: ${v.executorFix})` : ''}`
                  : v.freeSlots === 0
                    ? `all ${plural(v.maxTasks, 'slot')} busy`
                    : 'the worker reports it is unavailable',
        });
        return;
      }
      case 'taskRefused':
        return this.#onRefused(peer, msg.value);
      case 'replayComplete': {
        const v = msg.value;
        if (v.taskId !== channel) return;
        this.#enqueue(v.taskId, async () => this.#onReplayComplete(peer, v.taskId, Number(v.lastSeq)));
        return;
      }
      case 'taskEvent': {
        const ev = msg.value;
        if (ev.taskId !== channel)
          return this.#log.warn('task event on the wrong channel', { peer, channel });
        this.#enqueue(ev.taskId, () => this.#onEvent(peer, ev));
        return;
      }
      case 'artifactChunk': {
        const chunk = msg.value;
        if (chunk.taskId !== channel) return;
        this.#enqueue(chunk.taskId, () => this.#onChunk(peer, chunk));
        return;
      }
      case 'artifactAck':
        return this.#onArtifactAck(peer, channel, msg.value);
      default:
        this.#log.debug('ignoring A2A message', { peer, channel, kind: msg.case });
    }
  }

  #onRefused(peer: string, v: TaskRefused): void {
    const p = this.#pending.get(v.taskId);
    if (p) {
      if (p.agent_id !== peer) return;
      // Answers to the Resume(0) a resync sends for a dispatch not yet accepted (see #recover).
      if (v.reason === 'unknown_task') {
        if (p.phase === 'resent') return;
        p.phase = 'resent';
        this.#log.info('the TaskStart was lost in a reconnect; sending it again', { peer, task: v.taskId });
        this.#trySend(peer, v.taskId, p.start);
        return;
      }
      if (v.reason === 'duplicate_task_id' && p.phase !== 'sent') {
        // It did arrive after all: ask for its events instead.
        p.phase = 'probing';
        this.#resume(peer, v.taskId, 0);
        return;
      }
      p.reject(
        new PlannerError(
          'refused',
          `worker ${peer} refused task ${v.taskId}: ${v.reason || 'refused'}${v.message ? ` (${v.message})` : ''}` +
            (v.reason === 'no_free_slots'
              ? '; probe_worker for free slots, wait, or pick another worker'
              : ''),
        ),
      );
      return;
    }
    const t = this.#store.get(v.taskId);
    if (!t || t.snapshot.agent_id !== peer || v.reason !== 'unknown_task') return;
    if (t.cancel_pending) {
      // A cancel resent for a task the worker no longer has: nothing left to stop.
      this.#store.setCancelPending(v.taskId, false);
      return;
    }
    if (t.snapshot.state === undefined) {
      // Dispatched by an earlier run of this planner that died before the worker got the TaskStart.
      this.#log.info('a dispatch interrupted by a planner restart never reached the worker; dropped', {
        peer,
        task: v.taskId,
      });
      this.#store.remove(v.taskId);
      return;
    }
    // A Resume for a task the worker no longer knows (it lost its state): the task cannot finish.
    if (!isTerminal(t.snapshot.state)) {
      void this.#localEvent(v.taskId, {
        state: 'failed',
        reason: 'worker_lost',
        message: `worker ${peer} no longer knows this task: ${v.message || 'unknown task'}`,
      });
    }
  }

  /** The worker replayed what a Resume asked for; `lastSeq` is its newest event. */
  #onReplayComplete(peer: string, taskId: string, lastSeq: number): void {
    const t = this.#store.get(taskId);
    if (!t || t.snapshot.agent_id !== peer || isTerminal(t.snapshot.state)) return;
    const last = t.snapshot.last_seq;
    if (lastSeq <= last) {
      this.#resumeAsked.delete(taskId);
      return;
    }
    // Some of the replay was lost on the way as well: ask once more for what is still missing.
    if (this.#resumeAsked.get(taskId) === last) return;
    this.#resumeAsked.set(taskId, last);
    this.#resume(peer, taskId, last);
  }

  #owner(taskId: string): { agentId: string; snapshot?: TaskSnapshot } | undefined {
    const p = this.#pending.get(taskId);
    if (p) return { agentId: p.agent_id };
    const t = this.#store.get(taskId);
    return t && { agentId: t.snapshot.agent_id, snapshot: t.snapshot };
  }

  async #onChunk(peer: string, chunk: ArtifactChunk): Promise<void> {
    const owner = this.#owner(chunk.taskId);
    if (!owner || owner.agentId !== peer || isTerminal(owner.snapshot?.state)) return;
    await this.#receiver(chunk.taskId, peer).accept(chunk);
  }

  #receiver(taskId: string, peer: string): ArtifactReceiver {
    let r = this.#receivers.get(taskId);
    if (!r) {
      r = new ArtifactReceiver({
        taskId,
        dir: join(this.#opts.stateDir, 'artifacts', taskId),
        partialDir: join(this.#opts.stateDir, 'artifacts', '.partial', taskId),
        maxBytes: this.#maxArtifactBytes,
        limitFlag: LIMIT_FLAG,
        acceptUnannounced: true,
        logger: this.#log,
        sendAck: (ack) => this.#trySend(peer, taskId, { case: 'artifactAck', value: ack }),
      });
      this.#receivers.set(taskId, r);
    }
    return r;
  }

  get #maxArtifactBytes(): number {
    return this.#opts.maxArtifactBytes ?? DEFAULT_MAX_ARTIFACT_BYTES;
  }

  /** Streams files to a task's worker in the background; one that cannot be sent cancels the task. */
  #startTransfer(peer: string, taskId: string, files: LocalFile[], what: string): void {
    const abort = new AbortController();
    const sender = new ArtifactSender(files, {
      taskId,
      send: (msg) => this.#send(peer, taskId, msg),
      whenWritable: (signal) => this.#agent.whenWritable(MAX_QUEUED_BYTES, signal),
      signal: abort.signal,
      logger: this.#log,
    });
    const entry = { sender, abort };
    const set = this.#transfers.get(taskId) ?? new Set();
    set.add(entry);
    this.#transfers.set(taskId, set);
    sender
      .run()
      .then(
        (r) =>
          this.#log.info(`${what} sent`, {
            task: taskId,
            files: r.files,
            bytes: r.bytes,
            bytes_sent: r.bytesSent,
            bytes_resent: r.bytesResent,
            discarded: r.failed.length ? r.failed : undefined,
          }),
        (err: Error) => {
          if (abort.signal.aborted) return;
          this.#log.warn(`${what} could not be sent; cancelling the task`, {
            task: taskId,
            error: err.message,
          });
          this.#trySend(peer, taskId, {
            case: 'cancel',
            value: create(CancelSchema, { taskId, reason: `${what} could not be sent: ${err.message}` }),
          });
        },
      )
      .finally(() => {
        set.delete(entry);
        if (set.size === 0 && this.#transfers.get(taskId) === set) this.#transfers.delete(taskId);
      });
  }

  #onArtifactAck(peer: string, taskId: string, ack: ArtifactAck): void {
    if (this.#owner(taskId)?.agentId !== peer) return;
    for (const t of this.#transfers.get(taskId) ?? []) t.sender.onAck(ack);
  }

  /** A new session with `peer`: its transfers go on from the acknowledged offsets. */
  #resyncTransfers(peer: string): void {
    for (const [taskId, set] of this.#transfers) {
      if (this.#owner(taskId)?.agentId === peer) for (const t of set) t.sender.resync();
    }
    for (const [taskId, r] of this.#receivers) if (this.#owner(taskId)?.agentId === peer) r.resync();
  }

  async #onEvent(peer: string, ev: TaskEvent): Promise<void> {
    const taskId = ev.taskId;
    const seq = Number(ev.seq);
    const owner = this.#owner(taskId);
    if (!owner) {
      if (this.#abandoned.has(taskId)) {
        this.#trySend(peer, taskId, {
          case: 'cancel',
          value: create(CancelSchema, { taskId, reason: 'not accepted in time' }),
        });
      } else this.#log.warn('event for an unknown task', { peer, task: taskId, seq });
      return;
    }
    if (owner.agentId !== peer) {
      return this.#log.warn('event for a task of another worker ignored', { peer, task: taskId });
    }
    const last = owner.snapshot?.last_seq ?? 0;
    if (isTerminal(owner.snapshot?.state)) {
      this.#settleCancel(peer, taskId, ev);
      return this.#ack(peer, taskId, seq);
    }
    if (seq <= last) return this.#ack(peer, taskId, seq);
    if (seq > last + 1) {
      if (this.#resumeAsked.get(taskId) !== last) {
        this.#resumeAsked.set(taskId, last);
        this.#log.info('gap in task events; asking to resume', { task: taskId, after_seq: last, got: seq });
        this.#resume(peer, taskId, last);
      }
      return;
    }
    this.#resumeAsked.delete(taskId);

    const state = taskStateName(ev.state);
    const record: TaskEventRecord = {
      seq,
      state: state ?? 'failed',
      time: Number(ev.timeUnixMs) || Date.now(),
      origin: 'worker',
    };
    if (ev.message) record.message = ev.message;
    if (ev.reason) record.reason = ev.reason;
    if (ev.progress || ev.total) {
      record.progress = ev.progress;
      if (ev.total) record.total = ev.total;
    }
    if (state === 'waiting_input') {
      record.question = ev.question;
      record.schema = parseJson(ev.requestedSchemaJson);
    }
    if (ev.resultText) record.result_text = ev.resultText;
    if (ev.structuredJson) record.structured = parseJson(ev.structuredJson);
    if (!state) {
      record.reason = 'protocol_error';
      record.message = `worker sent an event with unknown state ${ev.state}`;
    }

    if (record.state === 'completed' || record.state === 'failed') {
      const receiver = this.#receivers.get(taskId);
      if (ev.artifacts.length || receiver) {
        const { files, problems } = await this.#receiver(taskId, peer).verify(ev.artifacts);
        if (files.length) record.artifacts = files;
        if (problems.length) {
          this.#log.warn('artifact verification failed', { task: taskId, problems });
          if (record.state === 'completed') {
            record.state = 'failed';
            record.reason = 'artifact_integrity';
            record.message = problems.join('; ');
          } else record.message = [record.message, ...problems].filter(Boolean).join('; ');
        }
      }
    }

    let snapshot: TaskSnapshot | undefined;
    const pending = this.#pending.get(taskId);
    if (pending) {
      snapshot = this.#store.create(pending, record);
      this.#pending.delete(taskId);
    } else snapshot = this.#store.append(taskId, record);
    if (!snapshot) return this.#ack(peer, taskId, seq);
    this.#ack(peer, taskId, seq);
    if (pending) {
      pending.resolve(snapshot);
      this.#armTimeout(this.#store.get(taskId)!);
    }
    this.#afterEvent(snapshot, record);
  }

  #afterEvent(snapshot: TaskSnapshot, record: TaskEventRecord): void {
    if (isTerminal(snapshot.state)) {
      // The worker's own final word confirms any cancel this planner was still re-sending.
      if (record.origin === 'worker' && this.#store.get(snapshot.task_id)?.cancel_pending) {
        this.#store.setCancelPending(snapshot.task_id, false);
      }
      clearTimeout(this.#timers.get(snapshot.task_id));
      this.#timers.delete(snapshot.task_id);
      this.#resumeAsked.delete(snapshot.task_id);
      const r = this.#receivers.get(snapshot.task_id);
      this.#receivers.delete(snapshot.task_id);
      void r?.abort();
      for (const t of this.#transfers.get(snapshot.task_id) ?? [])
        t.abort.abort(`the task is ${snapshot.state}`);
    }
    this.emit('task', snapshot, record);
    for (const wake of [...(this.#eventWaiters.get(snapshot.task_id) ?? [])]) wake();
  }

  #onFailure(f: A2aFailure): void {
    if (f.code === 'peer_not_found') {
      this.emit('peerGone', f.peer);
      if (this.#owedPeers().has(f.peer)) this.#watch.notFound(f.peer);
    }
    if (f.channel && f.channel !== PROBE_CHANNEL) {
      const taskId = f.channel;
      const pending = this.#pending.get(taskId);
      if (pending?.agent_id === f.peer) {
        if (f.code === 'peer_not_found' || f.code === 'e2ee_violation') pending.reject(this.#failureError(f));
        return;
      }
      const owner = this.#owner(taskId);
      if (owner?.agentId !== f.peer) return;
      if (f.code === 'e2ee_violation') {
        void this.#localEvent(taskId, { state: 'failed', reason: 'e2ee_violation', message: f.message });
      }
      // Other channel-level failures (a frame sealed under a session that a reconnect replaced, an answer
      // to a worker that is away) heal by resuming: the answer stays queued, see #recover.
      return;
    }
    const err = this.#failureError(f);
    for (const p of this.#probes.values()) if (p.peer === f.peer) p.reject(err);
    if (f.channel === PROBE_CHANNEL) return;
    for (const p of this.#pending.values()) if (p.agent_id === f.peer) p.reject(err);
  }

  /** On every (re)connect to the relay, and at start: frames may have been lost; bring every worker up to date. */
  #onConnected(): void {
    for (const peer of this.#owedPeers()) this.#recover(peer, 'connected');
  }

  // ── durability (docs/durability.md) ────────────────────────────────────────────────────────────────

  /** Workers that still owe this planner events, or are owed a dispatch or a cancel. */
  #owedPeers(): Set<string> {
    const peers = new Set(this.#store.owed().map((t) => t.snapshot.agent_id));
    for (const p of this.#pending.values()) peers.add(p.agent_id);
    return peers;
  }

  /** Whether a send to `peer` can get through now (we are on the relay, and it has not been reported gone). */
  #reachable(peer: string): boolean {
    return this.#agent.connected && !this.#closed && !this.#watch.isUnreachable(peer);
  }

  /**
   * Brings one worker up to date after anything that may have lost frames in flight: our reconnect or
   * start (`connected`), a new session with it (`resync`), its return after the relay said it was gone
   * (`back`), and the periodic check (`check`). Every open task is resumed after its last stored seq; a
   * dispatch not yet accepted is asked about (Resume 0: the worker replays `accepted`, or says it never
   * got the TaskStart, which then goes again); cancels not yet confirmed go again; and, except on the
   * periodic check, answers the worker has not moved past go again (it ignores one it already took).
   * Every message here is idempotent at the worker.
   */
  #recover(peer: string, why: 'connected' | 'resync' | 'back' | 'check'): void {
    if (!this.#agent.connected || this.#closed) return;
    let resumed = 0;
    for (const t of this.#store.owed()) {
      const s = t.snapshot;
      if (s.agent_id !== peer) continue;
      if (isTerminal(s.state)) {
        if (t.cancel_pending) this.#sendCancel(peer, s.task_id);
        continue;
      }
      const p = this.#pending.get(s.task_id);
      if (p) {
        // A dispatch in flight has its own acceptance timeout; only a possible loss makes it ask.
        if (why === 'check') continue;
        if (p.phase === 'sent') p.phase = 'probing';
      }
      this.#resume(peer, s.task_id, s.last_seq);
      resumed++;
      const answer = t.answer;
      if (why !== 'check' && answer && s.state === 'waiting_input' && t.answered_seq === s.pending?.seq) {
        void this.#sendAnswer(peer, s.task_id, t.answered_seq, answer);
      }
    }
    if (why !== 'check' && resumed > 0) this.#log.info('resuming tasks', { peer, why, tasks: resumed });
  }

  /**
   * Sends an answer (Respond naming its question, then its files). Resolves true once it is on its way,
   * false when it could not be sent now (it stays queued and goes with the next {@link #recover}). Waits
   * at most a second: a worker that is reconnecting must not hold the tool call.
   */
  async #sendAnswer(
    peer: string,
    taskId: string,
    questionSeq: number,
    answer: QueuedAnswer,
    prepared?: { files: LocalFile[]; infos: Awaited<ReturnType<typeof describeFiles>> },
  ): Promise<boolean> {
    let files = prepared?.files ?? [];
    let infos = prepared?.infos ?? [];
    if (!prepared && answer.files.length > 0) {
      try {
        files = await resolveLocalPaths(answer.files);
        infos = await describeFiles(files);
      } catch (err) {
        this.#log.warn('the files of a queued answer cannot be read any more; sending it without them', {
          task: taskId,
          error: (err as Error).message,
        });
        files = [];
        infos = [];
      }
    }
    const sending = this.#send(peer, taskId, {
      case: 'respond',
      value: create(RespondSchema, {
        taskId,
        contentJson: answer.content_json,
        files: infos,
        action: answer.action,
        questionSeq: BigInt(questionSeq),
      }),
    }).then(
      () => {
        // A resend after a reconnect leaves a transfer still running to resume on its own.
        if (files.length > 0 && (prepared || !this.#transfers.has(taskId))) {
          this.#startTransfer(peer, taskId, files, 'answer files');
        }
        return true;
      },
      (err: Error) => {
        this.#log.info('answer queued: it could not be sent now', { task: taskId, error: err.message });
        return false;
      },
    );
    let timer: NodeJS.Timeout | undefined;
    const waited = new Promise<boolean>((r) => {
      timer = setTimeout(() => r(false), 1_000);
    });
    try {
      return await Promise.race([sending, waited]);
    } finally {
      clearTimeout(timer);
    }
  }

  #sendCancel(peer: string, taskId: string): void {
    const now = Date.now();
    if (now - (this.#cancelResent.get(taskId) ?? 0) < 1_000) return;
    this.#cancelResent.set(taskId, now);
    this.#trySend(peer, taskId, {
      case: 'cancel',
      value: create(CancelSchema, { taskId, reason: 'cancelled by the planner' }),
    });
  }

  /**
   * An event for a task that already ended here. If it ended here without the worker's word (a local
   * cancel, worker_lost), the worker's own final event settles it; anything else means the task still
   * runs there, so it is told again to stop.
   */
  #settleCancel(peer: string, taskId: string, ev: TaskEvent): void {
    const t = this.#store.get(taskId);
    if (!t?.cancel_pending) return;
    const state = taskStateName(ev.state);
    if (state && isTerminal(state)) {
      this.#store.setCancelPending(taskId, false);
      this.#cancelResent.delete(taskId);
    } else this.#sendCancel(peer, taskId);
  }

  /** The worker has been unreachable for the grace period: its open tasks end as `failed/worker_lost`. */
  #declareLost(peer: string, unreachableMs: number, why: 'unreachable' | 'silent' = 'unreachable'): void {
    const grace = this.#opts.workerLostGraceMs ?? 30_000;
    const message =
      why === 'silent'
        ? `worker ${peer} is connected to the relay but has answered nothing for ${Math.round(unreachableMs / 1000)} s ` +
          '(frozen, or its link is dead); the task cannot finish'
        : `worker ${peer} has not been connected to the relay for ${Math.round(unreachableMs / 1000)} s ` +
          `(the grace period is ${grace / 1000} s, --worker-lost-grace); the task cannot finish`;
    for (const p of [...this.#pending.values()]) {
      if (p.agent_id === peer) p.reject(new PlannerError('unknown_agent', message));
    }
    let failed = 0;
    for (const t of this.#store.owed()) {
      const s = t.snapshot;
      if (s.agent_id !== peer) continue;
      if (isTerminal(s.state)) {
        // Told for one more grace period; then given up.
        if (t.cancel_pending) this.#store.setCancelPending(s.task_id, false);
        continue;
      }
      if (s.state === undefined) {
        if (!this.#pending.has(s.task_id)) this.#store.remove(s.task_id);
        continue;
      }
      // Should the worker come back after all, it is told to stop this task.
      this.#store.setCancelPending(s.task_id, true);
      void this.#localEvent(s.task_id, { state: 'failed', reason: 'worker_lost', message });
      failed++;
    }
    if (failed > 0) this.#log.warn('worker lost; its tasks failed', { peer, tasks: failed });
  }

  // ── helpers ────────────────────────────────────────────────────────────────────────────────────────

  #task(taskId: string): StoredTask {
    const task = this.#store.get(taskId);
    if (task && task.snapshot.state !== undefined) return task;
    if (task || this.#pending.has(taskId)) {
      throw new PlannerError(
        'wrong_state',
        `task ${taskId} is still being dispatched: orchestrate_task has not returned yet`,
      );
    }
    throw new PlannerError(
      'unknown_task',
      `unknown task ${JSON.stringify(taskId)}: this planner has no task with that id. Call list_active_tasks ` +
        '(with all: true for finished ones) to see the task ids it tracks',
    );
  }

  #assertNewTaskId(taskId: string): void {
    const existing = this.#store.get(taskId)?.snapshot;
    if (existing || this.#pending.has(taskId)) {
      throw new PlannerError(
        'duplicate_task_id',
        `task_id ${JSON.stringify(taskId)} is already used by this planner` +
          (existing?.state
            ? ` (worker ${existing.agent_id}, state ${existing.state})`
            : ' (being dispatched)') +
          '; choose another task_id, or omit it to get a generated one',
      );
    }
  }

  #linkProblem(): string {
    const tried = this.#opts.servers.join(', ');
    const last = this.#agent.lastError;
    return `not connected to the relay at ${tried}${last ? `: ${last}` : ''}`;
  }

  #requireLink(): void {
    if (this.#closed) throw new PlannerError('relay_unreachable', 'the planner is shutting down');
    if (!this.#agent.connected) {
      throw new PlannerError(
        'relay_unreachable',
        `relay unreachable: ${this.#linkProblem()}. nfltr mcp keeps redialling; retry in a few seconds`,
      );
    }
  }

  #sendError(err: Error, agentId: string): Error {
    if (err instanceof PlannerError) return err;
    if (err instanceof A2aError)
      return this.#failureError({ peer: agentId, code: err.code, message: err.message });
    if (err instanceof AgentError) {
      return new PlannerError('relay_unreachable', `could not send to the relay: ${err.message}`);
    }
    return err;
  }

  #failureError(f: A2aFailure): PlannerError {
    if (f.code === 'peer_not_found') {
      return new PlannerError(
        'unknown_agent',
        `unknown agent ${JSON.stringify(f.peer)}: no such peer is connected under this API key. ` +
          'Call list_worker_peers to see the workers you can use',
      );
    }
    return new PlannerError('a2a', `A2A channel to ${f.peer} failed (${f.code}): ${f.message}`);
  }

  #enqueue(taskId: string, fn: () => Promise<void>): Promise<void> {
    const prev = this.#chains.get(taskId) ?? Promise.resolve();
    const next = prev.then(fn).catch((err: Error) => {
      this.#log.error('task message handling failed', { task: taskId, error: err.stack ?? err.message });
    });
    this.#chains.set(taskId, next);
    void next.then(() => {
      if (this.#chains.get(taskId) === next) this.#chains.delete(taskId);
    });
    return next;
  }

  /** Stores an event this planner decides (timeout, local cancel, e2ee violation) after the worker's. */
  #localEvent(
    taskId: string,
    e: { state: TaskStateName; reason: string; message: string },
  ): Promise<TaskSnapshot> {
    let result: TaskSnapshot | undefined;
    return this.#enqueue(taskId, async () => {
      const t = this.#store.get(taskId);
      if (!t) return;
      if (isTerminal(t.snapshot.state)) {
        result = t.snapshot;
        return;
      }
      const record: TaskEventRecord = {
        seq: t.snapshot.last_seq + 1,
        time: Date.now(),
        origin: 'planner',
        ...e,
      };
      const snapshot = this.#store.append(taskId, record)!;
      result = snapshot;
      this.#afterEvent(snapshot, record);
    }).then(() => result ?? this.#store.get(taskId)!.snapshot);
  }

  #armTimeout(t: StoredTask): void {
    const timeoutMs = t.request.timeout_ms;
    if (!timeoutMs || isTerminal(t.snapshot.state)) return;
    const grace = this.#opts.timeoutGraceMs ?? 10_000;
    const due = t.snapshot.created_at + timeoutMs + grace - Date.now();
    const taskId = t.snapshot.task_id;
    clearTimeout(this.#timers.get(taskId));
    const timer = setTimeout(
      () => {
        this.#timers.delete(taskId);
        // Until the worker confirms, the cancel is sent again whenever it is back (see #recover).
        const state = this.#store.get(taskId)?.snapshot.state;
        if (state !== undefined && !isTerminal(state)) this.#store.setCancelPending(taskId, true);
        this.#trySend(t.snapshot.agent_id, taskId, {
          case: 'cancel',
          value: create(CancelSchema, { taskId, reason: 'timeout' }),
        });
        void this.#localEvent(taskId, {
          state: 'failed',
          reason: 'timeout',
          message: `no final event from worker ${t.snapshot.agent_id} within timeout_ms (${timeoutMs} ms) plus ${grace / 1000} s grace`,
        });
      },
      Math.max(0, due),
    );
    timer.unref();
    this.#timers.set(taskId, timer);
  }

  #waitTerminal(
    taskId: string,
    agentId: string,
    ms: number,
  ): {
    done: Promise<{ type: 'terminal'; snapshot: TaskSnapshot } | { type: 'gone' } | { type: 'timeout' }>;
    stop: () => void;
  } {
    let stop = () => {};
    const done = new Promise<
      { type: 'terminal'; snapshot: TaskSnapshot } | { type: 'gone' } | { type: 'timeout' }
    >((resolve) => {
      const onTask = (s: TaskSnapshot) => {
        if (s.task_id === taskId && isTerminal(s.state)) finish({ type: 'terminal', snapshot: s });
      };
      const onGone = (peer: string) => {
        if (peer === agentId) finish({ type: 'gone' });
      };
      const timer = setTimeout(() => finish({ type: 'timeout' }), ms);
      const finish = (r: Parameters<typeof resolve>[0]) => {
        stop();
        resolve(r);
      };
      stop = () => {
        clearTimeout(timer);
        this.off('task', onTask);
        this.off('peerGone', onGone);
      };
      this.on('task', onTask);
      this.on('peerGone', onGone);
    });
    return { done, stop: () => stop() };
  }

  /** Acknowledges once what is stored is on disk: on the ack, the worker lets its copy go. */
  #ack(peer: string, taskId: string, seq: number): void {
    this.#store.synced().then(
      () =>
        this.#trySend(peer, taskId, { case: 'ack', value: create(AckSchema, { taskId, seq: BigInt(seq) }) }),
      (err: Error) =>
        this.#log.error('task store flush failed; not acknowledging (the worker keeps the event)', {
          task: taskId,
          seq,
          error: err.message,
        }),
    );
  }

  #resume(peer: string, taskId: string, afterSeq: number): void {
    this.#trySend(peer, taskId, {
      case: 'resume',
      value: create(ResumeSchema, { taskId, afterSeq: BigInt(afterSeq) }),
    });
  }

  /** One send; a synchronous throw (closed agent, full queue) becomes a rejection. */
  async #send(peer: string, channel: string, msg: A2aBody): Promise<void> {
    return this.#a2a.send(peer, channel, msg);
  }

  /** Sends without waiting; a failure is logged (the next reconnect resumes). */
  #trySend(peer: string, channel: string, msg: A2aBody): void {
    this.#send(peer, channel, msg).catch((err: Error) => {
      this.#log.debug('A2A send failed', { peer, channel, kind: msg.case, error: err.message });
    });
  }
}

function parseJson(text: string): unknown {
  if (!text) return undefined;
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}
