/**
 * @module Every decision about one task, as one pure function: `step(task, input, now) → {task, actions}`.
 * The task router (src/planner/task-router.ts) feeds it what happened (a worker's event or refusal, a
 * timer, a tool call, a lost worker, a reconnect) and executes the actions it returns (store,
 * acknowledge, resume, cancel, resend, settle the dispatching call, wake waiters). Nothing here sends,
 * stores or waits, so the table test in test/planner/step.test.ts covers every transition, and what is
 * stored is all a restarted planner needs.
 */
import type { FailureReason, TaskEvent } from '../../protocol/a2a.js';
import { taskStateName } from '../../protocol/a2a.js';
import type { PlannerErrorCode } from '../errors.js';
import {
  type ArtifactRecord,
  applyEvent,
  type DispatchPhase,
  inFlight,
  isTerminal,
  type TaskEventRecord,
  type TaskSnapshot,
} from '../task-state.js';
import type { QueuedAnswer, StoredTask, TaskRequest } from '../task-store.js';

/** A Cancel resent to a chatty worker goes at most this often per task. */
export const CANCEL_RESEND_MS = 1_000;

/** One task as `step` sees it: its stored row (if any) and what the planner remembers in memory only. */
export interface Task {
  /** The row in tasks.db; undefined when this planner has none for the id. */
  stored?: StoredTask;
  /** The last stored seq after which a Resume was asked, so one gap asks once. */
  resumeAsked?: number;
  /** When a Cancel last went out (ms since the epoch). */
  cancelSentAt?: number;
}

/** Why the workers are brought up to date (docs/durability.md, guarantee 5). */
export type RecoverWhy = 'connected' | 'resync' | 'back' | 'check';

export type Input =
  /** orchestrate_task takes the id: the row is written before the TaskStart leaves. */
  | {
      type: 'dispatch';
      row: { task_id: string; agent_id: string; objective: string; created_at: number; request: TaskRequest };
    }
  /** The dispatching call failed; `neverDelivered` when the TaskStart certainly never reached the worker. */
  | { type: 'dispatch_failed'; neverDelivered: boolean; message: string }
  /** This process starts with the task in its store. */
  | { type: 'planner_started' }
  /** A numbered event from `peer`; `filesReceived` when result files of the task arrived before it. */
  | { type: 'event'; peer: string; event: TaskEvent; filesReceived: boolean }
  /** The result files a final event lists, checked (the answer to a `verify` action). */
  | { type: 'artifacts_verified'; record: TaskEventRecord; files: ArtifactRecord[]; problems: string[] }
  | { type: 'refused'; peer: string; reason: string; message: string }
  /** The worker replayed what a Resume asked for; `lastSeq` is its newest event. */
  | { type: 'replay_complete'; peer: string; lastSeq: number }
  /** timeout_ms plus the grace passed without a final event. */
  | { type: 'timeout'; message: string }
  /** The worker has been unreachable for the grace period. */
  | { type: 'worker_lost'; message: string }
  /** cancel_task could not get the worker's word: the task ends here, the Cancel is kept. */
  | { type: 'local_cancel'; note: string }
  /** A delivery or channel failure: `scope` task for the task's channel, peer for the whole worker. */
  | { type: 'failure'; peer: string; code: string; message: string; scope: 'task' | 'peer' }
  /** Frames to `peer` may have been lost: bring the task up to date. */
  | { type: 'recover'; peer: string; why: RecoverWhy }
  /** respond_to_worker answered the question at `seq`; stored first, resent until the worker moves on. */
  | { type: 'answer'; seq: number; answer: QueuedAnswer };

/** A change to the stored row, executed by the store in the order given. */
export type StoreChange =
  | { op: 'begin'; row: Extract<Input, { type: 'dispatch' }>['row'] }
  | { op: 'append'; record: TaskEventRecord }
  | { op: 'cancel_pending'; value: boolean }
  | { op: 'dispatch'; phase: DispatchPhase }
  | { op: 'answer'; seq: number; answer: QueuedAnswer }
  | { op: 'remove' };

export type LogLevel = 'debug' | 'info' | 'warn';

export type Action =
  | { type: 'store'; change: StoreChange }
  /** Acknowledge `seq` once what is stored is on disk. */
  | { type: 'ack'; seq: number }
  | { type: 'resume'; afterSeq: number }
  | { type: 'cancel'; reason: string }
  | { type: 'resend_start' }
  | { type: 'resend_answer'; questionSeq: number; answer: QueuedAnswer }
  /** Check the result files a final event lists, then step `artifacts_verified`. */
  | { type: 'verify'; record: TaskEventRecord }
  /** The dispatching call gets its answer: accepted (the stored snapshot) or an error. */
  | { type: 'resolve_dispatch' }
  | { type: 'reject_dispatch'; code: PlannerErrorCode; message: string }
  /** Start the task's timeout_ms clock. */
  | { type: 'arm_timeout' }
  /** An event is stored: wake whoever waits, and, once final, end timers and file transfers. */
  | { type: 'wake'; snapshot: TaskSnapshot; record: TaskEventRecord }
  | { type: 'log'; level: LogLevel; message: string; fields?: Record<string, unknown> };

export interface Step {
  task: Task;
  actions: Action[];
}

/** The error a dispatching call gets for a delivery or channel failure. */
export function failureError(
  peer: string,
  code: string,
  message: string,
): { code: PlannerErrorCode; message: string } {
  if (code === 'peer_not_found') {
    return {
      code: 'unknown_agent',
      message:
        `unknown agent ${JSON.stringify(peer)}: no such peer is connected under this API key. ` +
        'Call list_worker_peers to see the workers you can use',
    };
  }
  return { code: 'a2a', message: `A2A channel to ${peer} failed (${code}): ${message}` };
}

/** A worker's event as stored. An unknown state is stored as a failure naming it. */
export function eventRecord(ev: TaskEvent, now: number): TaskEventRecord {
  const state = taskStateName(ev.state);
  const record: TaskEventRecord = {
    seq: Number(ev.seq),
    state: state ?? 'failed',
    time: Number(ev.timeUnixMs) || now,
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
  return record;
}

/** The row a store change leads to (what TaskStore writes, computed here so `step` can go on from it). */
export function applyChange(stored: StoredTask | undefined, change: StoreChange): StoredTask | undefined {
  switch (change.op) {
    case 'begin':
      return (
        stored ?? {
          snapshot: {
            task_id: change.row.task_id,
            agent_id: change.row.agent_id,
            objective: change.row.objective,
            created_at: change.row.created_at,
            updated_at: change.row.created_at,
            state: undefined,
            last_seq: 0,
            artifacts: [],
          },
          request: change.row.request,
          answered_seq: 0,
          cancel_pending: false,
          dispatch: 'sent',
        }
      );
    case 'remove':
      return stored && stored.snapshot.state === undefined && stored.snapshot.last_seq === 0
        ? undefined
        : stored;
    default:
      if (!stored) return undefined;
      if (change.op === 'append') return { ...stored, snapshot: applyEvent(stored.snapshot, change.record) };
      if (change.op === 'cancel_pending') return { ...stored, cancel_pending: change.value };
      if (change.op === 'dispatch') return { ...stored, dispatch: change.phase };
      return { ...stored, answered_seq: change.seq, answer: change.answer };
  }
}

/** Collects a step's actions and keeps the task's row in line with the store changes among them. */
class Builder {
  readonly actions: Action[] = [];
  constructor(
    public task: Task,
    readonly now: number,
  ) {}

  get stored(): StoredTask | undefined {
    return this.task.stored;
  }

  store(change: StoreChange): void {
    this.actions.push({ type: 'store', change });
    this.task = { ...this.task, stored: applyChange(this.task.stored, change) };
  }

  remember(memo: Partial<Pick<Task, 'resumeAsked' | 'cancelSentAt'>>): void {
    this.task = { ...this.task, ...memo };
  }

  act(action: Action): void {
    this.actions.push(action);
  }

  log(level: LogLevel, message: string, fields?: Record<string, unknown>): void {
    this.actions.push({ type: 'log', level, message, fields });
  }

  /** A Cancel, at most once a second: a chatty worker does not get one per event. */
  cancelThrottled(): void {
    if (this.now - (this.task.cancelSentAt ?? 0) < CANCEL_RESEND_MS) return;
    this.remember({ cancelSentAt: this.now });
    const s = this.stored?.snapshot;
    const reason = !s
      ? 'the planner has no such task'
      : s.state === undefined
        ? 'withdrawn by the planner: not accepted in time'
        : 'cancelled by the planner';
    this.act({ type: 'cancel', reason });
  }

  result(): Step {
    return { task: this.task, actions: this.actions };
  }
}

/** Decides what one input does to one task. Pure: the same task and input always give the same step. */
export function step(task: Task, input: Input, now: number): Step {
  const b = new Builder(task, now);
  const stored = task.stored;
  const s = stored?.snapshot;
  switch (input.type) {
    case 'dispatch':
      if (!stored) b.store({ op: 'begin', row: input.row });
      break;
    case 'dispatch_failed':
      if (!s || s.state !== undefined) break;
      if (input.neverDelivered) {
        b.store({ op: 'remove' });
        break;
      }
      // It may still reach the worker: the row stays, withdrawn, and a Cancel follows the TaskStart.
      b.store({ op: 'cancel_pending', value: true });
      b.store({ op: 'dispatch', phase: 'withdrawn' });
      b.log('info', 'dispatch withdrawn; the worker is told to cancel it if it has it', {
        peer: s.agent_id,
        task: s.task_id,
        why: input.message,
      });
      b.cancelThrottled();
      break;
    case 'planner_started':
      if (!s) break;
      if (s.state === undefined && inFlight(stored.dispatch)) b.store({ op: 'dispatch', phase: 'adopted' });
      if (!isTerminal(s.state)) b.act({ type: 'arm_timeout' });
      break;
    case 'event':
      onEvent(b, input);
      break;
    case 'artifacts_verified':
      onVerified(b, input);
      break;
    case 'refused':
      onRefused(b, input);
      break;
    case 'replay_complete': {
      if (!s || s.agent_id !== input.peer || isTerminal(s.state)) break;
      const last = s.last_seq;
      if (input.lastSeq <= last) b.remember({ resumeAsked: undefined });
      else if (task.resumeAsked !== last) {
        // Some of the replay was lost on the way as well: ask once more for what is still missing.
        b.remember({ resumeAsked: last });
        b.act({ type: 'resume', afterSeq: last });
      }
      break;
    }
    case 'timeout':
      if (!s || isTerminal(s.state)) break;
      // Until the worker confirms, the Cancel goes again whenever it is back (recover).
      if (s.state !== undefined) b.store({ op: 'cancel_pending', value: true });
      b.act({ type: 'cancel', reason: 'timeout' });
      localEvent(b, { state: 'failed', reason: 'timeout', message: input.message });
      break;
    case 'worker_lost':
      if (!s) break;
      if (isTerminal(s.state)) {
        // Told for one more grace period; then given up.
        if (stored.cancel_pending) b.store({ op: 'cancel_pending', value: false });
        break;
      }
      if (s.state === undefined && inFlight(stored.dispatch)) {
        b.act({ type: 'reject_dispatch', code: 'unknown_agent', message: input.message });
        break;
      }
      // A dispatch not in flight (withdrawn, or adopted) may have reached the worker: it ends like an
      // open task, so the id stays known and a late TaskStart is still cancelled. Should the worker
      // come back after all, it is told to stop.
      b.store({ op: 'cancel_pending', value: true });
      localEvent(b, { state: 'failed', reason: 'worker_lost', message: input.message });
      break;
    case 'local_cancel':
      if (!s || isTerminal(s.state)) break;
      // Ended here without the worker's word: the Cancel is resent until it confirms.
      b.store({ op: 'cancel_pending', value: true });
      localEvent(b, { state: 'cancelled', reason: 'cancelled', message: input.note });
      break;
    case 'failure':
      if (!s || s.agent_id !== input.peer) break;
      if (s.state === undefined && inFlight(stored.dispatch)) {
        if (input.scope === 'peer' || input.code === 'peer_not_found' || input.code === 'e2ee_violation') {
          b.act({ type: 'reject_dispatch', ...failureError(input.peer, input.code, input.message) });
        }
        break;
      }
      // Other channel failures (a frame sealed under a replaced session, an answer to a worker that is
      // away) heal by resuming: see recover.
      if (input.scope === 'task' && input.code === 'e2ee_violation') {
        localEvent(b, { state: 'failed', reason: 'e2ee_violation', message: input.message });
      }
      break;
    case 'recover':
      onRecover(b, input);
      break;
    case 'answer':
      if (stored) b.store({ op: 'answer', seq: input.seq, answer: input.answer });
      break;
  }
  return b.result();
}

function onEvent(b: Builder, input: Extract<Input, { type: 'event' }>): void {
  const { peer, event } = input;
  const seq = Number(event.seq);
  const stored = b.stored;
  const s = stored?.snapshot;
  const state = taskStateName(event.state);
  if (!stored || !s) {
    // Not this planner's (a store it no longer has): a task still running there is stopped, since
    // nobody will read its result; a final event is left unacknowledged.
    b.log('debug', 'event for an unknown task', { peer, task: event.taskId, seq });
    if (state && !isTerminal(state)) b.cancelThrottled();
    return;
  }
  if (s.agent_id !== peer) {
    b.log('warn', 'event for a task of another worker ignored', { peer, task: s.task_id });
    return;
  }
  const last = s.last_seq;
  if (isTerminal(s.state)) {
    // Ended here without the worker's word (a local cancel, worker_lost): the worker's own final event
    // settles it; anything else means the task still runs there, so it is told again to stop.
    if (stored.cancel_pending) {
      if (state && isTerminal(state)) {
        b.store({ op: 'cancel_pending', value: false });
        b.remember({ cancelSentAt: undefined });
      } else b.cancelThrottled();
    }
    b.act({ type: 'ack', seq });
    return;
  }
  if (seq <= last) {
    b.act({ type: 'ack', seq });
    return;
  }
  if (seq > last + 1) {
    if (b.task.resumeAsked !== last) {
      b.remember({ resumeAsked: last });
      b.log('info', 'gap in task events; asking to resume', { task: s.task_id, after_seq: last, got: seq });
      b.act({ type: 'resume', afterSeq: last });
    }
    return;
  }
  b.remember({ resumeAsked: undefined });
  const record = eventRecord(event, b.now);
  // `completed` is reported only once every result file is here and verified.
  const final = record.state === 'completed' || record.state === 'failed';
  if (final && (event.artifacts.length > 0 || input.filesReceived)) b.act({ type: 'verify', record });
  else workerEvent(b, record);
}

function onVerified(b: Builder, input: Extract<Input, { type: 'artifacts_verified' }>): void {
  const s = b.stored?.snapshot;
  const record = { ...input.record };
  if (!s) return;
  if (isTerminal(s.state) || record.seq !== s.last_seq + 1) {
    b.act({ type: 'ack', seq: record.seq });
    return;
  }
  if (input.files.length) record.artifacts = input.files;
  if (input.problems.length) {
    b.log('warn', 'artifact verification failed', { task: s.task_id, problems: input.problems });
    if (record.state === 'completed') {
      record.state = 'failed';
      record.reason = 'artifact_integrity';
      record.message = input.problems.join('; ');
    } else record.message = [record.message, ...input.problems].filter(Boolean).join('; ');
  }
  workerEvent(b, record);
}

/** Stores the worker's next event, acknowledges it, and does what follows. */
function workerEvent(b: Builder, record: TaskEventRecord): void {
  const before = b.stored!;
  b.store({ op: 'append', record });
  b.act({ type: 'ack', seq: record.seq });
  const snapshot = b.stored!.snapshot;
  // A withdrawn dispatch the worker did take: its events are kept until the Cancel takes effect.
  if (before.cancel_pending && !isTerminal(snapshot.state)) b.cancelThrottled();
  if (before.snapshot.state === undefined && inFlight(before.dispatch)) {
    b.act({ type: 'resolve_dispatch' });
    b.act({ type: 'arm_timeout' });
  }
  afterStore(b, snapshot, record);
}

/** Stores an event this planner decides (timeout, local cancel, worker lost, e2ee violation). */
function localEvent(
  b: Builder,
  e:
    | { state: 'failed'; reason: FailureReason; message: string }
    | { state: 'cancelled'; reason: 'cancelled'; message: string },
): void {
  const s = b.stored?.snapshot;
  if (!s || isTerminal(s.state)) return;
  const record: TaskEventRecord = { seq: s.last_seq + 1, time: b.now, origin: 'planner', ...e };
  b.store({ op: 'append', record });
  afterStore(b, b.stored!.snapshot, record);
}

function afterStore(b: Builder, snapshot: TaskSnapshot, record: TaskEventRecord): void {
  if (isTerminal(snapshot.state)) {
    // The worker's own final word confirms any cancel this planner was still re-sending.
    if (record.origin === 'worker' && b.stored?.cancel_pending)
      b.store({ op: 'cancel_pending', value: false });
    b.remember({ resumeAsked: undefined });
  }
  b.act({ type: 'wake', snapshot, record });
}

function onRefused(b: Builder, input: Extract<Input, { type: 'refused' }>): void {
  const stored = b.stored;
  const s = stored?.snapshot;
  if (!stored || !s || s.agent_id !== input.peer) return;
  const { peer, reason, message } = input;
  if (s.state === undefined && inFlight(stored.dispatch)) {
    // Answers to the Resume(0) a recover sends for a dispatch not yet accepted.
    if (reason === 'unknown_task') {
      if (stored.dispatch === 'resent') return;
      b.store({ op: 'dispatch', phase: 'resent' });
      b.log('info', 'the TaskStart was lost in a reconnect; sending it again', { peer, task: s.task_id });
      b.act({ type: 'resend_start' });
      return;
    }
    if (reason === 'duplicate_task_id' && stored.dispatch !== 'sent') {
      // It did arrive after all: ask for its events instead.
      b.store({ op: 'dispatch', phase: 'probing' });
      b.act({ type: 'resume', afterSeq: 0 });
      return;
    }
    b.act({
      type: 'reject_dispatch',
      code: 'refused',
      message:
        `worker ${peer} refused task ${s.task_id}: ${reason || 'refused'}${message ? ` (${message})` : ''}` +
        (reason === 'no_free_slots' ? '; probe_worker for free slots, wait, or pick another worker' : ''),
    });
    return;
  }
  if (reason !== 'unknown_task') return;
  if (s.state === undefined) {
    // A dispatch withdrawn or left by an earlier run whose TaskStart never reached the worker: this was
    // sent after it, so it never will. Both sides forget the id.
    b.log('info', 'a dispatch never reached the worker; its id is dropped', {
      peer,
      task: s.task_id,
      withdrawn: stored.cancel_pending,
    });
    b.store({ op: 'remove' });
    b.remember({ cancelSentAt: undefined });
    return;
  }
  if (stored.cancel_pending) {
    // A cancel resent for a task the worker no longer has: nothing left to stop.
    b.store({ op: 'cancel_pending', value: false });
    return;
  }
  // A Resume for a task the worker no longer knows (it lost its state): the task cannot finish.
  localEvent(b, {
    state: 'failed',
    reason: 'worker_lost',
    message: `worker ${peer} no longer knows this task: ${message || 'unknown task'}`,
  });
}

/**
 * After anything that may have lost frames: an open task is resumed after its last stored seq (a
 * dispatch not yet accepted is asked about with Resume 0), a cancel not yet confirmed goes again, and,
 * except on the periodic check, an answer the worker has not moved past goes again. Each is idempotent
 * at the worker.
 */
function onRecover(b: Builder, input: Extract<Input, { type: 'recover' }>): void {
  const stored = b.stored;
  const s = stored?.snapshot;
  if (!stored || !s || s.agent_id !== input.peer) return;
  if (isTerminal(s.state)) {
    if (stored.cancel_pending) b.cancelThrottled();
    return;
  }
  if (s.state === undefined && inFlight(stored.dispatch)) {
    // A dispatch in flight has its own acceptance timeout; only a possible loss makes it ask.
    if (input.why === 'check') return;
    if (stored.dispatch === 'sent') b.store({ op: 'dispatch', phase: 'probing' });
  }
  b.act({ type: 'resume', afterSeq: s.last_seq });
  // A withdrawn dispatch: whatever the worker has of it is stopped.
  if (stored.cancel_pending) b.cancelThrottled();
  const answer = stored.answer;
  if (
    input.why !== 'check' &&
    answer &&
    s.state === 'waiting_input' &&
    stored.answered_seq === s.pending?.seq
  ) {
    b.act({ type: 'resend_answer', questionSeq: stored.answered_seq, answer });
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
