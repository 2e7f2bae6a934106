/**
 * @module The planner's task manager: the tool operations (probe, dispatch, wait, status, answer,
 * cancel, list) over the {@link TaskRouter}, which turns everything that happens to a task into inputs
 * of one pure `step` (src/planner/task/) and executes its actions.
 */
import { create } from '@bufbuild/protobuf';
import type { ChunkRef } from '../agent/artifacts/index.js';
import type { A2aEndpoint, AgentClient } from '../agent/index.js';
import { advertisedHosts } from '../agent/p2p/index.js';
import { CancelSchema, PROBE_CHANNEL } from '../protocol/a2a.js';
import type { X25519KeyPair } from '../protocol/e2ee-noise.js';
import { type Logger, silentLogger } from '../util/log.js';
import { trace } from '../util/trace.js';
import { type AnswerAction, checkAnswer, readAnswerFiles } from './answers.js';
import {
  checkDispatch,
  type DispatchRequest,
  neverDelivered,
  prepareDispatch,
  withdrawnError,
} from './dispatch.js';
import { PlannerError } from './errors.js';
import { RelayLink } from './link.js';
import { type ProbeReport, Probes } from './probes.js';
import { HttpProxyClient } from './proxy.js';
import { TaskFiles, type TaskFilesOptions } from './task-files.js';
import { assertNewTaskId, findTask } from './task-lookup.js';
import { TaskRouter } from './task-router.js';
import { isTerminal, type TaskEventRecord, type TaskSnapshot, type TaskStateName } from './task-state.js';
import type { QueuedAnswer, StoredTask, TaskRequest, TaskStore } from './task-store.js';

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
  /** For tests (`NFLTR_TEST_CORRUPT_CHUNK`): the artifact sender corrupts this chunk once. */
  testCorruptChunk?: ChunkRef;
  /** Direct links for task files: this planner's static key, and `--p2p-threshold` (Infinity: off). */
  p2p?: { staticKey: X25519KeyPair; threshold: number };
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

export interface CancelOutcome {
  snapshot: TaskSnapshot;
  /** True when the worker itself reported the terminal state. */
  confirmed: boolean;
  note: string;
}

export class TaskManager {
  readonly #agent: AgentClient;
  readonly #store: TaskStore;
  readonly #opts: TaskManagerOptions;
  readonly #link: RelayLink;
  readonly #probes = new Probes();
  readonly #files: TaskFiles;
  readonly #router: TaskRouter;
  /** `proxy_request`: HTTP to services peers expose, over the same A2A endpoint. */
  readonly proxy: HttpProxyClient;
  /** respond_to_worker calls still reading their files. */
  readonly #answering = new Set<string>();

  constructor(opts: TaskManagerOptions) {
    this.#opts = opts;
    this.#agent = opts.agent;
    this.#store = opts.store;
    const logger = opts.logger ?? silentLogger;
    this.#link = new RelayLink(opts.agent, opts.servers, opts.linkWaitMs);
    this.proxy = new HttpProxyClient({ a2a: opts.a2a, link: this.#link, stateDir: opts.stateDir });
    this.#files = new TaskFiles({
      stateDir: opts.stateDir,
      maxArtifactBytes: opts.maxArtifactBytes,
      testCorruptChunk: opts.testCorruptChunk,
      direct: directOf(opts),
      send: (peer, taskId, msg) => this.#router.send(peer, taskId, msg),
      sealed: opts.a2a.encrypted,
      whenWritable: (signal) => this.#agent.whenWritable(MAX_QUEUED_BYTES, signal),
      logger,
    });
    this.#router = new TaskRouter({ ...opts, files: this.#files, probes: this.#probes, logger });
  }

  get connected(): boolean {
    return this.#agent.connected;
  }

  // ── tool operations ────────────────────────────────────────────────────────────────────────────────

  /** Asks a worker for its live capacity. A worker that does not answer in time is reported unavailable. */
  async probe(agentId: string): Promise<ProbeReport> {
    await this.#link.require();
    return this.#probes.probe(
      agentId,
      this.#opts.probeTimeoutMs ?? 4_000,
      (msg) => this.#router.send(agentId, PROBE_CHANNEL, msg),
      (err) => this.#link.sendError(err, agentId),
    );
  }

  /** Sends a task; resolves once the worker accepted it (with the stored snapshot), rejects if refused. */
  async dispatch(req: DispatchRequest): Promise<{ snapshot: TaskSnapshot; request: TaskRequest }> {
    const taskId = checkDispatch(req);
    trace('planner.dispatch', taskId);
    assertNewTaskId(this.#store, taskId);
    await this.#link.require();
    const { files, request, start } = await prepareDispatch(taskId, req, this.#files.maxBytes);
    assertNewTaskId(this.#store, taskId);
    const waiter = this.#router.expect(taskId, start);
    // The id is taken durably before anything goes out: a planner restarted from here on still asks
    // the worker about it (Resume) instead of losing a task that may be running.
    const row = {
      task_id: taskId,
      agent_id: req.agent_id,
      objective: req.objective,
      created_at: Date.now(),
      request,
    };
    this.#router.now(taskId, { type: 'dispatch', row });
    // On disk while the TaskStart travels: the answer waits for both, not one after the other.
    const stored = this.#store.synced();
    stored.catch(() => {}); // awaited below, after the worker's answer
    const timeoutMs = this.#opts.acceptTimeoutMs ?? 15_000;
    let timer: NodeJS.Timeout | undefined;
    try {
      await this.#router.send(req.agent_id, taskId, start);
      trace('planner.sent', taskId);
      timer = setTimeout(() => {
        const why = `worker ${req.agent_id} did not accept or refuse task ${taskId} within ${timeoutMs / 1000} s`;
        waiter.reject(new PlannerError('timeout', why));
      }, timeoutMs);
      const snapshot = await waiter.accepted;
      trace('planner.accepted', taskId);
      await stored;
      trace('planner.stored', taskId);
      // Accepted: the worker waits for the files before its executor sees the task; they stream on
      // their own, with progress as task events.
      if (files.length) this.#files.send(req.agent_id, taskId, files, 'input files');
      return { snapshot, request };
    } catch (err) {
      this.#router.settled(taskId, waiter);
      const cause = waiter.failed ?? (err as Error);
      const failure = this.#link.sendError(cause, req.agent_id);
      const never = neverDelivered(cause);
      // Accepted after all (the store's flush failed): the task is the worker's and stays.
      const started = this.#store.get(taskId)?.snapshot.state !== undefined;
      this.#router.now(taskId, { type: 'dispatch_failed', neverDelivered: never, message: failure.message });
      throw never || started ? failure : withdrawnError(failure, taskId, req.agent_id);
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * Resolves once the task has an event after `afterSeq` or is final, or after `ms`: a planner watching
   * a task waits in one call instead of polling.
   */
  async waitForEvent(taskId: string, afterSeq: number, ms: number, signal?: AbortSignal): Promise<void> {
    const s = findTask(this.#store, taskId).snapshot;
    if (ms <= 0 || this.#link.closed || s.last_seq > afterSeq || isTerminal(s.state) || signal?.aborted)
      return;
    await this.#router.next(ms, { signal, match: (t) => t.task_id === taskId });
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
    for (const id of ids ?? []) findTask(this.#store, id, true);
    const states = new Set(opts.states);
    const deadline = Date.now() + opts.waitMs;
    for (;;) {
      const taken = this.#store.takeUndelivered(states, ids);
      if (taken.length > 0) {
        await this.#store.synced();
        return taken;
      }
      const left = deadline - Date.now();
      if (left <= 0 || this.#link.closed || opts.signal?.aborted) return [];
      await this.#router.next(left, { signal: opts.signal });
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
      const t = findTask(this.#store, taskId);
      progress(t);
      if (isTerminal(t.snapshot.state)) return t;
      if (signal.aborted || this.#link.closed) {
        const why = String(signal.reason ?? 'closed');
        throw new PlannerError('wrong_state', `stopped following task ${taskId}: ${why}`);
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
    const task = findTask(this.#store, taskId);
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
    action: AnswerAction = 'accept',
  ): Promise<{
    task: StoredTask;
    files: { name: string; size: number; sha256: string }[];
    delivery: 'sent' | 'queued';
  }> {
    const task = findTask(this.#store, taskId);
    const { seq, json } = checkAnswer(task, content, action, this.#answering.has(taskId));
    if (this.#link.closed) throw new PlannerError('relay_unreachable', 'the planner is shutting down');
    this.#answering.add(taskId);
    try {
      const prepared = await readAnswerFiles(task, artifactFiles, this.#files.maxBytes);
      const answer: QueuedAnswer = { content_json: json, action, files: artifactFiles };
      this.#router.now(taskId, { type: 'answer', seq, answer });
      const stored = this.#store.synced();
      const peer = task.snapshot.agent_id;
      const sent =
        this.#router.reachable(peer) && (await this.#router.sendAnswer(peer, taskId, seq, answer, prepared));
      await stored;
      return {
        task: this.#store.get(taskId)!,
        files: prepared.infos.map((f) => ({ name: f.name, size: Number(f.size), sha256: f.sha256 })),
        delivery: sent ? 'sent' : 'queued',
      };
    } finally {
      this.#answering.delete(taskId);
    }
  }

  /** Cancels a task: tells the worker and waits for its `cancelled`; marks it locally if it cannot. */
  async cancel(taskId: string, reason = 'cancelled by planner'): Promise<CancelOutcome> {
    const s = findTask(this.#store, taskId).snapshot;
    const worker = s.agent_id;
    if (isTerminal(s.state)) {
      throw new PlannerError(
        'wrong_state',
        `task ${taskId} is already ${s.state}${s.reason ? ` (${s.reason})` : ''}; there is nothing to cancel`,
      );
    }
    const local = async (note: string): Promise<CancelOutcome> => {
      await this.#router.apply(taskId, { type: 'local_cancel', note });
      await this.#store.synced();
      return { snapshot: this.#store.get(taskId)!.snapshot, confirmed: false, note };
    };
    if (!this.#agent.connected) {
      return local(
        `the relay is unreachable (${this.#link.problem()}), so worker ${worker} could not be told yet; ` +
          'marked cancelled locally, and the cancel is delivered once the link is back',
      );
    }
    if (this.#router.unreachable(worker)) {
      return local(
        `worker ${worker} is not connected to the relay now; marked cancelled locally, and the cancel ` +
          'is delivered if it comes back',
      );
    }
    const waitMs = this.#opts.cancelWaitMs ?? 5_000;
    const stop = new AbortController();
    const outcome = this.#router.next(waitMs, {
      signal: stop.signal,
      match: (t) => t.task_id === taskId && isTerminal(t.state),
      peer: worker,
    });
    try {
      await this.#router.send(worker, taskId, {
        case: 'cancel',
        value: create(CancelSchema, { taskId, reason }),
      });
    } catch (err) {
      stop.abort();
      return local(
        `the cancel could not be sent to ${worker} (${(err as Error).message}); marked cancelled locally`,
      );
    }
    const r = await outcome;
    if (r && r !== 'gone') {
      const note =
        r.state === 'cancelled'
          ? `worker ${worker} stopped the task`
          : `the task ended as ${r.state} before the cancel took effect`;
      return { snapshot: r, confirmed: true, note };
    }
    return local(
      r === 'gone'
        ? `worker ${worker} is not connected; marked cancelled locally (the cancel is delivered if it comes back)`
        : `worker ${worker} did not confirm within ${waitMs / 1000} s; marked cancelled locally (the worker may still be stopping it)`,
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
    this.#link.close();
    this.#router.close();
    this.#files.close('the planner is shutting down');
    this.#probes.fail(undefined, new PlannerError('relay_unreachable', 'the planner is shutting down'));
  }
}

/** What TaskFiles needs for direct links, or undefined when they are off. */
function directOf(opts: TaskManagerOptions): TaskFilesOptions['direct'] {
  const p2p = opts.p2p;
  if (!p2p || !Number.isFinite(p2p.threshold)) return undefined;
  return {
    threshold: p2p.threshold,
    identity: (peer) => ({ localId: opts.agent.agentId, remoteId: peer, staticKey: p2p.staticKey }),
    addresses: () => advertisedHosts(opts.agent.observedAddr),
  };
}
