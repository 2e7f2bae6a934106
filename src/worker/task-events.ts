/**
 * @module One task's numbered events: the worker assigns `seq` gaplessly from 1, keeps the events the
 * planner has not acknowledged in memory, and appends every event to `events.jsonl` in the task folder,
 * flushed to disk (fdatasync) before the event is handed to the relay, so that a Resume can be answered
 * after an Ack pruned memory, after a worker restart, or after the machine lost power. Once the planner
 * acknowledges the final event the log is dropped ({@link TaskEventLog.drop}).
 */
import {
  closeSync,
  fdatasyncSync,
  fstatSync,
  fsyncSync,
  openSync,
  readFileSync,
  readSync,
  writeSync,
} from 'node:fs';
import { open, rm } from 'node:fs/promises';
import { dirname } from 'node:path';
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
  /** The highest seq the planner acknowledged (this run; 0 after a restart). */
  #acked = 0n;
  /** Open for appending while the task runs; closed after the final event. */
  #fd: number | undefined;
  /** The folder's entry for the file is on disk (always, for a log written by an earlier run). */
  #dirFlushed: boolean;
  /** That entry's flush off the event loop, started with the file. */
  #dirFlush: Promise<void> | undefined;

  constructor(taskId: string, file: string, history: TaskEvent[] = []) {
    this.taskId = taskId;
    this.#file = file;
    this.#events = history;
    this.#last = history.at(-1);
    this.#dirFlushed = history.length > 0;
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

  get acked(): bigint {
    return this.#acked;
  }

  /** True once the planner acknowledged the final event: nothing is owed to it any more. */
  get delivered(): boolean {
    return this.finished && this.#acked >= this.lastSeq;
  }

  /**
   * Numbers an event, records it (memory and file, flushed unless `flush` is false) and returns it,
   * ready to send. Only `accepted` skips the flush: it is implied by the task folder, and a log that
   * lost it to a power cut gets it back on restart (`recoverTasks`); the next event's flush covers it.
   */
  append(init: TaskEventInit, flush = true): TaskEvent {
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
    this.#write(`${toJsonString(TaskEventSchema, event)}\n`, flush);
    if (this.finished) this.close();
    return event;
  }

  /**
   * Synchronous, and flushed before the caller sends the event: the file order is the seq order, and
   * an event the planner may have seen is never missing from the log after a crash.
   */
  #write(line: string, flush: boolean): void {
    try {
      if (this.#fd === undefined) {
        this.#fd = openSync(this.#file, 'a+', 0o600);
        // A crash mid-write leaves a torn last line: end it, or the next event would be glued to it.
        if (!endsWithNewline(this.#fd)) line = `\n${line}`;
        // The folder's entry goes to disk off the event loop while the task runs; the first flushed
        // event does it itself only if that has not ended yet.
        if (!this.#dirFlushed) {
          this.#dirFlush = fsyncDirAsync(dirname(this.#file)).then((ok) => {
            if (ok) this.#dirFlushed = true;
          });
        }
      }
      writeSync(this.#fd, line);
      if (!flush) return;
      // A new file's directory entry must reach the disk too.
      if (!this.#dirFlushed) fsyncDir(dirname(this.#file));
      this.#dirFlushed = true;
      fdatasyncSync(this.#fd);
    } catch {
      // The log is for resuming; a full disk must not stop the task itself.
    }
  }

  /**
   * Resolves once the folder's flush started with the file has ended: a caller that can wait lets its
   * next flushed event skip doing it again on the event loop.
   */
  folderFlushed(): Promise<void> {
    return this.#dirFlush ?? Promise.resolve();
  }

  /** Closes the file (it stays on disk); a later append reopens it. */
  close(): void {
    if (this.#fd === undefined) return;
    try {
      closeSync(this.#fd);
    } catch {}
    this.#fd = undefined;
  }

  /** Lets the unacknowledged events go from memory; {@link after} reads them back from the file. */
  unload(): void {
    this.#events = [];
  }

  /**
   * The task's events are all delivered: the log leaves memory and disk, removed off the event loop
   * (an unlink waits for the file system's journal; `task.json` already says the task was delivered,
   * so a log a crash left behind is never read).
   */
  drop(): Promise<void> {
    this.close();
    this.#events = [];
    return rm(this.#file, { force: true }).catch(() => {});
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
    if (seq > this.#acked) this.#acked = seq > this.lastSeq ? this.lastSeq : seq;
    this.#events = this.#events.filter((e) => e.seq > seq);
  }
}

function endsWithNewline(fd: number): boolean {
  const size = fstatSync(fd).size;
  if (size === 0) return true;
  const last = Buffer.alloc(1);
  readSync(fd, last, 0, 1, size - 1);
  return last[0] === 0x0a;
}

/** {@link fsyncDir} on libuv's pool; false if it could not. */
async function fsyncDirAsync(dir: string): Promise<boolean> {
  try {
    const handle = await open(dir, 'r');
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
    return true;
  } catch {
    return false;
  }
}

function fsyncDir(dir: string): void {
  let fd: number | undefined;
  try {
    fd = openSync(dir, 'r');
    fsyncSync(fd);
  } catch {
    // Not every platform can open a directory; the file's own data is flushed regardless.
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}
