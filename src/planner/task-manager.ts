/**
 * @module The planner's task manager: a router between the tools, the A2A endpoint and the task store.
 * Every decision about a task is {@link step}'s (src/planner/task/); this class feeds it what happened,
 * one task at a time, and executes the actions it returns. Probes and files live in their own modules.
 */
import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { create } from '@bufbuild/protobuf';
import { checkArtifactLimit, describeFiles, type LocalFile, resolveLocalPaths } from '../agent/artifacts.js';
import type { A2aBody, A2aEndpoint, A2aFailure, A2aInbound, AgentClient } from '../agent/index.js';
import { A2aError, AgentError } from '../agent/index.js';
import {
  AckSchema,
  answerObject,
  CancelSchema,
  RespondSchema,
  ResumeSchema,
  TaskStartSchema,
} from '../protocol/a2a.js';
import { type Logger, silentLogger } from '../util/log.js';
import { answerProblem } from './answer-schema.js';
import { PlannerError } from './errors.js';
import { PeerWatch } from './peer-watch.js';
import { PROBE_CHANNEL, type ProbeReport, Probes } from './probes.js';
import { type Action, failureError, type Input, type RecoverWhy, step, writeChange } from './task/index.js';
import { LIMIT_FLAG, TaskFiles } from './task-files.js';
import { isTerminal, type TaskEventRecord, type TaskSnapshot, type TaskStateName } from './task-state.js';
import type { QueuedAnswer, StoredTask, TaskRequest, TaskStore } from './task-store.js';

export { PROBE_CHANNEL, type ProbeReport } from './probes.js';

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
  /** How long a call needing the relay waits for a link that is (re)dialling (default 3 s). */
  linkWaitMs?: number;
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

export interface CancelOutcome {
  snapshot: TaskSnapshot;
  /** True when the worker itself reported the terminal state. */
  confirmed: boolean;
  note: string;
}

/** The orchestrate_task call waiting for a dispatch's answer; where the dispatch stands is in the store. */
interface Waiter {
  resolve: (s: TaskSnapshot) => void;
  reject: (err: Error) => void;
  failed?: Error;
  /** The TaskStart, kept to send again if it was lost in a reconnect. */
  start: A2aBody;
}

interface ManagerEvents {
  /** A task's snapshot changed; the event is already stored. */
  task: [TaskSnapshot, TaskEventRecord];
  /** The relay said a peer is not connected. */
  peerGone: [string];
  closed: [];
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

/**
 * Whether a dispatch that failed with `cause` certainly left nothing at the worker, so its row can go:
 * the worker refused it, the relay had no such peer, the send never reached the relay's queue, or the
 * encrypted channel was refused. Anything else (no answer in time, a handshake that timed out, the
 * planner shutting down) may have left the TaskStart on its way: the dispatch is withdrawn instead.
 */
function neverDelivered(cause: Error): boolean {
  if (cause instanceof AgentError) return true;
  if (cause instanceof A2aError) return cause.code !== 'handshake_timeout' && cause.code !== 'reset';
  return (
    cause instanceof PlannerError &&
    (cause.code === 'refused' || cause.code === 'unknown_agent' || cause.code === 'a2a')
  );
}

const withdrawnNote = (taskId: string, agentId: string) =>
  `The dispatch is withdrawn: should task ${taskId} reach ${agentId} late, ${agentId} is told to cancel ` +
  `it, and get_task_status ${taskId} then shows it cancelled. probe_worker ${agentId}, or dispatch the ` +
  'objective again (with a new task_id, or to another worker)';

export class TaskManager extends EventEmitter<ManagerEvents> {
  readonly #agent: AgentClient;
  readonly #a2a: A2aEndpoint;
  readonly #store: TaskStore;
  readonly #opts: TaskManagerOptions;
  readonly #log: Logger;
  readonly #probes = new Probes();
  readonly #files: TaskFiles;
  readonly #watch: PeerWatch;
  /** Dispatching calls of this process, by task id. */
  readonly #waiters = new Map<string, Waiter>();
  /** What `step` remembers of a task in memory only (see {@link Task}). */
  readonly #memo = new Map<string, { resumeAsked?: number; cancelSentAt?: number }>();
  /** Each task's inputs run one after another. */
  readonly #chains = new Map<string, Promise<unknown>>();
  readonly #timers = new Map<string, NodeJS.Timeout>();
  /** respond_to_worker calls still reading their files. */
  readonly #answering = new Set<string>();
  #closed = false;

  constructor(opts: TaskManagerOptions) {
    super();
    this.setMaxListeners(0);
    this.#opts = opts;
    this.#agent = opts.agent;
    this.#a2a = opts.a2a;
    this.#store = opts.store;
    this.#log = opts.logger ?? silentLogger;
    this.#files = new TaskFiles({
      stateDir: opts.stateDir,
      maxArtifactBytes: opts.maxArtifactBytes,
      send: (peer, taskId, msg) => this.#send(peer, taskId, msg),
      whenWritable: (signal) => this.#agent.whenWritable(MAX_QUEUED_BYTES, signal),
      logger: this.#log,
    });
    this.#a2a.on('message', (m) => this.#onMessage(m));
    this.#a2a.on('failure', (f) => this.#onFailure(f));
    this.#a2a.on('resync', ({ peer }) => {
      this.#files.resync((taskId) => this.#store.get(taskId)?.snapshot.agent_id === peer);
      this.#recover(peer, 'resync');
    });
    this.#agent.on('status', (s) => {
      if (s.type === 'connected') for (const peer of this.#owedPeers()) this.#recover(peer, 'connected');
      else if (s.type === 'disconnected') this.#watch.linkDown();
    });
    this.#watch = new PeerWatch({
      graceMs: opts.workerLostGraceMs ?? 30_000,
      peers: () => this.#owedPeers(),
      check: (peer) => this.#recover(peer, 'check'),
      lost: (peer, ms) => this.#declareLost(peer, ms),
      connected: () => this.#agent.connected && !this.#closed,
      logger: this.#log,
    });
    this.#watch.start();
    for (const t of this.#store.active()) this.#now(t.snapshot.task_id, { type: 'planner_started' });
  }

  get connected(): boolean {
    return this.#agent.connected;
  }

  // ── tool operations ────────────────────────────────────────────────────────────────────────────────

  /** Asks a worker for its live capacity. A worker that does not answer in time is reported unavailable. */
  async probe(agentId: string): Promise<ProbeReport> {
    await this.#requireLink();
    return this.#probes.probe(
      agentId,
      this.#opts.probeTimeoutMs ?? 4_000,
      (msg) => this.#send(agentId, PROBE_CHANNEL, msg),
      (err) => this.#sendError(err, agentId),
    );
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
    await this.#requireLink();
    let files: LocalFile[] = [];
    let inputs: Awaited<ReturnType<typeof describeFiles>> = [];
    try {
      files = req.artifact_files?.length ? await resolveLocalPaths(req.artifact_files) : [];
      checkArtifactLimit(files, this.#files.maxBytes, LIMIT_FLAG);
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
    let waiter!: Waiter;
    const accepted = new Promise<TaskSnapshot>((resolve, reject) => {
      waiter = {
        start,
        resolve,
        reject: (err) => {
          waiter.failed ??= err;
          reject(err);
        },
      };
    });
    accepted.catch(() => {}); // awaited below; a refusal may come while files are still streaming
    this.#waiters.set(taskId, waiter);
    // The id is taken durably before anything goes out: a planner restarted from here on still asks
    // the worker about it (Resume) instead of losing a task that may be running.
    const row = {
      task_id: taskId,
      agent_id: req.agent_id,
      objective: req.objective,
      created_at: Date.now(),
      request,
    };
    this.#now(taskId, { type: 'dispatch', row });
    // On disk while the TaskStart travels: the answer waits for both, not one after the other.
    const stored = this.#store.synced();
    stored.catch(() => {}); // awaited below, after the worker's answer
    let timer: NodeJS.Timeout | undefined;
    try {
      await this.#send(req.agent_id, taskId, start);
      const timeoutMs = this.#opts.acceptTimeoutMs ?? 15_000;
      timer = setTimeout(
        () =>
          waiter.reject(
            new PlannerError(
              'timeout',
              `worker ${req.agent_id} did not accept or refuse task ${taskId} within ${timeoutMs / 1000} s`,
            ),
          ),
        timeoutMs,
      );
      const snapshot = await accepted;
      await stored;
      // Accepted: the worker waits for the files before its executor sees the task; they stream on
      // their own, with progress as task events.
      if (files.length) this.#files.send(req.agent_id, taskId, files, 'input files');
      return { snapshot, request };
    } catch (err) {
      if (this.#waiters.get(taskId) === waiter) this.#waiters.delete(taskId);
      const cause = waiter.failed ?? (err as Error);
      const failure = this.#sendError(cause, req.agent_id);
      const never = neverDelivered(cause);
      // Accepted after all (the store's flush failed): the task is the worker's and stays.
      const started = this.#store.get(taskId)?.snapshot.state !== undefined;
      this.#now(taskId, { type: 'dispatch_failed', neverDelivered: never, message: failure.message });
      if (never || started) throw failure;
      throw new PlannerError(
        failure instanceof PlannerError ? failure.code : 'timeout',
        `${failure.message.replace(/[.;]?\s*$/, '')}. ${withdrawnNote(taskId, req.agent_id)}`,
      );
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * Resolves once the task has an event after `afterSeq` or is final, or after `ms`: a planner watching
   * a task waits in one call instead of polling.
   */
  async waitForEvent(taskId: string, afterSeq: number, ms: number, signal?: AbortSignal): Promise<void> {
    const s = this.#task(taskId).snapshot;
    if (ms <= 0 || this.#closed || s.last_seq > afterSeq || isTerminal(s.state) || signal?.aborted) return;
    await this.#nextEvent(ms, signal, taskId);
  }

  /**
   * wait_for_tasks: resolves with the tasks that ended or ask a question since they were last reported
   * (each event once per planner, stored as delivered and on disk before it is returned), as soon as
   * there is one, or with none after `waitMs` or when `signal` aborts.
   */
  async waitForTasks(opts: {
    taskIds?: string[];
    states: TaskStateName[];
    waitMs: number;
    signal?: AbortSignal;
  }): Promise<StoredTask[]> {
    const ids = opts.taskIds && new Set(opts.taskIds);
    // An unknown id is an error, not an endless wait; one still being dispatched is waited for.
    for (const id of ids ?? []) this.#task(id, true);
    const states = new Set(opts.states);
    const deadline = Date.now() + opts.waitMs;
    for (;;) {
      const taken = this.#store.takeUndelivered(states, ids);
      if (taken.length > 0) {
        await this.#store.synced();
        return taken;
      }
      const left = deadline - Date.now();
      if (left <= 0 || this.#closed || opts.signal?.aborted) return [];
      await this.#nextEvent(left, opts.signal);
    }
  }

  /**
   * Resolves with the task once it is final (a task-augmented orchestrate_task follows it to the end),
   * calling `progress` on each of its events; rejects when `signal` aborts.
   */
  async untilFinal(
    taskId: string,
    signal: AbortSignal,
    progress: (t: StoredTask) => void,
  ): Promise<StoredTask> {
    for (;;) {
      const t = this.#task(taskId);
      progress(t);
      if (isTerminal(t.snapshot.state)) return t;
      if (signal.aborted || this.#closed) {
        throw new PlannerError(
          'wrong_state',
          `stopped following task ${taskId}: ${String(signal.reason ?? 'closed')}`,
        );
      }
      await this.waitForEvent(taskId, t.snapshot.last_seq, 60_000, signal);
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
    let answerJson = '';
    if (action === 'accept') {
      if (content === undefined) {
        throw new PlannerError(
          'invalid_argument',
          `content is required to accept the question of task ${taskId}: an object shaped by its schema ` +
            '(pending_question.schema), or action "decline" / "cancel" to answer without content',
        );
      }
      const schema = s.pending.schema as Parameters<typeof answerObject>[1];
      const answer = answerObject(content, schema);
      const problem = answerProblem(answer, schema);
      if (problem) {
        throw new PlannerError(
          'invalid_argument',
          `content does not match the schema of the question of task ${taskId}: ${problem}. Nothing was ` +
            'sent; the task is still waiting_input: answer again with respond_to_worker',
        );
      }
      answerJson = JSON.stringify(answer);
    }
    this.#answering.add(taskId);
    try {
      let files: LocalFile[];
      let infos: Awaited<ReturnType<typeof describeFiles>>;
      try {
        files = await resolveLocalPaths(artifactFiles);
        checkArtifactLimit(files, this.#files.maxBytes, LIMIT_FLAG);
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
      const answer: QueuedAnswer = { content_json: answerJson, action, files: artifactFiles };
      this.#now(taskId, { type: 'answer', seq: s.pending.seq, answer });
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
    const local = async (note: string): Promise<CancelOutcome> => {
      await this.#apply(taskId, { type: 'local_cancel', note });
      await this.#store.synced();
      return { snapshot: this.#store.get(taskId)!.snapshot, confirmed: false, note };
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
    this.#files.close('the planner is shutting down');
    for (const w of this.#waiters.values()) w.reject(err);
    this.#probes.fail(undefined, err);
    this.emit('closed');
  }

  // ── inbound ────────────────────────────────────────────────────────────────────────────────────────

  #onMessage({ peer, channel, msg }: A2aInbound): void {
    // A worker that was unreachable is back: whatever was queued for it goes out now.
    if (this.#watch.heard(peer)) this.#recover(peer, 'back');
    switch (msg.case) {
      case 'probeResult':
        return this.#probes.onResult(peer, msg.value);
      case 'taskRefused': {
        const { taskId, reason, message } = msg.value;
        void this.#apply(taskId, { type: 'refused', peer, reason, message });
        return;
      }
      case 'replayComplete': {
        const v = msg.value;
        if (v.taskId !== channel) return;
        void this.#apply(v.taskId, { type: 'replay_complete', peer, lastSeq: Number(v.lastSeq) });
        return;
      }
      case 'taskEvent': {
        const event = msg.value;
        if (event.taskId !== channel)
          return this.#log.warn('task event on the wrong channel', { peer, channel });
        // Whether files arrived is asked when the event's turn comes: chunks before it are in the queue.
        void this.#apply(event.taskId, () => ({
          type: 'event',
          peer,
          event,
          filesReceived: this.#files.receiving(event.taskId),
        }));
        return;
      }
      case 'artifactChunk': {
        const chunk = msg.value;
        if (chunk.taskId !== channel) return;
        void this.#enqueue(chunk.taskId, async () => {
          const s = this.#store.get(chunk.taskId)?.snapshot;
          if (s?.agent_id === peer && !isTerminal(s.state)) await this.#files.accept(peer, chunk);
        });
        return;
      }
      case 'artifactAck':
        if (this.#store.get(channel)?.snapshot.agent_id === peer) this.#files.onAck(channel, msg.value);
        return;
      default:
        this.#log.debug('ignoring A2A message', { peer, channel, kind: msg.case });
    }
  }

  #onFailure(f: A2aFailure): void {
    if (f.code === 'peer_not_found') {
      this.emit('peerGone', f.peer);
      if (this.#owedPeers().has(f.peer)) this.#watch.notFound(f.peer);
    }
    const failure = { type: 'failure', peer: f.peer, code: f.code, message: f.message } as const;
    if (f.channel && f.channel !== PROBE_CHANNEL) {
      void this.#apply(f.channel, { ...failure, scope: 'task' });
      return;
    }
    const err = failureError(f.peer, f.code, f.message);
    this.#probes.fail(f.peer, new PlannerError(err.code, err.message));
    if (f.channel === PROBE_CHANNEL) return;
    for (const t of this.#peerTasks(f.peer))
      void this.#apply(t.snapshot.task_id, { ...failure, scope: 'peer' });
  }

  // ── durability (docs/durability.md) ────────────────────────────────────────────────────────────────

  /** Workers that still owe this planner events, or are owed a dispatch or a cancel. */
  #owedPeers(): Set<string> {
    return new Set(this.#store.owed().map((t) => t.snapshot.agent_id));
  }

  #peerTasks(peer: string): StoredTask[] {
    return this.#store.owed().filter((t) => t.snapshot.agent_id === peer);
  }

  /** Whether a send to `peer` can get through now (we are on the relay, and it has not been reported gone). */
  #reachable(peer: string): boolean {
    return this.#agent.connected && !this.#closed && !this.#watch.isUnreachable(peer);
  }

  /**
   * Brings one worker up to date after anything that may have lost frames in flight: our reconnect or
   * start (`connected`), a new session with it (`resync`), its return after the relay said it was gone
   * (`back`), and the periodic check (`check`). What each task needs is `step`'s `recover`.
   */
  #recover(peer: string, why: RecoverWhy): void {
    if (!this.#agent.connected || this.#closed) return;
    let resumed = 0;
    for (const t of this.#peerTasks(peer)) {
      const actions = this.#now(t.snapshot.task_id, { type: 'recover', peer, why });
      if (actions.some((a) => a.type === 'resume')) resumed++;
    }
    if (why !== 'check' && resumed > 0) this.#log.info('resuming tasks', { peer, why, tasks: resumed });
  }

  /** The worker has been unreachable for the grace period: its open tasks end as `failed/worker_lost`. */
  #declareLost(peer: string, unreachableMs: number): void {
    const grace = this.#opts.workerLostGraceMs ?? 30_000;
    const message =
      `worker ${peer} has not been connected to the relay for ${Math.round(unreachableMs / 1000)} s ` +
      `(the grace period is ${grace / 1000} s, --worker-lost-grace); the task cannot finish`;
    const steps = this.#peerTasks(peer).map((t) =>
      this.#apply(t.snapshot.task_id, { type: 'worker_lost', message }),
    );
    void Promise.all(steps).then((done) => {
      const failed = done.filter((actions) => actions.some((a) => a.type === 'wake')).length;
      if (failed > 0) this.#log.warn('worker lost; its tasks failed', { peer, tasks: failed });
    });
  }

  // ── executing steps ────────────────────────────────────────────────────────────────────────────────

  /** Runs one input of a task after those before it. */
  #apply(taskId: string, input: Input | (() => Input)): Promise<Action[]> {
    return this.#enqueue(taskId, () => this.#run(taskId, typeof input === 'function' ? input() : input));
  }

  /**
   * Runs an input that appends no event (a dispatch taken, failed or recovered, an answer) at once:
   * its callers need the row written before they go on.
   */
  #now(taskId: string, input: Input): Action[] {
    let actions: Action[] = [];
    void this.#run(taskId, input, (a) => {
      actions = a;
    });
    return actions;
  }

  /** One step and its actions. Synchronous up to a `verify`, which waits for the files, then steps on. */
  async #run(taskId: string, input: Input, decided?: (a: Action[]) => void): Promise<Action[]> {
    const before = this.#store.get(taskId);
    const { task, actions } = step({ stored: before, ...this.#memo.get(taskId) }, input, Date.now());
    decided?.(actions);
    if (task.resumeAsked === undefined && task.cancelSentAt === undefined) this.#memo.delete(taskId);
    else this.#memo.set(taskId, { resumeAsked: task.resumeAsked, cancelSentAt: task.cancelSentAt });
    const peer = 'peer' in input ? input.peer : (before?.snapshot.agent_id ?? '');
    let snapshot: TaskSnapshot | undefined;
    for (const a of actions) {
      switch (a.type) {
        case 'store':
          if (a.change.op === 'append') {
            snapshot = writeChange(this.#store, taskId, a.change);
            // Stored already (cannot happen while each task's inputs run in turn): nothing follows.
            if (!snapshot) return actions;
          } else writeChange(this.#store, taskId, a.change);
          break;
        case 'ack':
          this.#ack(peer, taskId, a.seq);
          break;
        case 'resume':
          this.#resume(peer, taskId, a.afterSeq);
          break;
        case 'cancel':
          this.#trySend(peer, taskId, {
            case: 'cancel',
            value: create(CancelSchema, { taskId, reason: a.reason }),
          });
          break;
        case 'resend_start': {
          const start = this.#waiters.get(taskId)?.start;
          if (start) this.#trySend(peer, taskId, start);
          break;
        }
        case 'resend_answer':
          void this.#sendAnswer(peer, taskId, a.questionSeq, a.answer);
          break;
        case 'verify': {
          if (input.type !== 'event') break;
          const { files, problems } = await this.#files.verify(peer, taskId, input.event.artifacts);
          return [
            ...actions,
            ...(await this.#run(taskId, { type: 'artifacts_verified', record: a.record, files, problems })),
          ];
        }
        case 'resolve_dispatch':
          this.#waiters.get(taskId)?.resolve(snapshot ?? this.#store.get(taskId)!.snapshot);
          this.#waiters.delete(taskId);
          break;
        case 'reject_dispatch':
          this.#waiters.get(taskId)?.reject(new PlannerError(a.code, a.message));
          break;
        case 'arm_timeout':
          this.#armTimeout(this.#store.get(taskId));
          break;
        case 'wake': {
          const s = snapshot ?? a.snapshot;
          if (isTerminal(s.state)) {
            clearTimeout(this.#timers.get(taskId));
            this.#timers.delete(taskId);
            this.#files.end(taskId, `the task is ${s.state}`);
          }
          this.emit('task', s, a.record);
          break;
        }
        case 'log':
          this.#log[a.level](a.message, a.fields);
          break;
      }
    }
    return actions;
  }

  #enqueue<T>(taskId: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.#chains.get(taskId);
    // An idle task runs its input at once (synchronously up to its first wait).
    const next = prev ? prev.then(fn) : fn();
    const settled = next.catch((err: Error) => {
      this.#log.error('task message handling failed', { task: taskId, error: err.stack ?? err.message });
    });
    this.#chains.set(taskId, settled);
    void settled.then(() => {
      if (this.#chains.get(taskId) === settled) this.#chains.delete(taskId);
    });
    return next.catch(() => [] as unknown as T);
  }

  #armTimeout(t: StoredTask | undefined): void {
    const timeoutMs = t?.request.timeout_ms;
    if (!t || !timeoutMs || isTerminal(t.snapshot.state)) return;
    const grace = this.#opts.timeoutGraceMs ?? 10_000;
    const due = t.snapshot.created_at + timeoutMs + grace - Date.now();
    const taskId = t.snapshot.task_id;
    clearTimeout(this.#timers.get(taskId));
    const message = `no final event from worker ${t.snapshot.agent_id} within timeout_ms (${timeoutMs} ms) plus ${grace / 1000} s grace`;
    const timer = setTimeout(
      () => {
        this.#timers.delete(taskId);
        void this.#apply(taskId, { type: 'timeout', message });
      },
      Math.max(0, due),
    );
    timer.unref();
    this.#timers.set(taskId, timer);
  }

  // ── helpers ────────────────────────────────────────────────────────────────────────────────────────

  /**
   * The task for a tool call; a dispatch not answered yet or withdrawn is an error that says so (or,
   * with `dispatching`, is returned for wait_for_tasks to wait on).
   */
  #task(taskId: string, dispatching = false): StoredTask {
    const task = this.#store.get(taskId);
    if (task && (task.snapshot.state !== undefined || dispatching)) return task;
    if (task?.dispatch === 'withdrawn') {
      throw new PlannerError(
        'wrong_state',
        `task ${taskId} was withdrawn: worker ${task.snapshot.agent_id} did not answer its dispatch in ` +
          'time, and has not been heard from since. It is told to cancel the task as soon as it is; then ' +
          'this shows the task cancelled (or, if the task never reached it, the id is dropped)',
      );
    }
    if (task) {
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
    if (existing) {
      throw new PlannerError(
        'duplicate_task_id',
        `task_id ${JSON.stringify(taskId)} is already used by this planner` +
          (existing.state
            ? ` (worker ${existing.agent_id}, state ${existing.state})`
            : ' (being dispatched)') +
          '; choose another task_id, or omit it to get a generated one',
      );
    }
  }

  /** Resolves once a task event is stored (of `taskId`, when given), after `ms`, on close, or when `signal` aborts. */
  #nextEvent(ms: number, signal?: AbortSignal, taskId?: string): Promise<void> {
    return new Promise((resolve) => {
      const onTask = (s: TaskSnapshot) => {
        if (taskId === undefined || s.task_id === taskId) done();
      };
      const done = () => {
        clearTimeout(timer);
        this.off('task', onTask);
        this.off('closed', done);
        signal?.removeEventListener('abort', done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.on('task', onTask);
      this.on('closed', done);
      signal?.addEventListener('abort', done);
    });
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
        if (files.length > 0 && (prepared || !this.#files.sending(taskId))) {
          this.#files.send(peer, taskId, files, 'answer files');
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

  #linkProblem(): string {
    const tried = this.#opts.servers.join(', ');
    const last = this.#agent.lastError;
    return `not connected to the relay at ${tried}${last ? `: ${last}` : ''}`;
  }

  /**
   * A call that needs the relay while the link is (re)dialling waits for it a moment: an MCP client
   * calls right after the handshake, which is usually before the first dial is through. Then it fails,
   * naming the address redialled.
   */
  async #requireLink(): Promise<void> {
    if (this.#closed) throw new PlannerError('relay_unreachable', 'the planner is shutting down');
    if (!this.#agent.connected) await this.#linkWithin(this.#opts.linkWaitMs ?? 3_000);
    if (!this.#agent.connected) {
      throw new PlannerError(
        'relay_unreachable',
        `relay unreachable: ${this.#linkProblem()}. nfltr mcp keeps redialling; retry in a few seconds`,
      );
    }
  }

  #linkWithin(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.#agent.off('status', onStatus);
        resolve();
      };
      const onStatus = (s: { type: string }) => {
        if (s.type === 'connected' || s.type === 'fatal' || s.type === 'closed') done();
      };
      const timer = setTimeout(done, ms);
      this.#agent.on('status', onStatus);
    });
  }

  #sendError(err: Error, agentId: string): Error {
    if (err instanceof PlannerError) return err;
    if (err instanceof A2aError) {
      const f = failureError(agentId, err.code, err.message);
      return new PlannerError(f.code, f.message);
    }
    if (err instanceof AgentError) {
      return new PlannerError('relay_unreachable', `could not send to the relay: ${err.message}`);
    }
    return err;
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
