/**
 * @module What the dashboard shows of a task: its digest, built from the store's snapshot and last
 * events. Pure. `status` keeps state, worker, timing and counts; `full` adds every text the page shows.
 */
import type { DigestEvent, DigestLevel, TaskDigest } from '../../protocol/dashboard.js';
import type { TaskEventRecord } from '../task-state.js';
import type { StoredTask } from '../task-store.js';
import { usageOf } from '../tools.js';

/** Events a digest carries: the timeline's tail, each one numbered. */
export const DIGEST_EVENTS = 40;
/** Characters of a progress line, a question or a result text kept in a digest. */
const TEXT_CHARS = 2_000;
/** The same for each event of the timeline. */
const EVENT_CHARS = 400;
const RESULT_CHARS = 8_000;
/** A schema or structured result bigger than this (as JSON) is left out of the digest. */
const JSON_CHARS = 16_000;

const clip = (s: string | undefined, n = TEXT_CHARS) =>
  s === undefined ? undefined : s.length > n ? `${s.slice(0, n)}…` : s;
const smallJson = (v: unknown) => (v === undefined || JSON.stringify(v).length > JSON_CHARS ? undefined : v);

function eventOf(e: TaskEventRecord): DigestEvent {
  return {
    seq: e.seq,
    state: e.state,
    time: e.time,
    ...(e.message ? { message: clip(e.message, EVENT_CHARS) } : {}),
    ...(e.progress !== undefined ? { progress: e.progress } : {}),
    ...(e.total !== undefined ? { total: e.total } : {}),
    ...(e.question ? { question: clip(e.question, EVENT_CHARS) } : {}),
    ...(e.reason ? { reason: e.reason } : {}),
  };
}

/** The digest of `t`; `events` are its last ones (at most {@link DIGEST_EVENTS}), oldest first. */
export function buildDigest(t: StoredTask, events: TaskEventRecord[], level: DigestLevel): TaskDigest {
  const s = t.snapshot;
  const base: TaskDigest = {
    v: 1,
    level,
    task_id: s.task_id,
    worker: s.agent_id,
    state: s.state ?? null,
    created_at: s.created_at,
    updated_at: s.updated_at,
    last_seq: s.last_seq,
    counts: { events: s.last_seq, artifacts: s.artifacts.length },
    ...(s.reason ? { reason: s.reason } : {}),
    ...(t.request.timeout_ms ? { timeout_ms: t.request.timeout_ms } : {}),
  };
  if (level === 'status') return base;
  const waiting = s.state === 'waiting_input' && s.pending && t.answered_seq !== s.pending.seq;
  const text = s.result?.text;
  return {
    ...base,
    objective: clip(s.objective),
    events: events.slice(-DIGEST_EVENTS).map(eventOf),
    ...(waiting && s.pending
      ? {
          pending: {
            seq: s.pending.seq,
            question: clip(s.pending.question)!,
            schema: smallJson(s.pending.schema) ?? null,
          },
        }
      : {}),
    ...(s.result
      ? {
          result: {
            text: clip(text, RESULT_CHARS) ?? '',
            truncated: (text?.length ?? 0) > RESULT_CHARS,
            ...(smallJson(s.result.structured) !== undefined
              ? { structured: smallJson(s.result.structured) }
              : {}),
          },
        }
      : {}),
    artifacts: s.artifacts.map((a) => ({ name: a.name, size: a.size, sha256: a.sha256 })),
    ...(s.message ? { message: clip(s.message) } : {}),
    ...usageOf(s.result?.structured),
  };
}
