/**
 * @module `nfltr worker` assembled: check the executor, connect to the relay with user and automatic
 * labels, and wire the parts together: the {@link MessageRouter} takes every A2A message, the
 * {@link RecoveryLedger} keeps what is owed to planners, a {@link TaskRunner} runs each task through its
 * own executor session, the {@link ExecutorHealth} says whether the executor can run, and shutdown
 * drains.
 *
 * Durability (docs/durability.md): every task event is flushed to the task's `events.jsonl` before it
 * is sent, and the log is kept until the planner acknowledges the final event. A Resume replays the
 * events after a seq, in order, then a ReplayComplete. After a restart, tasks that were running are
 * closed as failed (`worker_restarted`; their executors died with the old worker, see reaper.ts), and
 * every planner still owed events is asked to resync, so it resumes them.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { type A2aBody, A2aEndpoint } from '../agent/a2a.js';
import type { ChunkRef } from '../agent/artifacts/index.js';
import { AgentClient, type AgentOptions } from '../agent/client.js';
import { exposeHttp, type HttpRoute, HttpService } from '../agent/http-tunnel.js';
import { advertisedHosts } from '../agent/p2p/index.js';
import type { PeerPins } from '../agent/peer-keys.js';
import type { X25519KeyPair } from '../protocol/e2ee-noise.js';
import type { Logger } from '../util/log.js';
import {
  checkTaskTool,
  ExecutorSession,
  type ExecutorStartOptions,
  type ExecutorUser,
  executorEnvironment,
  parseExecutorCommand,
  type SessionPolicy,
  type ToolChoice,
} from './executor.js';
import { checkAtStart, ExecutorHealth } from './executor-health.js';
import { checkUserLabels, LabelKeeper } from './labels.js';
import { MessageRouter } from './message-router.js';
import { ExecutorReaper } from './reaper.js';
import { type Recovered, RecoveryLedger, recoverTasks } from './recovery-ledger.js';
import { TaskRunner, type TaskRunnerDeps, type TaskSpec } from './task-runner.js';
import { WarmPool } from './warm-pool.js';

/** Above this many bytes waiting for the relay, artifact streaming pauses. */
const WRITABLE_QUEUE_BYTES = 8 * 1024 * 1024;
/** The stderr of warm executors until a task takes them (then the task's executor.log). */
const WARM_LOG = 'executor-warm.log';
/** The log of the executor's checks (at start, rechecks, `check_ready`). */
const CHECK_LOG = 'executor-check.log';
/** Default of `--stall-after`. */
export const DEFAULT_STALL_AFTER_MS = 60_000;
/** Default of `--slot-lease`. */
export const DEFAULT_SLOT_LEASE_MS = 60_000;

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
  /** How executors start: command, environment, cwd, user, reaper. */
  readonly #session: ExecutorStartOptions;
  readonly #labels: LabelKeeper;
  readonly #tasksDir: string;
  readonly #active = new Map<string, TaskRunner>();
  readonly #ledger: RecoveryLedger;
  readonly #reaper: ExecutorReaper;
  readonly #health: ExecutorHealth;
  #warm: WarmPool | undefined;
  #draining = false;
  #expireGrace: (() => void) | undefined;
  #heartbeat: NodeJS.Timeout | undefined;
  #resolveStopped!: (e: WorkerExit) => void;
  #shutdown: Promise<void> | undefined;

  private constructor(
    opts: WorkerOptions,
    parts: {
      session: ExecutorStartOptions;
      health: ExecutorHealth;
      tool: ToolChoice;
      recovered: Recovered;
      reaper: ExecutorReaper;
    },
  ) {
    this.#opts = opts;
    this.#log = opts.logger;
    this.#session = parts.session;
    this.#health = parts.health;
    this.tool = parts.tool;
    this.#reaper = parts.reaper;
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
    this.#ledger = new RecoveryLedger(parts.recovered, {
      tasksDir: this.#tasksDir,
      send: (peer, channel, msg) => this.#send(peer, channel, msg),
      running: (id) => this.#active.has(id),
      logger: this.#log,
    });
    const router = new MessageRouter({
      ledger: this.#ledger,
      running: this.#active,
      status: () => ({
        agentId: this.agentId,
        tool: this.tool.name,
        labels: this.agent.labels,
        maxTasks: this.#opts.maxTasks,
        running: this.#active.size,
        draining: this.#draining,
        healthy: this.#health.healthy,
        executorError: this.#health.error,
      }),
      readiness: () => this.#health.readiness(),
      start: (spec) => this.#start(spec),
      reply: (peer, channel, msg) => this.#reply(peer, channel, msg),
      closeChannel: (peer, channel) => this.endpoint.closeChannel(peer, channel),
      logger: this.#log,
    });
    this.endpoint.on('message', (m) => router.onMessage(m));
    this.endpoint.on('failure', (f) => router.onFailure(f));
    this.endpoint.on('resync', ({ peer }) => router.onResync(peer));
    if (opts.expose)
      exposeHttp(this.agent, new HttpService(opts.expose, opts.logger.child('http')), this.endpoint);
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
    const command = parseExecutorCommand(opts.mcpCommand, opts.self);
    const env = executorEnvironment({}, process.env, opts.executorEnv);
    mkdirSync(join(opts.stateDir, 'tasks'), { recursive: true });
    const reaper = new ExecutorReaper(opts.logger.child('reaper'));
    await reaper.sweep();
    const given: ExecutorStartOptions = {
      command,
      env,
      cwd: opts.cwd,
      logFile: join(opts.stateDir, CHECK_LOG),
      reaper,
      ...(opts.executorUser ? { user: opts.executorUser } : {}),
    };
    const { check, ...chosen } = await checkAtStart(given, {
      tool: opts.mcpTool,
      self: opts.self,
      cwd: opts.cwd,
      logger: opts.logger,
    });
    const session = { ...given, command: chosen.command };
    const worker = new Worker(opts, {
      session,
      health: new ExecutorHealth(session, chosen.choice.name, opts.logger, check.readiness),
      tool: chosen.choice,
      recovered: recoverTasks(join(opts.stateDir, 'tasks'), opts.logger),
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
    for (const peer of worker.#ledger.owners()) {
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
    if (!this.#health.healthy && !this.#draining) void this.#health.recheck();
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
    const logFile = join(this.#opts.stateDir, WARM_LOG);
    const options = { ...this.#session, logFile, logger: this.#log.child('executor') };
    return new WarmPool({
      size,
      idle: { logFile },
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

  /** Runs an admitted task in its own folder; its events are owed to its planner until acknowledged. */
  #start(spec: TaskSpec): void {
    const { taskId: id, peer } = spec;
    const dir = this.#ledger.open(id, peer);
    const runner = new TaskRunner(spec, {
      dir,
      choice: this.tool,
      command: this.#session.command,
      env: this.#session.env,
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
      onSpawn: (ok, error) => this.#health.report(ok, error),
      onTerminal: () => {
        this.#active.delete(id);
      },
      reaper: this.#reaper,
      ...(this.#opts.executorUser ? { user: this.#opts.executorUser } : {}),
      ...(this.#warm ? { warm: this.#warm } : {}),
    });
    this.#active.set(id, runner);
    this.#ledger.owe(id, peer, runner.events);
    this.#log.info('task accepted', { peer, task: id, slots_free: this.freeSlots });
    runner.start().then(() => {
      // A channel that carried a forged or replayed frame is not used again in this session.
      if (runner.haltReason?.kind === 'e2ee_violation') this.endpoint.closeChannel(peer, id);
      this.#ledger.ended(id);
    });
  }
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
