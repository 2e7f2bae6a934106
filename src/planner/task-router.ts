/**
 * @module The planner's task router: every A2A message, delivery failure, reconnect and timer of a task
 * becomes an input of {@link step} (src/planner/task/), one input of a task after another, and the
 * actions step returns are executed here: store, acknowledge, resume, cancel, resend, settle the
 * dispatching call, wake waiters. The tool operations on top are the {@link TaskManager}'s.
 */
import { EventEmitter } from 'node:events';
import { create } from '@bufbuild/protobuf';
import type { A2aBody, A2aEndpoint, A2aFailure, A2aInbound, AgentClient } from '../agent/index.js';
import { AckSchema, type ArtifactChunk, CancelSchema, PROBE_CHANNEL, ResumeSchema } from '../protocol/a2a.js';
import { type Logger, silentLogger } from '../util/log.js';
import { type FileInfos, type readAnswerFiles, rereadAnswerFiles, respondMessage } from './answers.js';
import { PlannerError } from './errors.js';
import { PeerWatch } from './peer-watch.js';
import type { Probes } from './probes.js';
import { type Action, failureError, type Input, type RecoverWhy, step, writeChange } from './task/index.js';
import type { TaskFiles } from './task-files.js';
import { isTerminal, type TaskEventRecord, type TaskSnapshot } from './task-state.js';
import type { QueuedAnswer, StoredTask, TaskStore } from './task-store.js';

export interface TaskRouterOptions {
  agent: AgentClient;
  a2a: A2aEndpoint;
  store: TaskStore;
  files: TaskFiles;
  probes: Probes;
  logger?: Logger;
  /** Added to a task's timeout_ms before the planner itself marks it failed (default 10 s). */
  timeoutGraceMs?: number;
  /** A worker reported not connected this long has its open tasks failed as `worker_lost` (default 30 s). */
  workerLostGraceMs?: number;
}

/** The orchestrate_task call waiting for a dispatch's answer; where the dispatch stands is in the store. */
export interface Waiter {
  /** Settles with the worker's answer: `accepted` (the stored snapshot) or the error. */
  accepted: Promise<TaskSnapshot>;
  reject: (err: Error) => void;
  /** The first error the dispatch got, if any. */
  failed?: Error;
}

interface DispatchCall {
  waiter: Waiter;
  resolve: (s: TaskSnapshot) => void;
  /** The TaskStart, kept to send again if it was lost in a reconnect. */
  start: A2aBody;
}

interface RouterEvents {
  /** A task's snapshot changed; the event is already stored. */
  task: [TaskSnapshot, TaskEventRecord];
  /** The relay said a peer is not connected. */
  peerGone: [string];
  closed: [];
}

export class TaskRouter extends EventEmitter<RouterEvents> {
  readonly #agent: AgentClient;
  readonly #a2a: A2aEndpoint;
  readonly #store: TaskStore;
  readonly #files: TaskFiles;
  readonly #probes: Probes;
  readonly #opts: TaskRouterOptions;
  readonly #log: Logger;
  readonly #watch: PeerWatch;
  /** Dispatching calls of this process, by task id. */
  readonly #calls = new Map<string, DispatchCall>();
  /** What `step` remembers of a task in memory only (see `Task` in task/step.ts). */
  readonly #memo = new Map<string, { resumeAsked?: number; cancelSentAt?: number }>();
  /** Each task's inputs run one after another. */
  readonly #chains = new Map<string, Promise<unknown>>();
  readonly #timers = new Map<string, NodeJS.Timeout>();
  #closed = false;

  constructor(opts: TaskRouterOptions) {
    super();
    this.setMaxListeners(0);
    this.#opts = opts;
    this.#agent = opts.agent;
    this.#a2a = opts.a2a;
    this.#store = opts.store;
    this.#files = opts.files;
    this.#probes = opts.probes;
    this.#log = opts.logger ?? silentLogger;
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
      lost: (peer, ms, why) => this.#declareLost(peer, ms, why),
      silenceCounts: (peer) =>
        this.#peerTasks(peer).some((t) => t.snapshot.state !== undefined && !isTerminal(t.snapshot.state)),
      connected: () => this.#agent.connected && !this.#closed,
      logger: this.#log,
    });
    this.#watch.start();
    for (const t of this.#store.active()) this.now(t.snapshot.task_id, { type: 'planner_started' });
  }

  /**
   * Registers the orchestrate_task call of `taskId` before its TaskStart leaves; `step` settles it
   * (resolve_dispatch, reject_dispatch). {@link settled} ends it.
   */
  expect(taskId: string, start: A2aBody): Waiter {
    let resolve!: (s: TaskSnapshot) => void;
    let reject!: (err: Error) => void;
    const accepted = new Promise<TaskSnapshot>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    accepted.catch(() => {}); // the caller awaits it; a refusal may come while it does something else
    const waiter: Waiter = {
      accepted,
      reject: (err) => {
        waiter.failed ??= err;
        reject(err);
      },
    };
    this.#calls.set(taskId, { waiter, resolve, start });
    return waiter;
  }

  settled(taskId: string, waiter: Waiter): void {
    if (this.#calls.get(taskId)?.waiter === waiter) this.#calls.delete(taskId);
  }

  /** Whether a send to `peer` can get through now (we are on the relay, and it has not been reported gone). */
  reachable(peer: string): boolean {
    return this.#agent.connected && !this.#closed && !this.#watch.isUnreachable(peer);
  }

  /** Whether the relay has reported `peer` not connected (and nothing was heard from it since). */
  unreachable(peer: string): boolean {
    return this.#watch.isUnreachable(peer);
  }

  close(): void {
    this.#closed = true;
    this.#watch.stop();
    for (const t of this.#timers.values()) clearTimeout(t);
    this.#timers.clear();
    const err = new PlannerError('relay_unreachable', 'the planner is shutting down');
    for (const c of this.#calls.values()) c.waiter.reject(err);
    this.emit('closed');
  }

  // ── inbound ────────────────────────────────────────────────────────────────────────────────────────

  #onMessage({ peer, channel, msg, sealed }: A2aInbound): void {
    // A worker that was unreachable is back: whatever was queued for it goes out now.
    if (this.#watch.heard(peer)) this.#recover(peer, 'back');
    switch (msg.case) {
      case 'probeResult':
        return this.#probes.onResult(peer, msg.value);
      case 'taskRefused': {
        const { taskId, reason, message } = msg.value;
        void this.apply(taskId, { type: 'refused', peer, reason, message });
        return;
      }
      case 'replayComplete': {
        const v = msg.value;
        if (v.taskId === channel) {
          void this.apply(channel, { type: 'replay_complete', peer, lastSeq: Number(v.lastSeq) });
        }
        return;
      }
      case 'taskEvent': {
        const event = msg.value;
        if (event.taskId !== channel)
          return this.#log.warn('task event on the wrong channel', { peer, channel });
        // Whether files arrived is asked when the event's turn comes: chunks before it are in the queue.
        const filesReceived = () => this.#files.receiving(channel);
        void this.apply(channel, () => ({ type: 'event', peer, event, filesReceived: filesReceived() }));
        return;
      }
      case 'artifactChunk':
        return this.#onChunk(peer, channel, msg.value, sealed);
      case 'p2pOffer': {
        const s = this.#store.get(channel)?.snapshot;
        if (s?.agent_id !== peer || isTerminal(s.state)) return;
        this.#files
          // Chunks on a direct link carry their SHA-256 (its sender always hashes them).
          .answerOffer(peer, channel, msg.value, (chunk) => this.#onChunk(peer, channel, chunk, false))
          .catch((err: Error) =>
            this.#log.warn('could not answer a direct transfer offer', { task: channel, error: err.message }),
          );
        return;
      }
      case 'artifactAck':
        if (this.#store.get(channel)?.snapshot.agent_id === peer) this.#files.onAck(channel, msg.value);
        return;
      case 'p2pAnswer':
        if (this.#store.get(channel)?.snapshot.agent_id === peer) this.#files.onP2pAnswer(channel, msg.value);
        return;
      default:
        this.#log.debug('ignoring A2A message', { peer, channel, kind: msg.case });
    }
  }

  /** A result file chunk, through the relay or on the task's direct link. */
  /** `sealed`: the chunk came in a frame sealed end to end (then it may go without its own SHA-256). */
  #onChunk(peer: string, channel: string, chunk: ArtifactChunk, sealed: boolean): void {
    if (chunk.taskId !== channel) return;
    void this.#enqueue(channel, async () => {
      const s = this.#store.get(channel)?.snapshot;
      if (s?.agent_id === peer && !isTerminal(s.state)) await this.#files.accept(peer, chunk, sealed);
    });
  }

  #onFailure(f: A2aFailure): void {
    if (f.code === 'peer_not_found') {
      this.emit('peerGone', f.peer);
      if (this.#owedPeers().has(f.peer)) this.#watch.notFound(f.peer);
    }
    const failure = { type: 'failure', peer: f.peer, code: f.code, message: f.message } as const;
    if (f.channel && f.channel !== PROBE_CHANNEL) {
      void this.apply(f.channel, { ...failure, scope: 'task' });
      return;
    }
    const err = failureError(f.peer, f.code, f.message);
    this.#probes.fail(f.peer, new PlannerError(err.code, err.message));
    if (f.channel === PROBE_CHANNEL) return;
    for (const t of this.#peerTasks(f.peer))
      void this.apply(t.snapshot.task_id, { ...failure, scope: 'peer' });
  }

  // ── durability (docs/durability.md) ────────────────────────────────────────────────────────────────

  /** Workers that still owe this planner events, or are owed a dispatch or a cancel. */
  #owedPeers(): Set<string> {
    return new Set(this.#store.owed().map((t) => t.snapshot.agent_id));
  }

  #peerTasks(peer: string): StoredTask[] {
    return this.#store.owed().filter((t) => t.snapshot.agent_id === peer);
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
      const actions = this.now(t.snapshot.task_id, { type: 'recover', peer, why });
      if (actions.some((a) => a.type === 'resume')) resumed++;
    }
    if (why !== 'check' && resumed > 0) this.#log.info('resuming tasks', { peer, why, tasks: resumed });
  }

  /** The worker has been unreachable for the grace period: its open tasks end as `failed/worker_lost`. */
  #declareLost(peer: string, unreachableMs: number, why: 'unreachable' | 'silent'): void {
    const grace = this.#opts.workerLostGraceMs ?? 30_000;
    const message =
      why === 'silent'
        ? `worker ${peer} is connected to the relay but has answered nothing for ${Math.round(unreachableMs / 1000)} s ` +
          '(frozen, or its link is dead); the task cannot finish'
        : `worker ${peer} has not been connected to the relay for ${Math.round(unreachableMs / 1000)} s ` +
          `(the grace period is ${grace / 1000} s, --worker-lost-grace); the task cannot finish`;
    const steps = this.#peerTasks(peer).map((t) =>
      this.apply(t.snapshot.task_id, { type: 'worker_lost', message }),
    );
    void Promise.all(steps).then((done) => {
      const failed = done.filter((actions) => actions.some((a) => a.type === 'wake')).length;
      if (failed > 0) this.#log.warn('worker lost; its tasks failed', { peer, tasks: failed });
    });
  }

  // ── executing steps ────────────────────────────────────────────────────────────────────────────────

  /** Runs one input of a task after those before it. */
  apply(taskId: string, input: Input | (() => Input)): Promise<Action[]> {
    const run = async () => this.#runAll(taskId, typeof input === 'function' ? input() : input);
    return this.#enqueue(taskId, run).then((actions) => actions ?? []);
  }

  /**
   * Runs an input that stores no event (a dispatch taken, failed or recovered, an answer, a start) at
   * once: its callers need the row written (or the store's error) before they go on.
   */
  now(taskId: string, input: Input): Action[] {
    return this.#run(taskId, input).actions;
  }

  /** One step with everything that follows from it, the check of result files included. */
  async #runAll(taskId: string, input: Input): Promise<Action[]> {
    const { actions, rest } = this.#run(taskId, input);
    return rest ? [...actions, ...(await rest)] : actions;
  }

  /** One step and its actions, executed at once; a `verify` returns the rest: the check, then a step on. */
  #run(taskId: string, input: Input): { actions: Action[]; rest?: Promise<Action[]> } {
    const before = this.#store.get(taskId);
    const { task, actions } = step({ stored: before, ...this.#memo.get(taskId) }, input, Date.now());
    const { resumeAsked, cancelSentAt } = task;
    if (resumeAsked === undefined && cancelSentAt === undefined) this.#memo.delete(taskId);
    else this.#memo.set(taskId, { resumeAsked, cancelSentAt });
    const peer = 'peer' in input ? input.peer : (before?.snapshot.agent_id ?? '');
    let snapshot: TaskSnapshot | undefined;
    for (const a of actions) {
      switch (a.type) {
        case 'store':
          if (a.change.op !== 'append') {
            writeChange(this.#store, taskId, a.change);
            break;
          }
          snapshot = writeChange(this.#store, taskId, a.change);
          // Stored already (cannot happen while a task's inputs run in turn): nothing follows from it.
          if (!snapshot) return { actions };
          break;
        case 'ack':
          this.#ack(peer, taskId, a.seq);
          break;
        case 'resume': {
          const value = create(ResumeSchema, { taskId, afterSeq: BigInt(a.afterSeq) });
          this.#trySend(peer, taskId, { case: 'resume', value });
          break;
        }
        case 'cancel':
          this.#trySend(peer, taskId, {
            case: 'cancel',
            value: create(CancelSchema, { taskId, reason: a.reason }),
          });
          break;
        case 'resend_start': {
          const start = this.#calls.get(taskId)?.start;
          if (start) this.#trySend(peer, taskId, start);
          break;
        }
        case 'resend_answer':
          void this.sendAnswer(peer, taskId, a.questionSeq, a.answer);
          break;
        case 'verify': {
          if (input.type !== 'event') break;
          const rest = this.#files
            .verify(peer, taskId, input.event.artifacts)
            .then(({ files, problems }) =>
              this.#runAll(taskId, { type: 'artifacts_verified', record: a.record, files, problems }),
            );
          return { actions, rest };
        }
        case 'resolve_dispatch':
          this.#calls.get(taskId)?.resolve(snapshot ?? this.#store.get(taskId)!.snapshot);
          this.#calls.delete(taskId);
          break;
        case 'reject_dispatch':
          this.#calls.get(taskId)?.waiter.reject(new PlannerError(a.code, a.message));
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
    return { actions };
  }

  #enqueue<T>(taskId: string, fn: () => Promise<T>): Promise<T | undefined> {
    const prev = this.#chains.get(taskId);
    // An idle task runs its input at once (synchronously up to its first wait).
    const next = (prev ? prev.then(fn) : fn()).catch((err: Error) => {
      this.#log.error('task message handling failed', { task: taskId, error: err.stack ?? err.message });
      return undefined;
    });
    this.#chains.set(taskId, next);
    void next.then(() => {
      if (this.#chains.get(taskId) === next) this.#chains.delete(taskId);
    });
    return next;
  }

  #armTimeout(t: StoredTask | undefined): void {
    const timeoutMs = t?.request.timeout_ms;
    if (!t || !timeoutMs || isTerminal(t.snapshot.state)) return;
    const grace = this.#opts.timeoutGraceMs ?? 10_000;
    const taskId = t.snapshot.task_id;
    const message = `no final event from worker ${t.snapshot.agent_id} within timeout_ms (${timeoutMs} ms) plus ${grace / 1000} s grace`;
    clearTimeout(this.#timers.get(taskId));
    const timer = setTimeout(
      () => {
        this.#timers.delete(taskId);
        void this.apply(taskId, { type: 'timeout', message });
      },
      Math.max(0, t.snapshot.created_at + timeoutMs + grace - Date.now()),
    );
    timer.unref();
    this.#timers.set(taskId, timer);
  }

  // ── sending and waiting ────────────────────────────────────────────────────────────────────────────────────────

  /**
   * Resolves with the first stored event's snapshot that `match` accepts (any, without `match`), with
   * `gone` when the relay reports `peer` not connected, or with undefined after `ms`, on close or abort.
   */
  next(
    ms: number,
    opts: { signal?: AbortSignal; match?: (s: TaskSnapshot) => boolean; peer?: string },
  ): Promise<TaskSnapshot | 'gone' | undefined> {
    return new Promise((resolve) => {
      const onTask = (s: TaskSnapshot) => {
        if (!opts.match || opts.match(s)) done(s);
      };
      const onGone = (peer: string) => {
        if (peer === opts.peer) done('gone');
      };
      const onEnd = () => done(undefined);
      const done = (r: TaskSnapshot | 'gone' | undefined) => {
        clearTimeout(timer);
        this.off('task', onTask);
        this.off('peerGone', onGone);
        this.off('closed', onEnd);
        opts.signal?.removeEventListener('abort', onEnd);
        resolve(r);
      };
      const timer = setTimeout(onEnd, ms);
      this.on('task', onTask);
      this.on('peerGone', onGone);
      this.on('closed', onEnd);
      opts.signal?.addEventListener('abort', onEnd);
    });
  }

  /**
   * Sends an answer (Respond naming its question, then its files). Resolves true once it is on its way,
   * false when it could not be sent now (it stays queued and goes with the next recover). Waits at most a
   * second: a worker that is reconnecting must not hold the tool call.
   */
  async sendAnswer(
    peer: string,
    taskId: string,
    questionSeq: number,
    answer: QueuedAnswer,
    prepared?: Awaited<ReturnType<typeof readAnswerFiles>>,
  ): Promise<boolean> {
    let files = prepared ?? { files: [], infos: [] as FileInfos };
    if (!prepared) {
      files = await rereadAnswerFiles(answer).catch((err: Error) => {
        this.#log.warn('the files of a queued answer cannot be read any more; sending it without them', {
          task: taskId,
          error: err.message,
        });
        return { files: [], infos: [] };
      });
    }
    const sending = this.send(peer, taskId, respondMessage(taskId, questionSeq, answer, files.infos)).then(
      () => {
        // A resend after a reconnect leaves a transfer still running to resume on its own.
        if (files.files.length > 0 && (prepared || !this.#files.sending(taskId))) {
          this.#files.send(peer, taskId, files.files, 'answer files');
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

  /** One send; a synchronous throw (closed agent, full queue) becomes a rejection. */
  async send(peer: string, channel: string, msg: A2aBody): Promise<void> {
    return this.#a2a.send(peer, channel, msg);
  }

  /** Sends without waiting; a failure is logged (the next reconnect resumes). */
  #trySend(peer: string, channel: string, msg: A2aBody): void {
    this.send(peer, channel, msg).catch((err: Error) => {
      this.#log.debug('A2A send failed', { peer, channel, kind: msg.case, error: err.message });
    });
  }
}
