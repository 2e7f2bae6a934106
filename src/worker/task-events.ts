/**
 * @module One task's numbered events: the worker assigns `seq` gaplessly from 1, keeps the events the
 * planner has not acknowledged in memory, and appends every event to `events.jsonl` in the task folder
 * so that a Resume can be answered after an Ack pruned memory, or after a worker restart.
 */
import { appendFileSync, readFileSync } from 'node:fs';
import { create, fromJsonString, toJsonString } from '@bufbuild/protobuf';
import {
  type ArtifactInfo,
  type TaskEvent,
  TaskEventSchema,
  type TaskStateName,
  TERMINAL_STATES,
  taskStateFromName,
  taskStateName,
} from '../protocol/a2a.js';

/** What a caller gives for an event; the log adds task id, seq and time. */
export interface TaskEventInit {
  state: TaskStateName;
  message?: string;
  reason?: string;
  progress?: number;
  total?: number;
  question?: string;
  requestedSchemaJson?: string;
  resultText?: string;
  structuredJson?: string;
  artifacts?: ArtifactInfo[];
}

export const EVENTS_FILE = 'events.jsonl';

export class TaskEventLog {
  readonly taskId: string;
  readonly #file: string;
  /** Unacknowledged events, in seq order. */
  #events: TaskEvent[] = [];
  #last: TaskEvent | undefined;

  constructor(taskId: string, file: string, history: TaskEvent[] = []) {
    this.taskId = taskId;
    this.#file = file;
    this.#events = history;
    this.#last = history.at(-1);
  }

  /** Reads a task's log written by an earlier run; unreadable lines (a torn last write) are skipped. */
  static load(taskId: string, file: string): TaskEventLog {
    const events: TaskEvent[] = [];
    let text = '';
    try {
      text = readFileSync(file, 'utf8');
    } catch {}
    for (const line of text.split('\n')) {
      if (!line.trim()) continue;
      try {
        const e = fromJsonString(TaskEventSchema, line);
        if (e.seq === BigInt(events.length + 1)) events.push(e);
      } catch {}
    }
    return new TaskEventLog(taskId, file, events);
  }

  get lastSeq(): bigint {
    return this.#last?.seq ?? 0n;
  }

  get lastState(): TaskStateName | undefined {
    return this.#last ? taskStateName(this.#last.state) : undefined;
  }

  get finished(): boolean {
    const s = this.lastState;
    return s !== undefined && TERMINAL_STATES.has(s);
  }

  /** Numbers an event, records it (memory and file) and returns it, ready to send. */
  append(init: TaskEventInit): TaskEvent {
    const { state, ...rest } = init;
    const event = create(TaskEventSchema, {
      timeUnixMs: BigInt(Date.now()),
      ...rest,
      taskId: this.taskId,
      seq: this.lastSeq + 1n,
      state: taskStateFromName(state),
    });
    this.#last = event;
    this.#events.push(event);
    try {
      // Synchronous so that the file order is the seq order whatever happens next.
      appendFileSync(this.#file, `${toJsonString(TaskEventSchema, event)}\n`);
    } catch {
      // The log is for resuming; a full disk must not stop the task itself.
    }
    return event;
  }

  /** Events with seq > `afterSeq`, in order: from memory, or from the file when Ack pruned them. */
  after(afterSeq: bigint): TaskEvent[] {
    if (afterSeq >= this.lastSeq) return [];
    const first = this.#events[0];
    if (first !== undefined && first.seq <= afterSeq + 1n)
      return this.#events.filter((e) => e.seq > afterSeq);
    return TaskEventLog.load(this.taskId, this.#file).#events.filter((e) => e.seq > afterSeq);
  }

  /** The planner has every event up to `seq`; memory can let them go. */
  ack(seq: bigint): void {
    this.#events = this.#events.filter((e) => e.seq > seq);
  }
}
