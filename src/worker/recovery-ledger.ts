/**
 * @module What the worker remembers of its tasks across redials and restarts (docs/durability.md): every
 * task id ever accepted here (ids are never reused), and each task whose events its planner has not all
 * acknowledged, with its event log. It replays a task's events when asked, lets a log go once the final
 * event is acknowledged, offers a final event again to a planner met on a new session, and after a
 * restart reads all of it back from the task folders ({@link recoverTasks}). Sending and timers are
 * injected, so tests drive it in-process; its own I/O is the task folders' `task.json` and event logs.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { create } from '@bufbuild/protobuf';
import type { A2aBody } from '../agent/a2a.js';
import { ReplayCompleteSchema, taskIdProblem } from '../protocol/a2a.js';
import type { Logger } from '../util/log.js';
import { killRecordedExecutor } from './reaper.js';
import { ReplayPacer } from './replay-pacer.js';
import { EVENTS_FILE, TaskEventLog } from './task-events.js';
import { EXECUTOR_PID_FILE } from './task-runner.js';

const TASK_FILE = 'task.json';

/**
 * A task whose events the planner has not all acknowledged: running, finished, or recovered from an
 * earlier run. Replays of one task go out one after another (`chain`).
 */
export interface OwedTask {
  readonly id: string;
  /** The planner that started it: the only peer that may resume, acknowledge or cancel it. */
  readonly owner: string;
  readonly dir: string;
  readonly log: TaskEventLog;
  chain: Promise<void>;
  /** Spaces replays the planner keeps asking for without acknowledging anything. */
  readonly pacer: ReplayPacer;
  /** A replay waiting for its turn; later requests merge into it. */
  queued?: { afterSeq: bigint; why: string };
}

/** What the task folders of earlier runs hold (see {@link recoverTasks}). */
export interface Recovered {
  known: Set<string>;
  owed: Map<string, OwedTask>;
}

export interface LedgerOptions {
  tasksDir: string;
  /** Sends one message on a task's channel to its planner; rejects when the link is gone. */
  send: (peer: string, channel: string, msg: A2aBody) => Promise<void>;
  /** Whether the task still runs here: its log stays until it ended, acknowledged or not. */
  running: (id: string) => boolean;
  logger: Logger;
  /** The clock of replay pacing; Date.now by default. */
  now?: () => number;
  /** Runs a paced replay later; an unref'd setTimeout by default. */
  later?: (ms: number, fn: () => void) => void;
}

export class RecoveryLedger {
  readonly #opts: LedgerOptions;
  readonly #log: Logger;
  readonly #now: () => number;
  readonly #later: (ms: number, fn: () => void) => void;
  /** Every task id ever accepted here (this run and earlier ones): ids are never reused. */
  readonly #known: Set<string>;
  /** Tasks with events not yet acknowledged by their planner, by id. */
  readonly #owed: Map<string, OwedTask>;
  /** Planners heard from since start (or since their last resync): offered their unacknowledged ends. */
  readonly #greeted = new Set<string>();

  constructor(recovered: Recovered, opts: LedgerOptions) {
    this.#opts = opts;
    this.#log = opts.logger;
    this.#now = opts.now ?? Date.now;
    this.#later = opts.later ?? ((ms, fn) => setTimeout(fn, ms).unref());
    this.#known = recovered.known;
    this.#owed = recovered.owed;
  }

  /** Whether task `id` was ever accepted here, delivered or not. */
  isKnown(id: string): boolean {
    return this.#known.has(id);
  }

  /** The task still owed to its planner, whoever that is. */
  get(id: string): OwedTask | undefined {
    return this.#owed.get(id);
  }

  /** The planners owed events: a started worker asks each to resync. */
  owners(): Set<string> {
    return new Set([...this.#owed.values()].map((t) => t.owner));
  }

  /** The task `peer` may resume, acknowledge or cancel; undefined (and logged) for anyone else's. */
  owedTo(peer: string, id: string): OwedTask | undefined {
    const t = this.#owed.get(id);
    if (t && t.owner !== peer) {
      this.#log.warn('message for a task another planner started; dropped', { peer, task: id });
      return undefined;
    }
    return t;
  }

  /** A task accepted now: its folder and `task.json` are written and its id is taken for good. */
  open(id: string, owner: string): string {
    const dir = join(this.#opts.tasksDir, id);
    mkdirSync(dir, { recursive: true });
    writeTaskFile(dir, { task_id: id, peer: owner, accepted_at: new Date().toISOString() });
    this.#known.add(id);
    return dir;
  }

  /** From now on the events in `log` are owed to `owner`, until it acknowledges the final one. */
  owe(id: string, owner: string, log: TaskEventLog): void {
    this.#owed.set(id, owedTask(id, owner, join(this.#opts.tasksDir, id), log));
  }

  /** The task stopped running: its unacknowledged events are read back from its log when asked for. */
  ended(id: string): void {
    const t = this.#owed.get(id);
    if (!t) return;
    t.log.unload();
    if (t.log.delivered) this.#delivered(id);
  }

  /** Any message from `peer`: the first since start (or its last resync) offers it its unacknowledged ends. */
  greet(peer: string): void {
    if (this.#greeted.has(peer)) return;
    this.#greeted.add(peer);
    this.#offerFinished(peer);
  }

  /** A new E2EE session with `peer`: what it may have missed of its ended tasks is offered again. */
  resync(peer: string): void {
    this.#greeted.add(peer);
    this.#offerFinished(peer);
  }

  /** The planner has every event of `t` up to `seq`; an ended task it has all of is delivered. */
  ack(t: OwedTask, seq: bigint): void {
    t.log.ack(seq);
    if (t.log.delivered && !this.#opts.running(t.id)) this.#delivered(t.id);
  }

  /** Sends a finished task's final event again; the planner acknowledges it or resumes from earlier. */
  replayFinal(t: OwedTask, why: string): void {
    this.replay(t, t.log.lastSeq - 1n, why);
  }

  /**
   * Sends the task's events after `afterSeq` in order, then a ReplayComplete. Replays of one task never
   * interleave: a second waits for the first. Requests that come faster than the pacer allows (the
   * planner acknowledges nothing in between) merge into one waiting replay, sent after a growing pause.
   */
  replay(t: OwedTask, afterSeq: bigint, why: string): void {
    if (t.queued) {
      if (afterSeq < t.queued.afterSeq) t.queued.afterSeq = afterSeq;
      return;
    }
    t.queued = { afterSeq, why };
    const waitMs = t.pacer.schedule(this.#now(), t.log.acked);
    const go = () => {
      const q = t.queued;
      t.queued = undefined;
      if (q && this.#owed.get(t.id) === t) t.chain = t.chain.then(() => this.#sendReplay(t, q, waitMs));
    };
    if (waitMs === 0) return go();
    this.#later(waitMs, go);
  }

  async #sendReplay(t: OwedTask, q: { afterSeq: bigint; why: string }, deferredMs: number): Promise<void> {
    const events = t.log.after(q.afterSeq);
    this.#log.info('replaying task events', {
      peer: t.owner,
      task: t.id,
      why: q.why,
      after_seq: String(q.afterSeq),
      count: events.length,
      ...(deferredMs > 0 ? { deferred_ms: deferredMs } : {}),
    });
    try {
      for (const e of events) await this.#opts.send(t.owner, t.id, { case: 'taskEvent', value: e });
      await this.#opts.send(t.owner, t.id, {
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
        this.replayFinal(t, 'final event not acknowledged');
      }
    }
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
}

/**
 * Reads the tasks of earlier runs: every id is known (never reused); tasks whose log is still on disk
 * are owed to their planner. A task that was running when the worker stopped without draining (killed,
 * crashed) gets its final event, `failed` with reason `worker_restarted`; its executor, should it have
 * survived the watchdog, is killed.
 */
export function recoverTasks(tasksDir: string, log: Logger): Recovered {
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
    if (info.peer) owed.set(id, owedTask(id, info.peer, dir, events));
  }
  return { known, owed };
}

function owedTask(id: string, owner: string, dir: string, log: TaskEventLog): OwedTask {
  return { id, owner, dir, log, chain: Promise.resolve(), pacer: new ReplayPacer() };
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
