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
  DEFAULT_MAX_ARTIFACT_BYTES,
  describeFiles,
  type LocalFile,
  resolveLocalPaths,
  sendFiles,
} from '../agent/artifacts.js';
import type { A2aBody, A2aEndpoint, A2aFailure, A2aInbound, AgentClient } from '../agent/index.js';
import { A2aError, AgentError } from '../agent/index.js';
import {
  AckSchema,
  type ArtifactChunk,
  CancelSchema,
  ProbeSchema,
  RespondSchema,
  ResumeSchema,
  type TaskEvent,
  TaskStartSchema,
  taskStateName,
} from '../protocol/a2a.js';
import { type Logger, silentLogger } from '../util/log.js';
import { PlannerError } from './errors.js';
import { ResultArtifacts } from './result-artifacts.js';
import { isTerminal, type TaskEventRecord, type TaskSnapshot, type TaskStateName } from './task-state.js';
import type { StoredTask, TaskRequest, TaskStore } from './task-store.js';

/** Probes travel on this channel; task messages on the task id. */
export const PROBE_CHANNEL = 'probe';
const RESERVED_CHANNELS = new Set([PROBE_CHANNEL, 'handshake']);
const TASK_ID_RE = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/;
/** Flow control for files: wait while this much is queued for the relay. */
const MAX_QUEUED_BYTES = 8 * 1024 * 1024;

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

export class TaskManager extends EventEmitter<ManagerEvents> {
  readonly #agent: AgentClient;
  readonly #a2a: A2aEndpoint;
  readonly #store: TaskStore;
  readonly #opts: TaskManagerOptions;
  readonly #log: Logger;
  readonly #pending = new Map<string, PendingDispatch>();
  readonly #probes = new Map<string, PendingProbe>();
  readonly #chains = new Map<string, Promise<void>>();
  readonly #receivers = new Map<string, ResultArtifacts>();
  readonly #timers = new Map<string, NodeJS.Timeout>();
  /** Last seq for which a Resume was asked, per task, so one gap asks once. */
  readonly #resumeAsked = new Map<string, number>();
  /** Tasks given up before acceptance; a late acceptance is cancelled. */
  readonly #abandoned = new Set<string>();
  readonly #answering = new Set<string>();
  #everConnected = false;
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
    this.#agent.on('status', (s) => {
      if (s.type === 'connected') this.#onConnected();
    });
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
      };
    });
    accepted.catch(() => {}); // awaited below; a refusal may come while files are still streaming
    this.#pending.set(taskId, pending);
    let timer: NodeJS.Timeout | undefined;
    try {
      await this.#send(req.agent_id, taskId, {
        case: 'taskStart',
        value: create(TaskStartSchema, {
          taskId,
          objective: req.objective,
          contextJson: JSON.stringify(req.context ?? {}),
          constraintsJson: JSON.stringify(req.constraints ?? {}),
          timeoutMs: BigInt(req.timeout_ms ?? 0),
          inputFiles: inputs,
        }),
      });
      if (files.length) {
        await sendFiles(files, {
          taskId,
          send: (msg) => {
            if (pending.failed) throw pending.failed;
            return this.#send(req.agent_id, taskId, msg);
          },
          whenWritable: () => this.#whenWritable(),
        });
      }
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
      return { snapshot, request };
    } catch (err) {
      if (this.#pending.get(taskId) === pending) this.#pending.delete(taskId);
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

  /** Answers the pending question of a `waiting_input` task. */
  async respond(
    taskId: string,
    content: unknown,
    artifactFiles: string[] = [],
    action: 'accept' | 'decline' | 'cancel' = 'accept',
  ): Promise<{ task: StoredTask; files: { name: string; size: number; sha256: string }[] }> {
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
    this.#requireLink();
    this.#answering.add(taskId);
    try {
      let files: LocalFile[];
      let infos: Awaited<ReturnType<typeof describeFiles>>;
      try {
        files = await resolveLocalPaths(artifactFiles);
        infos = await describeFiles(files);
      } catch (err) {
        throw new PlannerError('invalid_argument', `${(err as Error).message}; the answer was not sent`);
      }
      const send = (msg: A2aBody) => this.#send(s.agent_id, taskId, msg);
      await send({
        case: 'respond',
        value: create(RespondSchema, { taskId, contentJson: JSON.stringify(content), files: infos, action }),
      }).catch((err: Error) => {
        throw this.#sendError(err, s.agent_id);
      });
      if (files.length) await sendFiles(files, { taskId, send, whenWritable: () => this.#whenWritable() });
      this.#store.setAnswered(taskId, s.pending.seq);
      return {
        task: this.#store.get(taskId)!,
        files: infos.map((f) => ({ name: f.name, size: Number(f.size), sha256: f.sha256 })),
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
    const local = async (note: string): Promise<CancelOutcome> => {
      const snapshot = await this.#localEvent(taskId, {
        state: 'cancelled',
        reason: 'cancelled',
        message: note,
      });
      return { snapshot, confirmed: false, note };
    };
    if (!this.#agent.connected) {
      return local(
        `the relay is unreachable (${this.#linkProblem()}), so worker ${s.agent_id} could not be told; ` +
          'marked cancelled locally',
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
        ? `worker ${s.agent_id} is not connected; marked cancelled locally`
        : `worker ${s.agent_id} did not confirm within ${waitMs / 1000} s; marked cancelled locally (the worker may still be stopping it)`,
    );
  }

  /** Tasks not terminal, oldest first; with `all`, also the most recent terminal ones. */
  list(all = false, recentLimit = 50): StoredTask[] {
    const active = this.#store.active();
    if (!all) return active;
    const ids = new Set(active.map((t) => t.snapshot.task_id));
    const terminal = this.#store.recent(recentLimit + ids.size).filter((t) => !ids.has(t.snapshot.task_id));
    return [...active, ...terminal.slice(0, recentLimit)];
  }

  close(): void {
    this.#closed = true;
    for (const t of this.#timers.values()) clearTimeout(t);
    this.#timers.clear();
    const err = new PlannerError('relay_unreachable', 'the planner is shutting down');
    for (const p of this.#pending.values()) p.reject(err);
    for (const p of this.#probes.values()) p.reject(err);
  }

  // ── inbound ────────────────────────────────────────────────────────────────────────────────────────

  #onMessage({ peer, channel, msg }: A2aInbound): void {
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
          draining: v.draining,
          round_trip_ms: null,
          reason: v.available
            ? undefined
            : v.draining
              ? 'the worker is draining (shutting down)'
              : !v.executorHealthy
                ? `the executor is unhealthy${v.executorError ? `: ${v.executorError}` : ''}`
                : v.freeSlots === 0
                  ? `all ${plural(v.maxTasks, 'slot')} busy`
                  : 'the worker reports it is unavailable',
        });
        return;
      }
      case 'taskRefused': {
        const v = msg.value;
        const p = this.#pending.get(v.taskId);
        if (!p) {
          // A Resume for a task the worker no longer knows (it lost its state): the task cannot finish.
          const owner = this.#owner(v.taskId);
          if (v.reason === 'unknown_task' && owner?.agentId === peer && !isTerminal(owner.snapshot?.state)) {
            void this.#localEvent(v.taskId, {
              state: 'failed',
              reason: 'worker_lost',
              message: `worker ${peer} no longer knows this task: ${v.message || 'unknown task'}`,
            });
          }
          return;
        }
        if (p.agent_id !== peer) return;
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
      default:
        this.#log.debug('ignoring A2A message', { peer, channel, kind: msg.case });
    }
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
    await this.#receiver(chunk.taskId).accept(chunk);
  }

  #receiver(taskId: string): ResultArtifacts {
    let r = this.#receivers.get(taskId);
    if (!r) {
      r = new ResultArtifacts({
        finalDir: join(this.#opts.stateDir, 'artifacts', taskId),
        stageDir: join(this.#opts.stateDir, 'artifacts', '.partial', taskId),
        maxBytes: this.#opts.maxArtifactBytes ?? DEFAULT_MAX_ARTIFACT_BYTES,
      });
      this.#receivers.set(taskId, r);
    }
    return r;
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
    if (isTerminal(owner.snapshot?.state) || seq <= last) return this.#ack(peer, taskId, seq);
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
        const { files, problems } = await this.#receiver(taskId).verify(ev.artifacts);
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
      clearTimeout(this.#timers.get(snapshot.task_id));
      this.#timers.delete(snapshot.task_id);
      this.#resumeAsked.delete(snapshot.task_id);
      const r = this.#receivers.get(snapshot.task_id);
      this.#receivers.delete(snapshot.task_id);
      void r?.abort();
    }
    this.emit('task', snapshot, record);
  }

  #onFailure(f: A2aFailure): void {
    if (f.code === 'peer_not_found') this.emit('peerGone', f.peer);
    if (f.channel && f.channel !== PROBE_CHANNEL) {
      const taskId = f.channel;
      const pending = this.#pending.get(taskId);
      if (pending?.agent_id === f.peer) return pending.reject(this.#failureError(f));
      const owner = this.#owner(taskId);
      if (owner?.agentId !== f.peer) return;
      if (f.code === 'e2ee_violation') {
        void this.#localEvent(taskId, { state: 'failed', reason: 'e2ee_violation', message: f.message });
      } else if (f.code === 'peer_not_found' && owner.snapshot?.pending) {
        // An answer that could not be delivered may be given again.
        const t = this.#store.get(taskId);
        if (t && t.answered_seq === owner.snapshot.pending.seq) this.#store.setAnswered(taskId, 0);
      }
      // Other channel-level failures (a sealed frame without a session after a reconnect) heal by resuming.
      return;
    }
    const err = this.#failureError(f);
    for (const p of this.#probes.values()) if (p.peer === f.peer) p.reject(err);
    if (f.channel === PROBE_CHANNEL) return;
    for (const p of this.#pending.values()) if (p.agent_id === f.peer) p.reject(err);
    if (f.code === 'no_session') {
      // The worker lost our session (it restarted): handshake again by resuming its tasks.
      for (const t of this.#store.active()) {
        if (t.snapshot.agent_id === f.peer) this.#resume(f.peer, t.snapshot.task_id, t.snapshot.last_seq);
      }
    }
  }

  #onConnected(): void {
    const reconnect = this.#everConnected;
    this.#everConnected = true;
    const active = this.#store.active();
    if (active.length === 0) return;
    // After a reconnect frames may have been lost in flight: start fresh sessions, then ask each worker to
    // replay what we have not stored.
    if (reconnect) for (const peer of new Set(active.map((t) => t.snapshot.agent_id))) this.#a2a.reset(peer);
    for (const t of active) this.#resume(t.snapshot.agent_id, t.snapshot.task_id, t.snapshot.last_seq);
  }

  // ── helpers ────────────────────────────────────────────────────────────────────────────────────────

  #task(taskId: string): StoredTask {
    const task = this.#store.get(taskId);
    if (task) return task;
    if (this.#pending.has(taskId)) {
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
          (existing ? ` (worker ${existing.agent_id}, state ${existing.state})` : ' (being dispatched)') +
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

  #ack(peer: string, taskId: string, seq: number): void {
    this.#trySend(peer, taskId, { case: 'ack', value: create(AckSchema, { taskId, seq: BigInt(seq) }) });
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

  async #whenWritable(): Promise<void> {
    while (this.#agent.queuedBytes > MAX_QUEUED_BYTES) {
      if (this.#closed) throw new PlannerError('relay_unreachable', 'the planner is shutting down');
      await new Promise((r) => setTimeout(r, 5));
    }
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
