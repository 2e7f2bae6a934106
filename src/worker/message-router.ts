/**
 * @module The worker's message router: each A2A message, channel failure and resync from a planner goes
 * to what handles it. A probe to the probe answer; a TaskStart through {@link admit} to a new task or a
 * refusal; a task's chunks, answers and cancel to its running task; a Resume, an Ack, or a Cancel of a
 * task that ended to the {@link RecoveryLedger}. A message about a task is taken only from the planner
 * that started it. The rules are here and what they start or send is the worker's ({@link RouterDeps}),
 * so tests drive the router in-process.
 */
import { create } from '@bufbuild/protobuf';
import type { A2aBody, A2aFailure, A2aInbound } from '../agent/a2a.js';
import { sanitizeArtifactName } from '../agent/artifacts/index.js';
import {
  A2A_PROTOCOL,
  PROBE_CHANNEL,
  type Probe,
  type ProbeResult,
  ProbeResultSchema,
  type RefusalReason,
  type Resume,
  TaskRefusedSchema,
  type TaskStart,
  taskIdProblem,
} from '../protocol/a2a.js';
import type { Logger } from '../util/log.js';
import { trace } from '../util/trace.js';
import type { Readiness } from './executor.js';
import type { RecoveryLedger } from './recovery-ledger.js';
import type { TaskRunner, TaskSpec } from './task-runner.js';

/** What the router hands a running task. */
export type RunningTask = Pick<
  TaskRunner,
  | 'spec'
  | 'acceptChunk'
  | 'acceptArtifactAck'
  | 'acceptP2pOffer'
  | 'acceptP2pAnswer'
  | 'respond'
  | 'halt'
  | 'resync'
>;

/** Where the worker stands now: what a TaskStart is admitted against and a probe is answered with. */
export interface WorkerStatus {
  agentId: string;
  /** The executor's task tool. */
  tool: string;
  labels: Record<string, string>;
  maxTasks: number;
  running: number;
  draining: boolean;
  healthy: boolean;
  executorError: string;
}

export interface Refusal {
  taskId: string;
  reason: RefusalReason;
  message: string;
}

export interface RouterDeps {
  ledger: RecoveryLedger;
  /** Tasks running here, by id. */
  running: ReadonlyMap<string, RunningTask>;
  status: () => WorkerStatus;
  /** The executor's `check_ready` answer for a probe; undefined when it has no such tool. */
  readiness: () => Promise<Readiness | undefined>;
  /** Starts an admitted task. */
  start: (spec: TaskSpec) => void;
  /** Sends an answer that needs no more than a log line if it cannot leave. */
  reply: (peer: string, channel: string, msg: A2aBody) => void;
  /** Stops using a channel whose session was violated. */
  closeChannel: (peer: string, channel: string) => void;
  logger: Logger;
}

export class MessageRouter {
  readonly #deps: RouterDeps;
  readonly #log: Logger;

  constructor(deps: RouterDeps) {
    this.#deps = deps;
    this.#log = deps.logger;
  }

  onMessage(m: A2aInbound): void {
    this.#deps.ledger.greet(m.peer);
    // One message the worker mishandles must cost that message, not every running task.
    try {
      this.#route(m);
    } catch (err) {
      this.#log.error('failed to handle a message', {
        peer: m.peer,
        channel: m.channel,
        kind: m.msg.case,
        error: err,
      });
    }
  }

  /** A channel torn down by a forged or replayed frame: its task halts, any other channel closes. */
  onFailure(f: A2aFailure): void {
    if (f.code !== 'e2ee_violation' || !f.channel) return;
    const r = this.#deps.running.get(f.channel);
    if (r && r.spec.peer === f.peer) {
      r.halt({ kind: 'e2ee_violation', message: `task channel torn down: ${f.message}` });
    } else if (f.channel !== PROBE_CHANNEL) {
      this.#deps.closeChannel(f.peer, f.channel);
    }
  }

  /** A new session with `peer`: file transfers in flight resume from their acknowledged offsets. */
  onResync(peer: string): void {
    for (const r of this.#deps.running.values()) if (r.spec.peer === peer) r.resync();
    this.#deps.ledger.resync(peer);
  }

  #route({ peer, channel, msg, sealed }: A2aInbound): void {
    switch (msg.case) {
      case 'probe':
        return this.#onProbe(peer, msg.value);
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
      case 'ack': {
        const t = this.#deps.ledger.owedTo(peer, channel);
        if (t) this.#deps.ledger.ack(t, msg.value.seq);
        return;
      }
      default:
        this.#log.debug('ignoring a message a worker does not take', { peer, kind: msg.case });
    }
  }

  /** The task on `channel` if `peer` started it; anyone else's messages for it are dropped. */
  #owned(peer: string, channel: string): RunningTask | undefined {
    const r = this.#deps.running.get(channel);
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

  /** Answered on the probe channel whatever channel it came on, with the executor's fresh readiness. */
  #onProbe(peer: string, probe: Probe): void {
    void this.#deps.readiness().then((readiness) => {
      const value = probeResult(probe, this.#deps.status(), readiness);
      this.#deps.reply(peer, PROBE_CHANNEL, { case: 'probeResult', value });
    });
  }

  #onTaskStart(peer: string, channel: string, start: TaskStart): void {
    trace('worker.taskStart', channel);
    const ledger = this.#deps.ledger;
    const verdict = admit(peer, channel, start, this.#deps.status(), (id) => ledger.isKnown(id));
    if ('refusal' in verdict) return this.#refuse(peer, channel, verdict.refusal);
    this.#deps.start(verdict.spec);
  }

  #onResume(peer: string, id: string, resume: Resume): void {
    const ledger = this.#deps.ledger;
    if (!ledger.get(id)) {
      const { agentId } = this.#deps.status();
      const message = ledger.isKnown(id)
        ? `${agentId} already delivered every event of task ${id} and dropped its log`
        : `${agentId} has no task ${id}`;
      return this.#refuse(peer, id, { taskId: id, reason: 'unknown_task', message });
    }
    const t = ledger.owedTo(peer, id);
    if (t) ledger.replay(t, resume.afterSeq, 'resume');
  }

  #onCancel(peer: string, id: string, reason: string): void {
    const r = this.#owned(peer, id);
    if (r) return r.halt({ kind: 'cancelled', message: reason || 'cancelled by the planner' });
    // Not running (any more): a cancel resent after a reconnect, or for a task that ended meanwhile.
    // The final event answers it; a task unknown here is refused.
    const ledger = this.#deps.ledger;
    const t = ledger.get(id);
    if (t && t.owner === peer && t.log.finished) return ledger.replayFinal(t, 'cancel');
    if (!t) {
      const why = ledger.isKnown(id) ? 'already ended and was delivered' : 'is not known here';
      this.#refuse(peer, id, { taskId: id, reason: 'unknown_task', message: `task ${id} ${why}` });
    }
  }

  #refuse(peer: string, channel: string, { taskId, reason, message }: Refusal): void {
    this.#log.info('task refused', { peer, task: taskId, reason, detail: message });
    this.#deps.reply(peer, channel, {
      case: 'taskRefused',
      value: create(TaskRefusedSchema, { taskId, reason, message }),
    });
  }
}

/**
 * Whether a TaskStart on `channel` can run here, checked in this order: a usable id matching its
 * channel, the worker not draining, an id never used here, valid fields, a healthy executor, a free slot.
 */
export function admit(
  peer: string,
  channel: string,
  start: TaskStart,
  a: WorkerStatus,
  known: (id: string) => boolean,
): { spec: TaskSpec } | { refusal: Refusal } {
  const id = start.taskId;
  const refuse = (reason: RefusalReason, message: string) => ({
    refusal: { taskId: id || channel, reason, message },
  });
  if (!id) return refuse('invalid_task', 'task_id is empty');
  if (id !== channel) return refuse('invalid_task', `task_id ${id} does not match its channel ${channel}`);
  const idProblem = taskIdProblem(id);
  if (idProblem) return refuse('invalid_task', idProblem);
  if (a.draining) return refuse('draining', `${a.agentId} is shutting down; send the task to another worker`);
  if (known(id)) {
    return refuse(
      'duplicate_task_id',
      `task ${id} was already accepted by ${a.agentId}; task ids are never reused`,
    );
  }
  const spec = parseTaskStart(peer, start);
  if (typeof spec === 'string') return refuse('invalid_task', spec);
  if (!a.healthy) {
    return refuse('executor_unavailable', `the executor of ${a.agentId} cannot start: ${a.executorError}`);
  }
  if (a.running >= a.maxTasks) {
    return refuse(
      'no_free_slots',
      `0 of ${a.maxTasks} slots free on ${a.agentId}; retry later or pick another worker`,
    );
  }
  return { spec };
}

/** The answer to a probe: free slots, and whether a task sent now would be taken and could run. */
export function probeResult(probe: Probe, s: WorkerStatus, readiness: Readiness | undefined): ProbeResult {
  const free = Math.max(0, s.maxTasks - s.running);
  return create(ProbeResultSchema, {
    probeId: probe.probeId,
    available: free > 0 && s.healthy && !s.draining && readiness?.ready !== false,
    freeSlots: free,
    maxTasks: s.maxTasks,
    protocol: A2A_PROTOCOL,
    tool: s.tool,
    labels: s.labels,
    executorHealthy: s.healthy,
    executorError: s.executorError,
    draining: s.draining,
    // Without check_ready the executor cannot say; being able to start it is all we know.
    executorReady: readiness?.ready ?? s.healthy,
    executorReason: readiness?.ready === false ? (readiness.reason ?? '') : '',
    executorFix: readiness?.ready === false ? (readiness.fix ?? '') : '',
  });
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
