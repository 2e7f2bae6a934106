/**
 * @module The planner's durable task store: SQLite in `<state-dir>/tasks.db`, one snapshot row per task
 * and its numbered events. Every event is written (in one transaction with its snapshot) before any tool
 * reports it, and is on disk ({@link TaskStore.synced}) before the worker is acknowledged; a second copy
 * of a seq is dropped by the primary key. A task's row exists from the moment it is dispatched (state NULL until the worker's
 * `accepted`), and answers and cancels are kept until the worker confirms them, so a restarted planner
 * can finish what the last one started.
 */
import { closeSync, fdatasync, openSync } from 'node:fs';
import { promisify } from 'node:util';
import Database from 'better-sqlite3';
import {
  type ArtifactRecord,
  applyEvent,
  type DispatchPhase,
  newSnapshot,
  type PendingQuestion,
  type TaskEventRecord,
  type TaskSnapshot,
  type TaskStateName,
} from './task-state.js';

/** What the planner asked for, kept with the task. */
export interface TaskRequest {
  context?: Record<string, unknown>;
  constraints?: Record<string, unknown>;
  timeout_ms?: number;
  input_files?: { name: string; size: number; sha256: string }[];
}

/** An answer given with respond_to_worker, kept until the worker moves past its question. */
export interface QueuedAnswer {
  content_json: string;
  action: string;
  /** Local paths, resolved again when the answer is sent again. */
  files: string[];
}

export interface StoredTask {
  snapshot: TaskSnapshot;
  request: TaskRequest;
  /** Seq of the `waiting_input` event this planner answered, if any. */
  answered_seq: number;
  /** The answer to `answered_seq`, resent after a reconnect until an event of the worker follows it. */
  answer?: QueuedAnswer;
  /** cancel_task ended the task here before the worker confirmed: the Cancel is resent until it does. */
  cancel_pending: boolean;
  /** Where the dispatch stands; read while the task has no event yet (state undefined). */
  dispatch?: DispatchPhase;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS tasks (
  task_id        TEXT PRIMARY KEY,
  agent_id       TEXT NOT NULL,
  state          TEXT,
  objective      TEXT NOT NULL,
  request_json   TEXT NOT NULL,
  created_at     INTEGER NOT NULL,
  updated_at     INTEGER NOT NULL,
  last_seq       INTEGER NOT NULL DEFAULT 0,
  pending_json   TEXT,
  result_json    TEXT,
  artifacts_json TEXT NOT NULL DEFAULT '[]',
  reason         TEXT,
  message        TEXT,
  answered_seq   INTEGER NOT NULL DEFAULT 0,
  answer_json    TEXT,
  cancel_pending INTEGER NOT NULL DEFAULT 0,
  delivered      TEXT,
  dispatch       TEXT
);
CREATE INDEX IF NOT EXISTS tasks_state ON tasks (state, updated_at);
CREATE TABLE IF NOT EXISTS events (
  task_id TEXT NOT NULL,
  seq     INTEGER NOT NULL,
  state   TEXT NOT NULL,
  time    INTEGER NOT NULL,
  json    TEXT NOT NULL,
  PRIMARY KEY (task_id, seq)
);
`;

/** Tasks not in a terminal state, oldest first. */
const ACTIVE_SQL = `SELECT * FROM tasks WHERE state IS NULL OR state NOT IN ('completed', 'failed', 'cancelled')
  ORDER BY created_at`;

interface TaskRow {
  task_id: string;
  agent_id: string;
  state: string | null;
  objective: string;
  request_json: string;
  created_at: number;
  updated_at: number;
  last_seq: number;
  pending_json: string | null;
  result_json: string | null;
  artifacts_json: string;
  reason: string | null;
  message: string | null;
  answered_seq: number;
  answer_json: string | null;
  cancel_pending: number;
  delivered: string | null;
  dispatch: string | null;
}

/** Columns added after the first release, with their definitions, for stores created before them. */
const ADDED_COLUMNS: Record<string, string> = {
  answer_json: 'TEXT',
  cancel_pending: 'INTEGER NOT NULL DEFAULT 0',
  delivered: 'TEXT',
  dispatch: 'TEXT',
};

/**
 * The wait_for_tasks event a task's row stands for now: `final` once terminal, `waiting_input:<seq>`
 * for each question (a second question is a new event). SQL, so the store picks the undelivered ones.
 */
const EVENT_KEY = `CASE WHEN state = 'waiting_input' THEN 'waiting_input:' || json_extract(pending_json, '$.seq')
  ELSE 'final' END`;

const parse = <T>(json: string | null): T | undefined =>
  json === null ? undefined : (JSON.parse(json) as T);

function fromRow(r: TaskRow): StoredTask {
  const snapshot: TaskSnapshot = {
    task_id: r.task_id,
    agent_id: r.agent_id,
    objective: r.objective,
    created_at: r.created_at,
    updated_at: r.updated_at,
    state: (r.state ?? undefined) as TaskStateName | undefined,
    last_seq: r.last_seq,
    pending: parse<PendingQuestion>(r.pending_json),
    result: parse<TaskSnapshot['result']>(r.result_json),
    artifacts: parse<ArtifactRecord[]>(r.artifacts_json) ?? [],
    reason: r.reason ?? undefined,
    message: r.message ?? undefined,
  };
  return {
    snapshot,
    request: parse<TaskRequest>(r.request_json) ?? {},
    answered_seq: r.answered_seq,
    answer: parse<QueuedAnswer>(r.answer_json),
    cancel_pending: r.cancel_pending === 1,
    dispatch: (r.dispatch ?? undefined) as DispatchPhase | undefined,
  };
}

const fdatasyncAsync = promisify(fdatasync);
/** WAL flushes run at once at most (libuv's pool has four threads, shared with file I/O). */
const MAX_FLUSHES = 2;
/**
 * SQLite's automatic checkpoint runs inside a commit on the event loop (5-10 ms with its fsync of the
 * database file, every ~80 tasks), which lands on whatever dispatch is being answered. Checkpoints run
 * instead once commits pause for this long...
 */
const CHECKPOINT_IDLE_MS = 250;
/**
 * ...or, under sustained load, after this many flushes (a task makes about five; SQLite's own default of
 * 1,000 pages came every ~80 tasks), which bounds the WAL.
 */
const CHECKPOINT_FLUSHES = 2000;

export class TaskStore {
  readonly #db: Database.Database;
  readonly #stmt;
  /** The write-ahead log, flushed by {@link synced}. */
  readonly #walFd: number;
  /** The flush every {@link synced} caller joins until it starts. */
  #next: Promise<void> | undefined;
  /** Flushes running now (each settles, never rejects). */
  readonly #flushing = new Set<Promise<void>>();
  /** The checkpoint waiting for commits to pause. */
  #checkpointTimer: NodeJS.Timeout | undefined;
  #flushesSinceCheckpoint = 0;

  constructor(path: string) {
    this.#db = new Database(path);
    this.#db.pragma('journal_mode = WAL');
    // A commit is in the WAL before the call returns (a crashed process loses nothing), but does not
    // wait for the disk on the event loop: synced() flushes the WAL off it, once for many commits.
    this.#db.pragma('synchronous = NORMAL');
    this.#db.pragma('wal_autocheckpoint = 0'); // see CHECKPOINT_IDLE_MS
    this.#db.exec(SCHEMA);
    this.#walFd = openSync(`${path}-wal`, 'r');
    const columns = new Set(
      (this.#db.prepare('PRAGMA table_info(tasks)').all() as { name: string }[]).map((c) => c.name),
    );
    for (const [name, def] of Object.entries(ADDED_COLUMNS)) {
      if (!columns.has(name)) this.#db.exec(`ALTER TABLE tasks ADD COLUMN ${name} ${def}`);
    }
    // Tasks that ended before wait_for_tasks existed were seen through get_task_status: not news.
    if (!columns.has('delivered')) {
      this.#db.exec(
        "UPDATE tasks SET delivered = 'final' WHERE state IN ('completed', 'failed', 'cancelled')",
      );
    }
    // Dispatch rows of a store without phases: a withdrawn one had its cancel pending.
    if (!columns.has('dispatch')) {
      this.#db.exec(
        "UPDATE tasks SET dispatch = CASE cancel_pending WHEN 1 THEN 'withdrawn' ELSE 'adopted' END WHERE state IS NULL",
      );
    }
    const db = this.#db;
    this.#stmt = {
      get: db.prepare<[string], TaskRow>('SELECT * FROM tasks WHERE task_id = ?'),
      insertTask: db.prepare(
        `INSERT OR IGNORE INTO tasks (task_id, agent_id, state, objective, request_json, created_at, updated_at, dispatch)
         VALUES (@task_id, @agent_id, NULL, @objective, @request_json, @created_at, @created_at, 'sent')`,
      ),
      removeUnstarted: db.prepare('DELETE FROM tasks WHERE task_id = ? AND state IS NULL AND last_seq = 0'),
      setAnswer: db.prepare('UPDATE tasks SET answered_seq = ?, answer_json = ? WHERE task_id = ?'),
      setCancelPending: db.prepare('UPDATE tasks SET cancel_pending = ? WHERE task_id = ?'),
      setDispatch: db.prepare('UPDATE tasks SET dispatch = ? WHERE task_id = ?'),
      owed: db.prepare<[], TaskRow>(
        `SELECT * FROM tasks WHERE state IS NULL OR state NOT IN ('completed', 'failed', 'cancelled')
           OR cancel_pending = 1 ORDER BY created_at`,
      ),
      updateSnapshot: db.prepare(
        `UPDATE tasks SET state = @state, updated_at = @updated_at, last_seq = @last_seq,
           pending_json = @pending_json, result_json = @result_json, artifacts_json = @artifacts_json,
           reason = @reason, message = @message
         WHERE task_id = @task_id`,
      ),
      insertEvent: db.prepare(
        'INSERT OR IGNORE INTO events (task_id, seq, state, time, json) VALUES (?, ?, ?, ?, ?)',
      ),
      events: db.prepare<[string, number, number], { json: string }>(
        'SELECT json FROM events WHERE task_id = ? AND seq > ? ORDER BY seq LIMIT ?',
      ),
      allEvents: db.prepare<[string], { json: string }>(
        'SELECT json FROM events WHERE task_id = ? ORDER BY seq',
      ),
      active: db.prepare<[], TaskRow>(ACTIVE_SQL),
      recent: db.prepare<[number], TaskRow>('SELECT * FROM tasks ORDER BY updated_at DESC LIMIT ?'),
      ids: db.prepare<[], { task_id: string }>('SELECT task_id FROM tasks'),
      // A question this planner already answered is no longer news either.
      undelivered: db.prepare<[], TaskRow>(
        `SELECT * FROM tasks WHERE state IN ('waiting_input', 'completed', 'failed', 'cancelled')
           AND COALESCE(delivered, '') != ${EVENT_KEY}
           AND NOT (state = 'waiting_input' AND answered_seq = json_extract(pending_json, '$.seq'))
         ORDER BY updated_at`,
      ),
      setDelivered: db.prepare(`UPDATE tasks SET delivered = ${EVENT_KEY} WHERE task_id = ?`),
    };
  }

  get(taskId: string): StoredTask | undefined {
    const row = this.#stmt.get.get(taskId);
    return row && fromRow(row);
  }

  /**
   * Records a task being dispatched, before its TaskStart goes out (state NULL, phase `sent`): the id is
   * taken, and a planner restarted before the worker's answer still knows to ask for it.
   */
  begin(t: {
    task_id: string;
    agent_id: string;
    objective: string;
    created_at: number;
    request: TaskRequest;
  }): void {
    this.#stmt.insertTask.run({
      task_id: t.task_id,
      agent_id: t.agent_id,
      objective: t.objective,
      request_json: JSON.stringify(t.request),
      created_at: t.created_at,
    });
  }

  /** Forgets a dispatch the worker never accepted (refused, timed out, never arrived). */
  remove(taskId: string): void {
    this.#stmt.removeUnstarted.run(taskId);
  }

  /**
   * Stores a task's first event (creating its row unless {@link begin} did), atomically. Returns
   * undefined when the seq was already stored.
   */
  create(
    t: { task_id: string; agent_id: string; objective: string; created_at: number; request: TaskRequest },
    first: TaskEventRecord,
  ): TaskSnapshot | undefined {
    return this.#db.transaction(() => {
      this.begin(t);
      const row = this.#stmt.get.get(t.task_id)!;
      return this.#append(fromRow(row).snapshot, first);
    })();
  }

  /**
   * Stores one event and the snapshot it leads to. Returns the new snapshot, or undefined when the task
   * is unknown or the seq was already stored (a duplicate).
   */
  append(taskId: string, event: TaskEventRecord): TaskSnapshot | undefined {
    return this.#db.transaction(() => {
      const row = this.#stmt.get.get(taskId);
      return row ? this.#append(fromRow(row).snapshot, event) : undefined;
    })();
  }

  #append(current: TaskSnapshot, event: TaskEventRecord): TaskSnapshot | undefined {
    const inserted = this.#stmt.insertEvent.run(
      current.task_id,
      event.seq,
      event.state,
      event.time,
      JSON.stringify(event),
    );
    if (inserted.changes === 0) return undefined;
    const next = applyEvent(current, event);
    this.#writeSnapshot(next);
    return next;
  }

  #writeSnapshot(s: TaskSnapshot): void {
    this.#stmt.updateSnapshot.run({
      task_id: s.task_id,
      state: s.state ?? null,
      updated_at: s.updated_at,
      last_seq: s.last_seq,
      pending_json: s.pending ? JSON.stringify(s.pending) : null,
      result_json: s.result ? JSON.stringify(s.result) : null,
      artifacts_json: JSON.stringify(s.artifacts),
      reason: s.reason ?? null,
      message: s.message ?? null,
    });
  }

  /** Events after `afterSeq`, oldest first, at most `limit`. */
  events(taskId: string, afterSeq = 0, limit = 1000): TaskEventRecord[] {
    return this.#stmt.events.all(taskId, afterSeq, limit).map((r) => JSON.parse(r.json) as TaskEventRecord);
  }

  /** Records the answer to the question at `seq`, so it can be sent again until the worker takes it. */
  setAnswer(taskId: string, seq: number, answer: QueuedAnswer): void {
    this.#stmt.setAnswer.run(seq, JSON.stringify(answer), taskId);
  }

  setCancelPending(taskId: string, pending: boolean): void {
    this.#stmt.setCancelPending.run(pending ? 1 : 0, taskId);
  }

  /** Records where a dispatch stands (see {@link DispatchPhase}). */
  setDispatch(taskId: string, phase: DispatchPhase): void {
    this.#stmt.setDispatch.run(phase, taskId);
  }

  /**
   * What is still owed to or by workers: tasks not terminal (being dispatched included), and tasks
   * cancelled here whose worker has not confirmed. Oldest first.
   */
  owed(): StoredTask[] {
    return this.#stmt.owed.all().map(fromRow);
  }

  /**
   * Takes the wait_for_tasks events not delivered yet (a task that ended, or asks a question), among
   * `taskIds` (all when undefined) and `states`, and marks them delivered in the same transaction: each
   * is returned once, whoever asks. Callers wait for {@link synced} before handing them out.
   */
  takeUndelivered(states: ReadonlySet<TaskStateName>, taskIds?: ReadonlySet<string>): StoredTask[] {
    return this.#db.transaction(() => {
      const taken = this.#stmt.undelivered
        .all()
        .filter((r) => states.has(r.state as TaskStateName) && (!taskIds || taskIds.has(r.task_id)));
      for (const r of taken) this.#stmt.setDelivered.run(r.task_id);
      return taken.map(fromRow);
    })();
  }

  /** Tasks not in a terminal state, oldest first. */
  active(): StoredTask[] {
    return this.#stmt.active.all().map(fromRow);
  }

  /** The most recently updated tasks, any state. */
  recent(limit: number): StoredTask[] {
    return this.#stmt.recent.all(limit).map(fromRow);
  }

  /**
   * Rebuilds every snapshot from its events, so the snapshot rows are never the source of truth (a
   * crash between writes, or an older planner version, cannot leave them wrong). Returns the count.
   */
  replay(): number {
    let count = 0;
    this.#db.transaction(() => {
      for (const { task_id } of this.#stmt.ids.all()) {
        const stored = this.get(task_id)!;
        const events = this.#stmt.allEvents.all(task_id).map((r) => JSON.parse(r.json) as TaskEventRecord);
        if (events.length === 0) continue;
        this.#writeSnapshot(events.reduce(applyEvent, newSnapshot(stored.snapshot)));
        count++;
      }
    })();
    return count;
  }

  /**
   * Resolves once every commit made before the call is on disk (survives a power loss): one fdatasync
   * of the WAL on libuv's pool, started at the end of the current turn of the event loop and shared by
   * every caller until it starts (group commit). One already running may have begun before the caller's
   * commit: the new one runs beside it instead of after it (a dispatch that follows the flush of the last
   * task's event waits for one flush, not two), up to {@link MAX_FLUSHES} at a time.
   * The worker is acknowledged, and a dispatch answered, only after it.
   */
  synced(): Promise<void> {
    this.#next ??= new Promise<void>((resolve) => setImmediate(resolve)).then(() => this.#flush());
    return this.#next;
  }

  async #flush(): Promise<void> {
    while (this.#flushing.size >= MAX_FLUSHES) await Promise.race(this.#flushing);
    // From here on a commit needs the next flush: this one may start before it.
    this.#next = undefined;
    const flush = fdatasyncAsync(this.#walFd);
    const ended = flush.then(
      () => {},
      () => {},
    );
    this.#flushing.add(ended);
    void ended.then(() => this.#flushing.delete(ended));
    this.#scheduleCheckpoint();
    return flush;
  }

  /** Every durable commit goes through a flush: the checkpoint follows the last of a burst. */
  #scheduleCheckpoint(): void {
    clearTimeout(this.#checkpointTimer);
    const delay = ++this.#flushesSinceCheckpoint >= CHECKPOINT_FLUSHES ? 0 : CHECKPOINT_IDLE_MS;
    this.#checkpointTimer = setTimeout(() => {
      this.#checkpointTimer = undefined;
      this.#flushesSinceCheckpoint = 0;
      // PASSIVE never waits: it copies every frame no reader (`nfltr orch`) still needs, and the WAL
      // restarts at its head on the next commit (SQLite syncs the WAL before and the database after).
      if (this.#db.open) this.#db.pragma('wal_checkpoint(PASSIVE)');
    }, delay).unref();
  }

  close(): void {
    clearTimeout(this.#checkpointTimer);
    this.#db.close();
    // A flush still running keeps the descriptor until it ends.
    const fd = this.#walFd;
    const close = () => closeSync(fd);
    if (!this.#next && this.#flushing.size === 0) return close();
    void Promise.allSettled([this.#next, ...this.#flushing]).then(close);
  }
}

/** A task not yet terminal, as `nfltr status` lists it. */
export interface ActiveTask {
  task_id: string;
  agent_id: string;
  /** null until the worker accepted it. */
  state: string | null;
  objective: string;
  updated_at: number;
}

/**
 * The tasks of a planner's tasks.db that are not terminal, read-only: a running planner keeps its
 * store open and is not disturbed (WAL readers do not block the writer).
 */
export function readActiveTasks(path: string): ActiveTask[] {
  const db = new Database(path, { readonly: true, fileMustExist: true });
  try {
    return db
      .prepare<[], TaskRow>(ACTIVE_SQL)
      .all()
      .map(({ task_id, agent_id, state, objective, updated_at }) => ({
        task_id,
        agent_id,
        state,
        objective,
        updated_at,
      }));
  } finally {
    db.close();
  }
}

/**
 * A planner's tasks.db opened read-only (`nfltr orch`): a running planner keeps its store open and is
 * not disturbed (WAL readers do not block the writer).
 */
export class TaskStoreReader {
  readonly #db: Database.Database;

  constructor(path: string) {
    this.#db = new Database(path, { readonly: true, fileMustExist: true });
  }

  get(taskId: string): StoredTask | undefined {
    const row = this.#db.prepare<[string], TaskRow>('SELECT * FROM tasks WHERE task_id = ?').get(taskId);
    return row && fromRow(row);
  }

  /** Active tasks oldest first; with `all`, then the `limit` most recently updated others. */
  list(all: boolean, limit = 50): StoredTask[] {
    const active = this.#db.prepare<[], TaskRow>(ACTIVE_SQL).all().map(fromRow);
    if (!all) return active;
    const ended = this.#db
      .prepare<[number], TaskRow>(
        `SELECT * FROM tasks WHERE state IN ('completed', 'failed', 'cancelled') ORDER BY updated_at DESC LIMIT ?`,
      )
      .all(limit)
      .map(fromRow);
    return [...active, ...ended];
  }

  events(taskId: string, afterSeq: number, limit: number): TaskEventRecord[] {
    return this.#db
      .prepare<[string, number, number], { json: string }>(
        'SELECT json FROM events WHERE task_id = ? AND seq > ? ORDER BY seq LIMIT ?',
      )
      .all(taskId, afterSeq, limit)
      .map((r) => JSON.parse(r.json) as TaskEventRecord);
  }

  close(): void {
    this.#db.close();
  }
}
