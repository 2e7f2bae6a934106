/**
 * @module Task states and the one transition function. The store keeps numbered events and replays
 * them through {@link applyEvent}; the snapshot row is only a cache of that fold.
 */
import { type TaskStateName, TERMINAL_STATES } from '../protocol/a2a.js';

export type { TaskStateName };

/** A result file materialised and verified on this machine. */
export interface ArtifactRecord {
  name: string;
  size: number;
  sha256: string;
  /** Absolute local path. */
  path: string;
}

/** One numbered task event as stored. Worker events keep the worker's seq; planner-made ones take the next. */
export interface TaskEventRecord {
  seq: number;
  state: TaskStateName;
  /** Milliseconds since the epoch. */
  time: number;
  /** Who produced it: the worker, or this planner (timeout, cancel while the worker was gone, …). */
  origin: 'worker' | 'planner';
  message?: string;
  reason?: string;
  progress?: number;
  total?: number;
  question?: string;
  schema?: unknown;
  result_text?: string;
  structured?: unknown;
  artifacts?: ArtifactRecord[];
}

export interface PendingQuestion {
  seq: number;
  question: string;
  schema: unknown;
}

export interface TaskSnapshot {
  task_id: string;
  agent_id: string;
  objective: string;
  created_at: number;
  updated_at: number;
  /** undefined until the first event (the worker's `accepted`) is stored. */
  state: TaskStateName | undefined;
  last_seq: number;
  pending?: PendingQuestion;
  result?: { text: string; structured?: unknown };
  artifacts: ArtifactRecord[];
  reason?: string;
  message?: string;
}

/**
 * Where a dispatch stands while its task has no event yet (state undefined), kept in the store so that a
 * restarted planner knows what each such row is.
 */
export type DispatchPhase =
  /** The TaskStart went out; the dispatching call waits for the worker's `accepted` or refusal. */
  | 'sent'
  /** After a possible loss, a Resume(0) asks the worker whether it has the task. */
  | 'probing'
  /** The worker had not got it: the TaskStart went again. */
  | 'resent'
  /** The dispatching call gave up waiting; a Cancel follows the TaskStart (docs/durability.md). */
  | 'withdrawn'
  /** Left by an earlier run of the planner: nobody waits for it, a late `accepted` is adopted. */
  | 'adopted';

/** Whether a dispatching call of this process still waits for the worker's answer. */
export const inFlight = (phase: DispatchPhase | undefined): boolean =>
  phase === 'sent' || phase === 'probing' || phase === 'resent';

export const isTerminal = (state: TaskStateName | undefined): boolean =>
  state !== undefined && TERMINAL_STATES.has(state);

/** Which states may follow which. Terminal states absorb everything; `accepted` only starts a task. */
export function canTransition(from: TaskStateName | undefined, to: TaskStateName): boolean {
  if (from === undefined) return true;
  if (isTerminal(from)) return false;
  return to !== 'accepted';
}

/** The initial snapshot of a task before any event. */
export function newSnapshot(t: {
  task_id: string;
  agent_id: string;
  objective: string;
  created_at: number;
}): TaskSnapshot {
  return {
    task_id: t.task_id,
    agent_id: t.agent_id,
    objective: t.objective,
    created_at: t.created_at,
    updated_at: t.created_at,
    state: undefined,
    last_seq: 0,
    artifacts: [],
  };
}

/**
 * Folds one event into a snapshot. Pure. The sequence number always advances (events are gapless);
 * the state changes only along {@link canTransition}.
 */
export function applyEvent(s: TaskSnapshot, e: TaskEventRecord): TaskSnapshot {
  const next: TaskSnapshot = { ...s, last_seq: Math.max(s.last_seq, e.seq), updated_at: e.time };
  if (!canTransition(s.state, e.state)) return next;
  next.state = e.state;
  next.pending =
    e.state === 'waiting_input'
      ? { seq: e.seq, question: e.question ?? '', schema: e.schema ?? null }
      : undefined;
  if (e.result_text !== undefined || e.structured !== undefined) {
    next.result = { text: e.result_text ?? '', structured: e.structured };
  }
  if (e.artifacts?.length) next.artifacts = [...s.artifacts, ...e.artifacts];
  if (e.state === 'failed' || e.state === 'cancelled') {
    next.reason = e.reason || (e.state === 'cancelled' ? 'cancelled' : 'failed');
    next.message = e.message;
  }
  return next;
}
