/**
 * @module `nfltr worker` composed: check the executor, connect to the relay with user and automatic
 * labels, answer probes live, accept at most `maxTasks` tasks (refusing the rest with a reason), run
 * each through its own executor session, answer Resume from the task logs, and drain on shutdown.
 *
 * Durability (docs/durability.md): every task event is flushed to the task's `events.jsonl` before it
 * is sent, and the log is kept until the planner acknowledges the final event. A Resume replays the
 * events after a seq, in order, then a ReplayComplete. After a restart, tasks that were running are
 * closed as failed (`worker_restarted`; their executors died with the old worker, see reaper.ts), and
 * every planner still owed events is asked to resync, so it resumes them.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { create } from '@bufbuild/protobuf';
import { type A2aBody, A2aEndpoint, type A2aFailure, type A2aInbound } from '../agent/a2a.js';
import { type ChunkRef, sanitizeArtifactName } from '../agent/artifacts/index.js';
import { AgentClient, type AgentOptions } from '../agent/client.js';
import { exposeHttp, type HttpRoute, HttpService } from '../agent/http-tunnel.js';
import { advertisedHosts } from '../agent/p2p/index.js';
import type { PeerPins } from '../agent/peer-keys.js';
import {
  A2A_PROTOCOL,
  PROBE_CHANNEL,
  type Probe,
  ProbeResultSchema,
  type RefusalReason,
  ReplayCompleteSchema,
  type Resume,
  type TaskEvent,
  TaskRefusedSchema,
  type TaskStart,
  taskIdProblem,
} from '../protocol/a2a.js';
import type { X25519KeyPair } from '../protocol/e2ee-noise.js';
import type { Logger } from '../util/log.js';
import { trace } from '../util/trace.js';
import { WorkerConfigError } from './errors.js';
import {
  checkExecutor,
  checkTaskTool,
  claudeMcpCommand,
  type ExecutorCheck,
  type ExecutorCommand,
  ExecutorSession,
  type ExecutorStartOptions,
  type ExecutorUser,
  executorEnvironment,
  parseExecutorCommand,
  probeReadiness,
  type Readiness,
  type SessionPolicy,
  type ToolChoice,
} from './executor.js';
import { checkUserLabels, LabelKeeper } from './labels.js';
import { ExecutorReaper, killRecordedExecutor } from './reaper.js';
import { ReplayPacer } from './replay-pacer.js';
import { EVENTS_FILE, TaskEventLog } from './task-events.js';
import { EXECUTOR_PID_FILE, TaskRunner, type TaskRunnerDeps, type TaskSpec } from './task-runner.js';
import { WarmPool } from './warm-pool.js';

/** Above this many bytes waiting for the relay, artifact streaming pauses. */
const WRITABLE_QUEUE_BYTES = 8 * 1024 * 1024;
const TASK_FILE = 'task.json';
/** The stderr of warm executors until a task takes them (then the task's executor.log). */
const WARM_LOG = 'executor-warm.log';
/** A probe reuses the executor's last `check_ready` answer for this long. */
const READY_CACHE_MS = 5_000;
/** How long a probe waits for a fresh `check_ready` before answering with the last one. */
const READY_PROBE_WAIT_MS = 2_500;
/** Default of `--stall-after`. */
export const DEFAULT_STALL_AFTER_MS = 60_000;
/** Default of `--slot-lease`. */
export const DEFAULT_SLOT_LEASE_MS = 60_000;

/**
 * A task whose events the planner has not all acknowledged: running, finished, or recovered from an
 * earlier run. Replays of one task go out one after another (`chain`).
 */
interface OwedTask {
  id: string;
  /** The planner that started it: the only peer that may resume, acknowledge or cancel it. */
  owner: string;
  dir: string;
  log: TaskEventLog;
  chain: Promise<void>;
  /** Spaces replays the planner keeps asking for without acknowledging anything. */
  pacer: ReplayPacer;
  /** A replay waiting for its turn; later requests merge into it. */
  queued?: { afterSeq: bigint; why: string };
}

export interface WorkerOptions {
  agent: Omit<AgentOptions, 'logger' | 'labels' | 'sessionToken' | 'kind'>;
  labels: Record<string, string>;
  maxTasks: number;
  mcpCommand: string;
  mcpTool?: string;
  /** Task folders, the session token and the executor check log. */
  stateDir: string;
  heartbeatIntervalMs: number;
  e2ee: boolean;
  pairingKey?: Uint8Array;
  /** The worker's long-term key and its pins of planners (state dir `static_key`, `known_planners`). */
  staticKey?: X25519KeyPair;
  pins?: PeerPins;
  maxArtifactBytes: number;
  /** `--p2p-threshold`: task files above it try a direct link (needs `staticKey`); Infinity or unset: off. */
  p2pThreshold?: number;
  /** `--expose`: local HTTP services offered to `/browse` and `proxy_request` (labels carry their routes). */
  expose?: HttpRoute[];
  /** For tests (`NFLTR_TEST_CORRUPT_CHUNK`): the artifact sender corrupts this chunk once. */
  testCorruptChunk?: ChunkRef;
  shutdownGraceMs: number;
  /** From stdin closed to SIGTERM when an executor must go. */
  killGraceMs?: number;
  /** Where executors run; the worker's own cwd by default (executors work on the local repo). */
  cwd?: string;
  /** How to run `nfltr` when `--mcp-command` starts with it: this same program. */
  self?: { execPath: string; script: string };
  /** Environment variables passed through to executors (`--executor-env`), e.g. API keys of the AI CLI. */
  executorEnv?: string[];
  /** A task with no event for this long gets a `running` event saying so (`--stall-after`); 0: never. */
  stallAfterMs?: number;
  /** Delivering a finished task's files may go this long unacknowledged before its slot is reclaimed. */
  slotLeaseMs?: number;
  /** Executors run as this OS user (`--executor-user`; the worker runs as root). */
  executorUser?: ExecutorUser;
  /** `--warm-executors`: sessions kept started ahead of tasks (see warm-pool.ts); 0 or absent: none. */
  warmExecutors?: number;
  logger: Logger;
}

/** How the worker stopped: 0 after a drain, 1 when the relay refused it for good. */
export interface WorkerExit {
  code: number;
  reason: string;
}

export class Worker {
  readonly agent: AgentClient;
  readonly endpoint: A2aEndpoint;
  readonly tool: ToolChoice;
  readonly stopped: Promise<WorkerExit>;
  readonly #opts: WorkerOptions;
  readonly #log: Logger;
  readonly #command: ExecutorCommand;
  readonly #env: Record<string, string>;
  readonly #labels: LabelKeeper;
  readonly #tasksDir: string;
  /** Every task id ever accepted here (this run and earlier ones): ids are never reused. */
  readonly #known: Set<string>;
  readonly #active = new Map<string, TaskRunner>();
  /** Tasks with events not yet acknowledged by their planner, by id. */
  readonly #owed: Map<string, OwedTask>;
  /** Planners heard from since start (or since their last resync): offered their unacknowledged ends. */
  readonly #greeted = new Set<string>();
  readonly #reaper: ExecutorReaper;
  #warm: WarmPool | undefined;
  #healthy = true;
  #executorError = '';
  /** The executor's last `check_ready` answer; undefined when it has no such tool. */
  #readiness: { value: Readiness; at: number } | undefined;
  #readinessRefresh: Promise<void> | undefined;
  #rechecking = false;
  #draining = false;
  #expireGrace: (() => void) | undefined;
  #heartbeat: NodeJS.Timeout | undefined;
  #resolveStopped!: (e: WorkerExit) => void;
  #shutdown: Promise<void> | undefined;

  private constructor(
    opts: WorkerOptions,
    parts: {
      command: ExecutorCommand;
      env: Record<string, string>;
      tool: ToolChoice;
      readiness?: Readiness;
      known: Set<string>;
      owed: Map<string, OwedTask>;
      reaper: ExecutorReaper;
    },
  ) {
    this.#opts = opts;
    this.#log = opts.logger;
    this.#command = parts.command;
    this.#env = parts.env;
    this.tool = parts.tool;
    this.#known = parts.known;
    this.#owed = parts.owed;
    this.#reaper = parts.reaper;
    if (parts.readiness) this.#readiness = { value: parts.readiness, at: Date.now() };
    this.#tasksDir = join(opts.stateDir, 'tasks');
    this.#labels = new LabelKeeper({
      user: opts.labels,
      tool: parts.tool.name,
      maxTasks: opts.maxTasks,
      p2p: this.#direct(opts) !== undefined,
    });
    this.#labels.refresh(0);
    this.stopped = new Promise((r) => {
      this.#resolveStopped = r;
    });
    this.agent = new AgentClient({
      ...opts.agent,
      kind: 'worker',
      labels: this.#labels.labels,
      sessionToken: sessionToken(opts.stateDir),
      logger: opts.logger.child('agent'),
    });
    this.endpoint = new A2aEndpoint({
      agent: this.agent,
      role: 'responder',
      e2ee: opts.e2ee,
      pairingKey: opts.pairingKey,
      staticKey: opts.staticKey,
      pins: opts.pins,
      logger: opts.logger.child('a2a'),
    });
    this.endpoint.on('message', (m) => {
      if (!this.#greeted.has(m.peer)) {
        this.#greeted.add(m.peer);
        this.#offerFinished(m.peer);
      }
      // One message the worker mishandles must cost that message, not every running task.
      try {
        this.#onMessage(m);
      } catch (err) {
        this.#log.error('failed to handle a message', {
          peer: m.peer,
          channel: m.channel,
          kind: m.msg.case,
          error: err,
        });
      }
    });
    this.endpoint.on('failure', (f) => this.#onFailure(f));
    if (opts.expose)
      exposeHttp(this.agent, new HttpService(opts.expose, opts.logger.child('http')), this.endpoint);
    // File transfers in flight resume from their acknowledged offsets on the new session.
    this.endpoint.on('resync', ({ peer }) => {
      for (const r of this.#active.values()) if (r.spec.peer === peer) r.resync();
      this.#greeted.add(peer);
      this.#offerFinished(peer);
    });
    this.agent.on('status', (s) => {
      if (s.type === 'fatal') this.#resolveStopped({ code: 1, reason: s.message });
    });
  }

  /**
   * Checks the configuration and the executor (throws {@link WorkerConfigError} when the worker cannot
   * run), then connects and advertises. Resolves once connected.
   */
  static async start(opts: WorkerOptions): Promise<Worker> {
    checkUserLabels(opts.labels);
    let command = parseExecutorCommand(opts.mcpCommand, opts.self);
    const env = executorEnvironment({}, process.env, opts.executorEnv);
    mkdirSync(join(opts.stateDir, 'tasks'), { recursive: true });
    const reaper = new ExecutorReaper(opts.logger.child('reaper'));
    await reaper.sweep();
    const checkWith = (cmd: ExecutorCommand) =>
      checkExecutor({
        command: cmd,
        env,
        cwd: opts.cwd,
        tool: opts.mcpTool,
        logFile: join(opts.stateDir, 'executor-check.log'),
        logger: opts.logger.child('executor'),
        reaper,
        ...(opts.executorUser ? { user: opts.executorUser } : {}),
      });
    let check: ExecutorCheck = await checkWith(command);
    if (!check.choice) {
      command = insteadOfClaudeServe(command, check, opts);
      check = await checkWith(command);
    }
    const choice = check.choice!;
    opts.logger.info('executor checked', {
      tool: choice.name,
      mode: choice.mode,
      ...(choice.task ? { task_based: true } : {}),
      tools: check.tools.map((t) => t.name),
    });
    const r = check.readiness;
    if (r && !r.ready) {
      opts.logger.warn(
        `the executor is not ready for AI work: ${r.reason ?? 'no reason given'}${r.fix ? `; fix: ${r.fix}` : ''}; tasks will fail until it is (probe_worker reports executor_ready: false)`,
      );
    }
    const { known, owed } = recoverTasks(join(opts.stateDir, 'tasks'), opts.logger);
    const worker = new Worker(opts, {
      command,
      env,
      tool: choice,
      ...(r ? { readiness: r } : {}),
      known,
      owed,
      reaper,
    });
    worker.agent.start();
    try {
      await worker.agent.waitConnected();
    } catch (err) {
      await worker.agent.close();
      reaper.close();
      throw err;
    }
    // Planners still owed events (results of tasks that ended while they were away, or the
    // worker_restarted failures) are asked to resync; they resume, and get them.
    for (const peer of new Set([...owed.values()].map((t) => t.owner))) {
      try {
        worker.endpoint.requestResync(peer);
      } catch {}
    }
    worker.#warm = worker.#warmPool(check.policy);
    worker.#heartbeat = setInterval(() => worker.#tick(), opts.heartbeatIntervalMs);
    worker.#heartbeat.unref();
    return worker;
  }

  get agentId(): string {
    return this.agent.agentId;
  }

  get freeSlots(): number {
    return Math.max(0, this.#opts.maxTasks - this.#active.size);
  }

  /**
   * Refuses new tasks, waits up to the shutdown grace for running ones, fails the rest with
   * `worker_shutdown`, then closes the connection. A second call ends the grace at once.
   */
  shutdown(why: string, graceMs = this.#opts.shutdownGraceMs): Promise<void> {
    if (this.#shutdown) {
      this.#expireGrace?.();
      return this.#shutdown;
    }
    this.#shutdown = this.#drain(why, graceMs);
    return this.#shutdown;
  }

  async #drain(why: string, grace: number): Promise<void> {
    this.#draining = true;
    this.#log.info('draining: refusing new tasks', { why, running: this.#active.size, grace_ms: grace });
    const allDone = () => Promise.all([...this.#active.values()].map((r) => r.start()));
    await new Promise<void>((resolve) => {
      const t = setTimeout(resolve, grace);
      this.#expireGrace = () => {
        clearTimeout(t);
        resolve();
      };
      allDone().then(() => {
        clearTimeout(t);
        resolve();
      });
    });
    const message = `the worker is shutting down (${why}) and the task did not finish within the shutdown grace of ${grace} ms`;
    for (const r of this.#active.values()) r.halt({ kind: 'worker_shutdown', message });
    await allDone();
    await this.#warm?.close();
    clearInterval(this.#heartbeat);
    // Let the last events leave before the stream closes (close drops whatever is still queued).
    const deadline = Date.now() + 3_000;
    while (this.agent.queuedBytes > 0 && this.agent.connected && Date.now() < deadline) await sleep(10);
    await this.agent.close();
    this.#reaper.close();
    this.#resolveStopped({ code: 0, reason: why });
  }

  #tick(): void {
    if (this.#labels.refresh(this.#active.size)) this.agent.setLabels(this.#labels.labels);
    if (!this.#healthy) void this.#recheck();
  }

  /** After a failed spawn the executor may come back (a package reinstalled, a disk freed). */
  async #recheck(): Promise<void> {
    if (this.#rechecking || this.#draining) return;
    this.#rechecking = true;
    try {
      const check = await checkExecutor({
        ...this.#sessionOptions('executor-check.log'),
        tool: this.tool.name,
      });
      if (check.readiness) this.#readiness = { value: check.readiness, at: Date.now() };
      this.#setHealth(true);
    } catch (err) {
      this.#setHealth(false, (err as Error).message);
    } finally {
      this.#rechecking = false;
    }
  }

  #setHealth(ok: boolean, error = ''): void {
    if (ok !== this.#healthy)
      this.#log[ok ? 'info' : 'warn']('executor health changed', { healthy: ok, error });
    this.#healthy = ok;
    this.#executorError = ok ? '' : error;
  }

  #send(peer: string, channel: string, msg: A2aBody): Promise<void> {
    try {
      return this.endpoint.send(peer, channel, msg);
    } catch (err) {
      return Promise.reject(err);
    }
  }

  #reply(peer: string, channel: string, msg: A2aBody): void {
    this.#send(peer, channel, msg).catch((err: Error) =>
      this.#log.warn('could not answer the planner', { peer, channel, error: err.message }),
    );
  }

  #onMessage({ peer, channel, msg, sealed }: A2aInbound): void {
    switch (msg.case) {
      case 'probe':
        return this.#onProbe(peer, channel, msg.value);
      case 'taskStart':
        return this.#onTaskStart(peer, channel, msg.value);
      case 'resume':
        return this.#onResume(peer, channel, msg.value);
      case 'artifactChunk':
        return this.#owned(peer, channel)?.acceptChunk(msg.value, sealed);
      case 'artifactAck':
        return this.#owned(peer, channel)?.acceptArtifactAck(msg.value);
      case 'p2pOffer':
        return this.#owned(peer, channel)?.acceptP2pOffer(msg.value);
      case 'p2pAnswer':
        return this.#owned(peer, channel)?.acceptP2pAnswer(msg.value);
      case 'respond':
        return this.#owned(peer, channel)?.respond(msg.value);
      case 'cancel':
        return this.#onCancel(peer, channel, msg.value.reason);
      case 'ack':
        return this.#onAck(peer, channel, msg.value.seq);
      default:
        this.#log.debug('ignoring a message a worker does not take', { peer, kind: msg.case });
    }
  }

  /** The task on `channel` if `peer` started it; anyone else's messages for it are dropped. */
  /** What a task needs for direct links with its planner, or undefined when they are off. */
  #direct(opts: WorkerOptions, peer = ''): TaskRunnerDeps['direct'] {
    const key = opts.staticKey;
    if (!key || opts.p2pThreshold === undefined || !Number.isFinite(opts.p2pThreshold)) return undefined;
    return {
      threshold: opts.p2pThreshold,
      identity: { localId: opts.agent.agentId, remoteId: peer, staticKey: key },
      addresses: () => advertisedHosts(this.agent.observedAddr),
    };
  }

  #owned(peer: string, channel: string): TaskRunner | undefined {
    const r = this.#active.get(channel);
    if (!r) {
      this.#log.debug('message for a task that is not running here', { peer, task: channel });
      return undefined;
    }
    if (r.spec.peer !== peer) {
      this.#log.warn('message for a task another planner started; dropped', { peer, task: channel });
      return undefined;
    }
    return r;
  }

  /** The executor's readiness for a probe: the cached answer, refreshed when older than a few seconds. */
  async #currentReadiness(): Promise<Readiness | undefined> {
    const r = this.#readiness;
    if (!r || !this.#healthy || Date.now() - r.at < READY_CACHE_MS) return r?.value;
    this.#readinessRefresh ??= probeReadiness(this.#sessionOptions('executor-check.log'))
      .then((value) => {
        if (value.ready !== this.#readiness?.value.ready) {
          this.#log[value.ready ? 'info' : 'warn']('executor readiness changed', { ...value });
        }
        this.#readiness = { value, at: Date.now() };
      })
      .catch((err: Error) => this.#log.debug('check_ready refresh failed', { error: err.message }))
      .finally(() => {
        this.#readinessRefresh = undefined;
      });
    await Promise.race([this.#readinessRefresh, sleep(READY_PROBE_WAIT_MS)]);
    return this.#readiness?.value;
  }

  /** `--warm-executors`, unless the executor declared it must start with its task's environment. */
  #warmPool(policy: SessionPolicy): WarmPool | undefined {
    const size = this.#opts.warmExecutors ?? 0;
    if (size <= 0) return undefined;
    if (policy === 'fresh') {
      this.#log.warn(
        'the executor declares that each task needs a fresh process (nfltr/session fresh), so --warm-executors is not used',
      );
      return undefined;
    }
    const options = { ...this.#sessionOptions(WARM_LOG), logger: this.#log.child('executor') };
    return new WarmPool({
      size,
      idle: { logFile: options.logFile },
      logger: this.#log.child('warm'),
      start: async () => {
        const session = await ExecutorSession.start(options);
        try {
          await checkTaskTool(session, this.tool);
        } catch (err) {
          await session.stop(0);
          throw err;
        }
        return session;
      },
    });
  }

  #sessionOptions(logFile: string): ExecutorStartOptions {
    return {
      command: this.#command,
      env: this.#env,
      cwd: this.#opts.cwd,
      logFile: join(this.#opts.stateDir, logFile),
      reaper: this.#reaper,
      ...(this.#opts.executorUser ? { user: this.#opts.executorUser } : {}),
    };
  }

  #onProbe(peer: string, channel: string, probe: Probe): void {
    void this.#currentReadiness().then((readiness) => this.#answerProbe(peer, channel, probe, readiness));
  }

  #answerProbe(peer: string, channel: string, probe: Probe, readiness: Readiness | undefined): void {
    const free = this.freeSlots;
    this.#reply(peer, channel === PROBE_CHANNEL ? channel : PROBE_CHANNEL, {
      case: 'probeResult',
      value: create(ProbeResultSchema, {
        probeId: probe.probeId,
        available: free > 0 && this.#healthy && !this.#draining && readiness?.ready !== false,
        freeSlots: free,
        maxTasks: this.#opts.maxTasks,
        protocol: A2A_PROTOCOL,
        tool: this.tool.name,
        labels: this.agent.labels,
        executorHealthy: this.#healthy,
        executorError: this.#executorError,
        draining: this.#draining,
        // Without check_ready the executor cannot say; being able to start it is all we know.
        executorReady: readiness?.ready ?? this.#healthy,
        executorReason: readiness?.ready === false ? (readiness.reason ?? '') : '',
        executorFix: readiness?.ready === false ? (readiness.fix ?? '') : '',
      }),
    });
  }

  #refuse(peer: string, channel: string, taskId: string, reason: RefusalReason, message: string): void {
    this.#log.info('task refused', { peer, task: taskId, reason, detail: message });
    this.#reply(peer, channel, {
      case: 'taskRefused',
      value: create(TaskRefusedSchema, { taskId, reason, message }),
    });
  }

  #onTaskStart(peer: string, channel: string, start: TaskStart): void {
    const id = start.taskId;
    trace('worker.taskStart', channel);
    const refuse = (reason: RefusalReason, message: string) =>
      this.#refuse(peer, channel, id || channel, reason, message);
    if (!id) return refuse('invalid_task', 'task_id is empty');
    if (id !== channel) return refuse('invalid_task', `task_id ${id} does not match its channel ${channel}`);
    const idProblem = taskIdProblem(id);
    if (idProblem) return refuse('invalid_task', idProblem);
    if (this.#draining)
      return refuse('draining', `${this.agentId} is shutting down; send the task to another worker`);
    if (this.#known.has(id)) {
      return refuse(
        'duplicate_task_id',
        `task ${id} was already accepted by ${this.agentId}; task ids are never reused`,
      );
    }
    const spec = parseTaskStart(peer, start);
    if (typeof spec === 'string') return refuse('invalid_task', spec);
    if (!this.#healthy) {
      return refuse(
        'executor_unavailable',
        `the executor of ${this.agentId} cannot start: ${this.#executorError}`,
      );
    }
    if (this.#active.size >= this.#opts.maxTasks) {
      return refuse(
        'no_free_slots',
        `0 of ${this.#opts.maxTasks} slots free on ${this.agentId}; retry later or pick another worker`,
      );
    }

    const dir = join(this.#tasksDir, id);
    mkdirSync(dir, { recursive: true });
    writeTaskFile(dir, { task_id: id, peer, accepted_at: new Date().toISOString() });
    this.#known.add(id);
    const runner = new TaskRunner(spec, {
      dir,
      choice: this.tool,
      command: this.#command,
      env: this.#env,
      cwd: this.#opts.cwd,
      send: (msg) => this.#send(peer, id, msg),
      whenWritable: (signal) => this.agent.whenWritable(WRITABLE_QUEUE_BYTES, signal),
      maxArtifactBytes: this.#opts.maxArtifactBytes,
      testCorruptChunk: this.#opts.testCorruptChunk,
      sealed: this.endpoint.encrypted,
      direct: this.#direct(this.#opts, peer),
      killGraceMs: this.#opts.killGraceMs ?? 2_000,
      stallAfterMs: this.#opts.stallAfterMs ?? DEFAULT_STALL_AFTER_MS,
      slotLeaseMs: this.#opts.slotLeaseMs ?? DEFAULT_SLOT_LEASE_MS,
      logger: this.#log.child(`task.${id}`),
      onSpawn: (ok, error) => this.#setHealth(ok, error),
      onTerminal: () => {
        this.#active.delete(id);
      },
      reaper: this.#reaper,
      ...(this.#opts.executorUser ? { user: this.#opts.executorUser } : {}),
      ...(this.#warm ? { warm: this.#warm } : {}),
    });
    this.#active.set(id, runner);
    this.#owed.set(id, {
      id,
      owner: peer,
      dir,
      log: runner.events,
      chain: Promise.resolve(),
      pacer: new ReplayPacer(),
    });
    this.#log.info('task accepted', { peer, task: id, slots_free: this.freeSlots });
    runner.start().then(() => {
      // A channel that carried a forged or replayed frame is not used again in this session.
      if (runner.haltReason?.kind === 'e2ee_violation') this.endpoint.closeChannel(peer, id);
      // Unacknowledged events of a finished task are read back from its log when asked for.
      runner.events.unload();
      if (runner.events.delivered) this.#delivered(id);
    });
  }

  /** The task `peer` may resume, acknowledge or cancel; undefined (and logged) for anyone else's. */
  #owedTo(peer: string, id: string): OwedTask | undefined {
    const t = this.#owed.get(id);
    if (t && t.owner !== peer) {
      this.#log.warn('message for a task another planner started; dropped', { peer, task: id });
      return undefined;
    }
    return t;
  }

  #onResume(peer: string, channel: string, resume: Resume): void {
    const id = channel;
    if (!this.#owed.has(id)) {
      const why = this.#known.has(id)
        ? `${this.agentId} already delivered every event of task ${id} and dropped its log`
        : `${this.agentId} has no task ${id}`;
      return this.#refuse(peer, channel, id, 'unknown_task', why);
    }
    const t = this.#owedTo(peer, id);
    if (t) this.#replay(t, resume.afterSeq, 'resume');
  }

  /**
   * Sends the task's events after `afterSeq` in order, then a ReplayComplete. Replays of one task never
   * interleave: a second waits for the first. Requests that come faster than the pacer allows (the
   * planner acknowledges nothing in between) merge into one waiting replay, sent after a growing pause.
   */
  #replay(t: OwedTask, afterSeq: bigint, why: string): void {
    if (t.queued) {
      if (afterSeq < t.queued.afterSeq) t.queued.afterSeq = afterSeq;
      return;
    }
    t.queued = { afterSeq, why };
    const waitMs = t.pacer.schedule(Date.now(), t.log.acked);
    const go = () => {
      const q = t.queued;
      t.queued = undefined;
      if (q && this.#owed.get(t.id) === t) t.chain = t.chain.then(() => this.#sendReplay(t, q, waitMs));
    };
    if (waitMs === 0) return go();
    setTimeout(go, waitMs).unref();
  }

  async #sendReplay(t: OwedTask, q: { afterSeq: bigint; why: string }, deferredMs: number): Promise<void> {
    const events: TaskEvent[] = t.log.after(q.afterSeq);
    this.#log.info('replaying task events', {
      peer: t.owner,
      task: t.id,
      why: q.why,
      after_seq: String(q.afterSeq),
      count: events.length,
      ...(deferredMs > 0 ? { deferred_ms: deferredMs } : {}),
    });
    try {
      for (const e of events) await this.#send(t.owner, t.id, { case: 'taskEvent', value: e });
      await this.#send(t.owner, t.id, {
        case: 'replayComplete',
        value: create(ReplayCompleteSchema, { taskId: t.id, lastSeq: t.log.lastSeq }),
      });
    } catch (err) {
      // The link went away again; the planner resumes once more on the next resync.
      this.#log.debug('replay interrupted', { task: t.id, error: (err as Error).message });
    }
  }

  /**
   * A new session with a planner (it or we redialled or restarted): it resumes the tasks it thinks
   * unfinished, but not those it already holds as ended, so their final event is offered again. It
   * acknowledges it (a duplicate), which lets the log go; a planner missing earlier events resumes.
   */
  #offerFinished(peer: string): void {
    for (const t of this.#owed.values()) {
      if (t.owner === peer && t.log.finished && !t.log.delivered) {
        this.#replay(t, t.log.lastSeq - 1n, 'final event not acknowledged');
      }
    }
  }

  #onAck(peer: string, channel: string, seq: bigint): void {
    const t = this.#owedTo(peer, channel);
    if (!t) return;
    t.log.ack(seq);
    if (t.log.delivered && !this.#active.has(t.id)) this.#delivered(t.id);
  }

  /**
   * The planner has every event of a finished task: its log goes, the task folder stays (its id is
   * never reused; input/ and output/ remain for the user), marked delivered.
   */
  #delivered(id: string): void {
    const t = this.#owed.get(id);
    if (!t) return;
    this.#owed.delete(id);
    writeTaskFile(t.dir, {
      task_id: id,
      peer: t.owner,
      final_state: t.log.lastState,
      final_seq: Number(t.log.lastSeq),
      delivered_at: new Date().toISOString(),
    });
    void t.log.drop();
    this.#log.debug('task delivered; event log dropped', { task: id });
  }

  #onCancel(peer: string, channel: string, reason: string): void {
    const r = this.#owned(peer, channel);
    if (r) return r.halt({ kind: 'cancelled', message: reason || 'cancelled by the planner' });
    // Not running (any more): a cancel resent after a reconnect, or for a task that ended meanwhile.
    // The final event answers it; a task unknown here is refused.
    const t = this.#owed.get(channel);
    if (t && t.owner === peer && t.log.finished) return this.#replay(t, t.log.lastSeq - 1n, 'cancel');
    if (!t) {
      const why = this.#known.has(channel) ? 'already ended and was delivered' : 'is not known here';
      this.#refuse(peer, channel, channel, 'unknown_task', `task ${channel} ${why}`);
    }
  }

  #onFailure(f: A2aFailure): void {
    if (f.code !== 'e2ee_violation' || !f.channel) return;
    const r = this.#active.get(f.channel);
    if (r && r.spec.peer === f.peer) {
      r.halt({ kind: 'e2ee_violation', message: `task channel torn down: ${f.message}` });
    } else if (f.channel !== PROBE_CHANNEL) {
      this.endpoint.closeChannel(f.peer, f.channel);
    }
  }
}

/**
 * `claude mcp serve` offers Claude's own tools (Bash, Read, Edit…), none of which runs a whole AI task:
 * tasks run through `nfltr claude-mcp` with the same claude instead, and the log says so once.
 */
function insteadOfClaudeServe(command: ExecutorCommand, check: ExecutorCheck, opts: WorkerOptions) {
  if (!opts.self) {
    throw new WorkerConfigError(
      '--mcp-command starts Claude Code\'s own MCP server, which has no tool that runs a whole task; use --mcp-command "nfltr claude-mcp --cwd DIR"',
    );
  }
  const instead = claudeMcpCommand(command, opts.self, opts.cwd ?? process.cwd());
  const server = [check.server?.name ?? 'claude', check.server?.version].filter(Boolean).join(' ');
  opts.logger.info(
    `--mcp-command starts Claude Code's own MCP server (${server}), whose ${check.tools.length} tools (Bash, Read, Edit…) include none that runs a whole task; running each task with Claude Code headless through nfltr claude-mcp instead (progress, permission questions to the planner, cancel)`,
    { executor: [instead.command, ...instead.args].join(' ') },
  );
  return instead;
}

/** Validates a TaskStart's fields into a spec, or returns what is wrong. */
export function parseTaskStart(peer: string, start: TaskStart): TaskSpec | string {
  if (!start.objective.trim()) return 'objective is empty';
  const object = (json: string, field: string): unknown | string => {
    if (json.trim() === '') return undefined;
    let v: unknown;
    try {
      v = JSON.parse(json);
    } catch (err) {
      return new Error(`${field} is not valid JSON: ${(err as Error).message}`);
    }
    if (v === null || typeof v !== 'object' || Array.isArray(v))
      return new Error(`${field} is not a JSON object`);
    return v;
  };
  const context = object(start.contextJson, 'context_json');
  if (context instanceof Error) return context.message;
  const constraints = object(start.constraintsJson, 'constraints_json');
  if (constraints instanceof Error) return constraints.message;
  const names = new Set<string>();
  for (const f of start.inputFiles) {
    let name: string;
    try {
      name = sanitizeArtifactName(f.name);
    } catch (err) {
      return `input_files: ${(err as Error).message}`;
    }
    if (names.has(name)) return `input_files: ${JSON.stringify(name)} is listed twice`;
    names.add(name);
  }
  return {
    taskId: start.taskId,
    peer,
    objective: start.objective,
    context,
    constraints,
    timeoutMs: Number(start.timeoutMs),
    inputFiles: start.inputFiles,
  };
}

/**
 * Reads the tasks of earlier runs: every id is known (never reused); tasks whose log is still on disk
 * are owed to their planner. A task that was running when the worker stopped without draining (killed,
 * crashed) gets its final event, `failed` with reason `worker_restarted`; its executor, should it have
 * survived the watchdog, is killed.
 */
function recoverTasks(tasksDir: string, log: Logger): { known: Set<string>; owed: Map<string, OwedTask> } {
  const known = new Set<string>();
  const owed = new Map<string, OwedTask>();
  for (const id of readdirSync(tasksDir)) {
    known.add(id);
    const dir = join(tasksDir, id);
    const killed = killRecordedExecutor(join(dir, EXECUTOR_PID_FILE));
    if (killed) log.warn('killed the executor of an interrupted task', { task: id, pid: killed });
    const info = readTaskFile(dir);
    const file = join(dir, EVENTS_FILE);
    if (!info || info.delivered_at || taskIdProblem(id)) continue;
    if (!existsSync(file) && !info.peer) continue;
    const events = TaskEventLog.load(id, file);
    // `accepted` is written unflushed (TaskEventLog.append): a power cut may have taken it, yet the
    // planner may have it as seq 1, so it is restored before anything follows it.
    if (events.lastSeq === 0n) events.append({ state: 'accepted' });
    if (!events.finished) {
      events.append({
        state: 'failed',
        reason: 'worker_restarted',
        message:
          'the worker was restarted while this task ran (it stopped without draining: killed or crashed); ' +
          'its executor was stopped with it',
      });
      log.info('closed the log of a task interrupted by a restart', { task: id });
    }
    events.unload();
    if (info.peer) {
      owed.set(id, {
        id,
        owner: info.peer,
        dir,
        log: events,
        chain: Promise.resolve(),
        pacer: new ReplayPacer(),
      });
    }
  }
  return { known, owed };
}

interface TaskFile {
  task_id?: string;
  peer?: string;
  accepted_at?: string;
  final_state?: string;
  final_seq?: number;
  delivered_at?: string;
}

function readTaskFile(dir: string): TaskFile | undefined {
  try {
    return JSON.parse(readFileSync(join(dir, TASK_FILE), 'utf8')) as TaskFile;
  } catch {
    return undefined;
  }
}

/** Written whole and renamed into place: a crash leaves the old file or the new one, never half. */
function writeTaskFile(dir: string, info: TaskFile): void {
  const tmp = join(dir, `.${TASK_FILE}.tmp`);
  writeFileSync(tmp, `${JSON.stringify(info)}\n`);
  renameSync(tmp, join(dir, TASK_FILE));
}

/** The token that lets a restarted worker take over its own agent id; kept in the state dir. */
function sessionToken(stateDir: string): string {
  const file = join(stateDir, 'session-token');
  try {
    const t = readFileSync(file, 'utf8').trim();
    if (t) return t;
  } catch {}
  const token = randomBytes(16).toString('base64url');
  writeFileSync(file, `${token}\n`, { mode: 0o600 });
  return token;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * Runs a worker until SIGTERM/SIGINT (drain, then exit code 0) or a final refusal by the relay (1).
 * Prints `nfltr worker ready agent_id=… tool=…` to stderr once connected. Configuration problems throw
 * {@link WorkerConfigError}.
 */
export async function runWorker(opts: WorkerOptions): Promise<number> {
  const worker = await Worker.start(opts);
  process.stderr.write(
    `nfltr worker ready agent_id=${worker.agentId} tool=${worker.tool.name} max_tasks=${opts.maxTasks}\n`,
  );
  const onSignal = (signal: NodeJS.Signals) => {
    opts.logger.info('signal received', { signal });
    void worker.shutdown(signal);
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  const exit = await worker.stopped;
  process.off('SIGTERM', onSignal);
  process.off('SIGINT', onSignal);
  if (exit.code !== 0) {
    opts.logger.error('worker stopped', { reason: exit.reason });
    // No grace: without the relay no task can report anything.
    await worker.shutdown('relay refused the worker', 0);
  }
  return exit.code;
}
