/**
 * The planner's task transitions as a table: (task, input) → (task, actions). `step` is pure, so each
 * row is one call; the last block runs a task's life through a real TaskStore and checks that what step
 * predicts is what the store holds, also after a replay.
 */
import { join } from 'node:path';
import { create, type MessageInitShape } from '@bufbuild/protobuf';
import { describe, expect, it } from 'vitest';
import { type Action, type Input, step, type Task, writeChange } from '../../src/planner/task/index.js';
import type { DispatchPhase, TaskStateName } from '../../src/planner/task-state.js';
import { type StoredTask, TaskStore } from '../../src/planner/task-store.js';
import { ArtifactInfoSchema, TaskEventSchema, taskStateFromName } from '../../src/protocol/a2a.js';
import { tempDir } from '../helpers/processes.js';

const NOW = 1_000_000;
const W = 'w1';

/** A stored task `t1` of worker w1 in `state` after `last` events. */
function row(
  state: TaskStateName | undefined,
  last: number,
  extra: Partial<StoredTask> & { pendingSeq?: number } = {},
): StoredTask {
  const { pendingSeq, ...rest } = extra;
  return {
    snapshot: {
      task_id: 't1',
      agent_id: W,
      objective: 'do it',
      created_at: 1_000,
      updated_at: 1_000,
      state,
      last_seq: last,
      artifacts: [],
      pending: pendingSeq ? { seq: pendingSeq, question: 'which env?', schema: null } : undefined,
    },
    request: {},
    answered_seq: 0,
    cancel_pending: false,
    dispatch: state === undefined ? 'sent' : undefined,
    ...rest,
  };
}

const dispatching = (phase: DispatchPhase, extra: Partial<StoredTask> = {}): Task => ({
  stored: row(undefined, 0, { dispatch: phase, ...extra }),
});

const event = (
  seq: number,
  state: TaskStateName,
  extra: MessageInitShape<typeof TaskEventSchema> = {},
  filesReceived = false,
): Input => ({
  type: 'event',
  peer: W,
  filesReceived,
  event: create(TaskEventSchema, {
    taskId: 't1',
    seq: BigInt(seq),
    state: taskStateFromName(state),
    ...extra,
  }),
});

const ANSWER = { content_json: '{"env":"prod"}', action: 'accept', files: [] };

/** One line per action (logs left out), so a row of the table reads like the protocol. */
function summary(actions: Action[]): string[] {
  return actions.flatMap((a): string[] => {
    switch (a.type) {
      case 'log':
        return [];
      case 'store': {
        const c = a.change;
        if (c.op === 'append') return [`store ${c.record.seq} ${c.record.state}/${c.record.reason ?? '-'}`];
        if (c.op === 'cancel_pending') return [`store cancel_pending=${c.value}`];
        if (c.op === 'dispatch') return [`store dispatch=${c.phase}`];
        if (c.op === 'answer') return [`store answer to ${c.seq}`];
        return [`store ${c.op}`];
      }
      case 'ack':
        return [`ack ${a.seq}`];
      case 'resume':
        return [`resume after ${a.afterSeq}`];
      case 'cancel':
        return [`cancel (${a.reason})`];
      case 'resend_answer':
        return [`resend answer to ${a.questionSeq}`];
      case 'verify':
        return [`verify ${a.record.seq}`];
      case 'reject_dispatch':
        return [`reject dispatch (${a.code})`];
      case 'wake':
        return [`wake ${a.snapshot.state}`];
      default:
        return [a.type];
    }
  });
}

interface Row {
  name: string;
  task: Task;
  input: Input;
  actions: string[];
  /** Fields of the task after the step. */
  after?: {
    state?: TaskStateName | 'gone';
    cancel_pending?: boolean;
    dispatch?: DispatchPhase;
    resumeAsked?: number | 'none';
    cancelSentAt?: number | 'none';
  };
}

const lost = { type: 'worker_lost', message: 'gone for 30 s' } as const;

const TABLE: Row[] = [
  // ── dispatch ──
  {
    name: 'a dispatch takes its id before the TaskStart leaves',
    task: {},
    input: {
      type: 'dispatch',
      row: { task_id: 't1', agent_id: W, objective: 'do it', created_at: 1, request: {} },
    },
    actions: ['store begin'],
    after: { state: undefined, dispatch: 'sent' },
  },
  {
    name: 'the first event resolves the dispatching call and starts the clock',
    task: dispatching('sent'),
    input: event(1, 'accepted'),
    actions: ['store 1 accepted/-', 'ack 1', 'resolve_dispatch', 'arm_timeout', 'wake accepted'],
    after: { state: 'accepted' },
  },
  {
    name: 'a refusal rejects the dispatching call',
    task: dispatching('sent'),
    input: { type: 'refused', peer: W, reason: 'no_free_slots', message: '' },
    actions: ['reject dispatch (refused)'],
  },
  {
    name: 'unknown_task after a Resume(0): the TaskStart goes again, once',
    task: dispatching('probing'),
    input: { type: 'refused', peer: W, reason: 'unknown_task', message: '' },
    actions: ['store dispatch=resent', 'resend_start'],
    after: { dispatch: 'resent' },
  },
  {
    name: 'unknown_task when the TaskStart was already resent: nothing more',
    task: dispatching('resent'),
    input: { type: 'refused', peer: W, reason: 'unknown_task', message: '' },
    actions: [],
  },
  {
    name: 'duplicate_task_id for a resent TaskStart: it had arrived, its events are asked for',
    task: dispatching('resent'),
    input: { type: 'refused', peer: W, reason: 'duplicate_task_id', message: '' },
    actions: ['store dispatch=probing', 'resume after 0'],
    after: { dispatch: 'probing' },
  },
  {
    name: 'duplicate_task_id for a first TaskStart is a refusal',
    task: dispatching('sent'),
    input: { type: 'refused', peer: W, reason: 'duplicate_task_id', message: '' },
    actions: ['reject dispatch (refused)'],
  },
  {
    name: 'a dispatch that never reached the worker is forgotten',
    task: dispatching('sent'),
    input: { type: 'dispatch_failed', neverDelivered: true, message: 'refused' },
    actions: ['store remove'],
    after: { state: 'gone' },
  },
  {
    name: 'a dispatch that got no answer is withdrawn, and a Cancel follows',
    task: dispatching('sent'),
    input: { type: 'dispatch_failed', neverDelivered: false, message: 'no answer in 15 s' },
    actions: [
      'store cancel_pending=true',
      'store dispatch=withdrawn',
      'cancel (withdrawn by the planner: not accepted in time)',
    ],
    after: { cancel_pending: true, dispatch: 'withdrawn', cancelSentAt: NOW },
  },
  {
    name: 'a dispatch accepted before its call failed stays the worker’s',
    task: { stored: row('accepted', 1, { dispatch: 'sent' }) },
    input: { type: 'dispatch_failed', neverDelivered: false, message: 'flush failed' },
    actions: [],
  },
  {
    name: 'a withdrawn dispatch the worker did take: stored, and told to cancel',
    task: dispatching('withdrawn', { cancel_pending: true }),
    input: event(1, 'accepted'),
    actions: ['store 1 accepted/-', 'ack 1', 'cancel (cancelled by the planner)', 'wake accepted'],
    after: { state: 'accepted', cancel_pending: true },
  },
  {
    name: 'a withdrawn dispatch the worker never got: the id is dropped',
    task: { ...dispatching('withdrawn', { cancel_pending: true }), cancelSentAt: NOW - 10 },
    input: { type: 'refused', peer: W, reason: 'unknown_task', message: '' },
    actions: ['store remove'],
    after: { state: 'gone', cancelSentAt: 'none' },
  },
  {
    name: 'a withdrawn dispatch is asked about and cancelled on recover',
    task: dispatching('withdrawn', { cancel_pending: true }),
    input: { type: 'recover', peer: W, why: 'check' },
    actions: ['resume after 0', 'cancel (withdrawn by the planner: not accepted in time)'],
  },
  {
    name: 'a dispatch in flight is asked about after a resync',
    task: dispatching('sent'),
    input: { type: 'recover', peer: W, why: 'resync' },
    actions: ['store dispatch=probing', 'resume after 0'],
    after: { dispatch: 'probing' },
  },
  {
    name: 'a dispatch in flight is left alone by the periodic check',
    task: dispatching('sent'),
    input: { type: 'recover', peer: W, why: 'check' },
    actions: [],
  },
  {
    name: 'a restarted planner adopts the dispatches of the last run',
    task: dispatching('probing'),
    input: { type: 'planner_started' },
    actions: ['store dispatch=adopted', 'arm_timeout'],
    after: { dispatch: 'adopted' },
  },
  {
    name: 'an adopted dispatch the worker never got is dropped',
    task: dispatching('adopted'),
    input: { type: 'refused', peer: W, reason: 'unknown_task', message: '' },
    actions: ['store remove'],
    after: { state: 'gone' },
  },
  {
    name: 'a lost worker rejects a dispatch in flight',
    task: dispatching('sent'),
    input: lost,
    actions: ['reject dispatch (unknown_agent)'],
  },
  {
    name: 'a lost worker fails a withdrawn dispatch, so the id stays known',
    task: dispatching('withdrawn', { cancel_pending: true }),
    input: lost,
    actions: ['store cancel_pending=true', 'store 1 failed/worker_lost', 'wake failed'],
    after: { state: 'failed', cancel_pending: true },
  },
  {
    name: 'peer_not_found on the task channel rejects a dispatch in flight',
    task: dispatching('sent'),
    input: { type: 'failure', peer: W, code: 'peer_not_found', message: 'gone', scope: 'task' },
    actions: ['reject dispatch (unknown_agent)'],
  },
  {
    name: 'a session reset on the task channel heals by resuming: nothing now',
    task: dispatching('sent'),
    input: { type: 'failure', peer: W, code: 'reset', message: 'replaced', scope: 'task' },
    actions: [],
  },
  {
    name: 'any failure of the worker rejects its dispatches in flight',
    task: dispatching('sent'),
    input: { type: 'failure', peer: W, code: 'handshake_failed', message: 'bad key', scope: 'peer' },
    actions: ['reject dispatch (a2a)'],
  },

  // ── the event stream ──
  {
    name: 'the next event is stored, then acknowledged',
    task: { stored: row('running', 3) },
    input: event(4, 'running', { message: 'step 2' }),
    actions: ['store 4 running/-', 'ack 4', 'wake running'],
    after: { state: 'running' },
  },
  {
    name: 'a duplicate is acknowledged again, not stored',
    task: { stored: row('running', 3) },
    input: event(2, 'running'),
    actions: ['ack 2'],
  },
  {
    name: 'a gap asks for a replay',
    task: { stored: row('running', 3) },
    input: event(6, 'running'),
    actions: ['resume after 3'],
    after: { resumeAsked: 3 },
  },
  {
    name: 'one gap asks once',
    task: { stored: row('running', 3), resumeAsked: 3 },
    input: event(7, 'running'),
    actions: [],
  },
  {
    name: 'the missing event closes the gap',
    task: { stored: row('running', 3), resumeAsked: 3 },
    input: event(4, 'running'),
    actions: ['store 4 running/-', 'ack 4', 'wake running'],
    after: { resumeAsked: 'none' },
  },
  {
    name: 'a final event that lists files waits for their check',
    task: { stored: row('running', 3) },
    input: event(4, 'completed', { artifacts: [create(ArtifactInfoSchema, { name: 'a.txt' })] }),
    actions: ['verify 4'],
  },
  {
    name: 'a final event after files arrived unannounced is checked as well',
    task: { stored: row('running', 3) },
    input: event(4, 'failed', {}, true),
    actions: ['verify 4'],
  },
  {
    name: 'verified files complete the task',
    task: { stored: row('running', 3) },
    input: {
      type: 'artifacts_verified',
      record: { seq: 4, state: 'completed', time: 5, origin: 'worker' },
      files: [{ name: 'a.txt', size: 1, sha256: 'x', path: '/a.txt' }],
      problems: [],
    },
    actions: ['store 4 completed/-', 'ack 4', 'wake completed'],
    after: { state: 'completed' },
  },
  {
    name: 'a file that fails its check turns completed into failed/artifact_integrity',
    task: { stored: row('running', 3) },
    input: {
      type: 'artifacts_verified',
      record: { seq: 4, state: 'completed', time: 5, origin: 'worker' },
      files: [],
      problems: ['a.txt: sha256 mismatch'],
    },
    actions: ['store 4 failed/artifact_integrity', 'ack 4', 'wake failed'],
    after: { state: 'failed' },
  },
  {
    name: 'an event of another worker is ignored',
    task: { stored: row('running', 3) },
    input: { ...(event(4, 'running') as Extract<Input, { type: 'event' }>), peer: 'w2' },
    actions: [],
  },
  {
    name: 'an event of a task this planner has no row for: stop it there',
    task: {},
    input: event(3, 'running'),
    actions: ['cancel (the planner has no such task)'],
    after: { cancelSentAt: NOW },
  },
  {
    name: 'a final event of a task this planner has no row for is left unacknowledged',
    task: {},
    input: event(3, 'completed'),
    actions: [],
  },
  {
    name: 'an event after a local cancel: told again to stop, at most once a second',
    task: { stored: row('cancelled', 4, { cancel_pending: true }), cancelSentAt: NOW - 500 },
    input: event(5, 'running'),
    actions: ['ack 5'],
  },
  {
    name: 'an event after a local cancel, a second later: told again',
    task: { stored: row('cancelled', 4, { cancel_pending: true }), cancelSentAt: NOW - 1_500 },
    input: event(5, 'running'),
    actions: ['cancel (cancelled by the planner)', 'ack 5'],
    after: { cancelSentAt: NOW },
  },
  {
    name: 'the worker’s own final event settles a local cancel',
    task: { stored: row('cancelled', 4, { cancel_pending: true }), cancelSentAt: NOW - 500 },
    input: event(5, 'cancelled'),
    actions: ['store cancel_pending=false', 'ack 5'],
    after: { cancel_pending: false, cancelSentAt: 'none' },
  },
  {
    name: 'the worker’s final event confirms a cancel sent while the task ran',
    task: { stored: row('running', 3, { cancel_pending: true }) },
    input: event(4, 'cancelled'),
    actions: ['store 4 cancelled/-', 'ack 4', 'store cancel_pending=false', 'wake cancelled'],
    after: { state: 'cancelled', cancel_pending: false },
  },
  {
    name: 'a replay that brought everything ends the gap',
    task: { stored: row('running', 5), resumeAsked: 3 },
    input: { type: 'replay_complete', peer: W, lastSeq: 5 },
    actions: [],
    after: { resumeAsked: 'none' },
  },
  {
    name: 'a replay that lost some asks once more',
    task: { stored: row('running', 4), resumeAsked: 3 },
    input: { type: 'replay_complete', peer: W, lastSeq: 6 },
    actions: ['resume after 4'],
    after: { resumeAsked: 4 },
  },

  // ── the planner's own decisions ──
  {
    name: 'timeout: the worker is told, the task fails here, the cancel is kept',
    task: { stored: row('running', 3) },
    input: { type: 'timeout', message: 'no final event' },
    actions: ['store cancel_pending=true', 'cancel (timeout)', 'store 4 failed/timeout', 'wake failed'],
    after: { state: 'failed', cancel_pending: true },
  },
  {
    name: 'timeout of an adopted dispatch: it fails without a cancel kept',
    task: dispatching('adopted'),
    input: { type: 'timeout', message: 'no final event' },
    actions: ['cancel (timeout)', 'store 1 failed/timeout', 'wake failed'],
    after: { state: 'failed', cancel_pending: false },
  },
  {
    name: 'a timeout after the end does nothing',
    task: { stored: row('completed', 5) },
    input: { type: 'timeout', message: 'late' },
    actions: [],
  },
  {
    name: 'a lost worker fails its open task, the cancel kept for its return',
    task: { stored: row('waiting_input', 3, { pendingSeq: 3 }) },
    input: lost,
    actions: ['store cancel_pending=true', 'store 4 failed/worker_lost', 'wake failed'],
    after: { state: 'failed', cancel_pending: true },
  },
  {
    name: 'a lost worker: a cancel it never confirmed is given up',
    task: { stored: row('cancelled', 4, { cancel_pending: true }) },
    input: lost,
    actions: ['store cancel_pending=false'],
    after: { cancel_pending: false },
  },
  {
    name: 'a local cancel ends the task here and keeps the Cancel',
    task: { stored: row('running', 3) },
    input: { type: 'local_cancel', note: 'the relay is unreachable' },
    actions: ['store cancel_pending=true', 'store 4 cancelled/cancelled', 'wake cancelled'],
    after: { state: 'cancelled', cancel_pending: true },
  },
  {
    name: 'an e2ee violation on the task channel fails it',
    task: { stored: row('running', 3) },
    input: { type: 'failure', peer: W, code: 'e2ee_violation', message: 'bad tag', scope: 'task' },
    actions: ['store 4 failed/e2ee_violation', 'wake failed'],
    after: { state: 'failed' },
  },
  {
    name: 'a worker that no longer knows an open task: it fails as worker_lost',
    task: { stored: row('running', 3) },
    input: { type: 'refused', peer: W, reason: 'unknown_task', message: 'restarted' },
    actions: ['store 4 failed/worker_lost', 'wake failed'],
    after: { state: 'failed' },
  },
  {
    name: 'a worker that no longer knows a cancelled task: nothing left to stop',
    task: { stored: row('cancelled', 4, { cancel_pending: true }) },
    input: { type: 'refused', peer: W, reason: 'unknown_task', message: '' },
    actions: ['store cancel_pending=false'],
    after: { cancel_pending: false },
  },

  // ── answers and recovery ──
  {
    name: 'an answer is stored before it is sent',
    task: { stored: row('waiting_input', 3, { pendingSeq: 3 }) },
    input: { type: 'answer', seq: 3, answer: ANSWER },
    actions: ['store answer to 3'],
  },
  {
    name: 'recover resumes an open task and resends the answer it has not moved past',
    task: { stored: row('waiting_input', 3, { pendingSeq: 3, answered_seq: 3, answer: ANSWER }) },
    input: { type: 'recover', peer: W, why: 'resync' },
    actions: ['resume after 3', 'resend answer to 3'],
  },
  {
    name: 'the periodic check resumes only',
    task: { stored: row('waiting_input', 3, { pendingSeq: 3, answered_seq: 3, answer: ANSWER }) },
    input: { type: 'recover', peer: W, why: 'check' },
    actions: ['resume after 3'],
  },
  {
    name: 'recover resends a cancel the worker has not confirmed',
    task: { stored: row('cancelled', 4, { cancel_pending: true }) },
    input: { type: 'recover', peer: W, why: 'back' },
    actions: ['cancel (cancelled by the planner)'],
    after: { cancelSentAt: NOW },
  },
  {
    name: 'recover leaves a settled task alone',
    task: { stored: row('completed', 5) },
    input: { type: 'recover', peer: W, why: 'connected' },
    actions: [],
  },
];

describe('task step - transitions', () => {
  it.each(TABLE)('$name', (r) => {
    const { task, actions } = step(r.task, r.input, NOW);
    expect(summary(actions)).toEqual(r.actions);
    const then = r.after ?? {};
    if ('state' in then) {
      if (then.state === 'gone') expect(task.stored).toBeUndefined();
      else expect(task.stored?.snapshot.state).toBe(then.state);
    }
    if (then.cancel_pending !== undefined) expect(task.stored?.cancel_pending).toBe(then.cancel_pending);
    if (then.dispatch) expect(task.stored?.dispatch).toBe(then.dispatch);
    if (then.resumeAsked !== undefined)
      expect(task.resumeAsked).toBe(then.resumeAsked === 'none' ? undefined : then.resumeAsked);
    if (then.cancelSentAt !== undefined)
      expect(task.cancelSentAt).toBe(then.cancelSentAt === 'none' ? undefined : then.cancelSentAt);
  });

  it('is pure: the input task is left as it was', () => {
    const task: Task = { stored: row('running', 3, { cancel_pending: true }) };
    const copy = structuredClone(task);
    step(task, event(4, 'cancelled'), NOW);
    expect(task).toEqual(copy);
  });
});

describe('task step - the store holds what step predicts', () => {
  it('through a withdrawn dispatch taken late, a question, an answer and a timeout, and after replay', () => {
    const dir = tempDir('step-store');
    const path = join(dir, 'tasks.db');
    let store = new TaskStore(path);
    let task: Task = {};
    const run = (input: Input, now = NOW) => {
      const r = step(task, input, now);
      for (const a of r.actions) if (a.type === 'store') writeChange(store, 't1', a.change);
      task = r.task;
      expect(store.get('t1')).toEqual(task.stored);
      return summary(r.actions);
    };
    run({
      type: 'dispatch',
      row: { task_id: 't1', agent_id: W, objective: 'do it', created_at: 1_000, request: { timeout_ms: 5 } },
    });
    run({ type: 'dispatch_failed', neverDelivered: false, message: 'no answer' });
    run(event(1, 'accepted', { timeUnixMs: 2_000n }));
    run(event(2, 'waiting_input', { timeUnixMs: 3_000n, question: 'which env?', requestedSchemaJson: '{}' }));
    run({ type: 'answer', seq: 2, answer: ANSWER });
    expect(run({ type: 'recover', peer: W, why: 'resync' }, NOW + 5_000)).toEqual([
      'resume after 2',
      'cancel (cancelled by the planner)',
      'resend answer to 2',
    ]);
    run({ type: 'timeout', message: 'no final event' }, NOW + 6_000);
    expect(task.stored?.snapshot).toMatchObject({ state: 'failed', reason: 'timeout', last_seq: 3 });
    store.close();
    // A restarted planner: replay rebuilds the snapshot from the events, the columns keep the rest.
    store = new TaskStore(path);
    store.replay();
    expect(store.get('t1')).toEqual(task.stored);
    store.close();
  });

  it('a dispatch of an earlier run is adopted at start, in the store too', () => {
    const store = new TaskStore(join(tempDir('step-adopt'), 'tasks.db'));
    let task: Task = {};
    for (const input of [
      {
        type: 'dispatch',
        row: { task_id: 't1', agent_id: W, objective: 'x', created_at: 1, request: {} },
      },
      { type: 'planner_started' },
    ] as Input[]) {
      const r = step(task, input, NOW);
      for (const a of r.actions) if (a.type === 'store') writeChange(store, 't1', a.change);
      task = r.task;
    }
    expect(store.get('t1')?.dispatch).toBe('adopted');
    expect(store.get('t1')).toEqual(task.stored);
    store.close();
  });
});
