/**
 * The durable pieces one by one: the planner's store (dispatch rows, queued answers and cancels,
 * migration of an older file), the worker's event log (flushed, acknowledged, dropped), the peer watch
 * (worker_lost timing) and the recorded-executor kill.
 */
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { PeerWatch } from '../../src/planner/peer-watch.js';
import type { TaskEventRecord } from '../../src/planner/task-state.js';
import { TaskStore } from '../../src/planner/task-store.js';
import { killRecordedExecutor, recordExecutorPid } from '../../src/worker/reaper.js';
import { TaskEventLog } from '../../src/worker/task-events.js';
import { eventually, tempDir } from '../helpers/processes.js';
import { alive } from './helpers.js';

const task = (task_id: string) => ({
  task_id,
  agent_id: 'w1',
  objective: 'o',
  created_at: 1_000,
  request: {},
});
const ev = (seq: number, state: TaskEventRecord['state'], extra: Partial<TaskEventRecord> = {}) =>
  ({ seq, state, time: 1_000 + seq, origin: 'worker', ...extra }) as TaskEventRecord;

describe('durability - planner store', () => {
  it('store - a dispatch row exists before acceptance, is adopted by the first event, or removed', () => {
    const store = new TaskStore(join(tempDir(), 'tasks.db'));
    store.begin(task('a'));
    store.begin(task('b'));
    expect(store.get('a')?.snapshot.state).toBeUndefined();
    expect(store.owed().map((t) => t.snapshot.task_id)).toEqual(['a', 'b']);
    expect(store.create(task('a'), ev(1, 'accepted'))?.state).toBe('accepted');
    expect(store.create(task('a'), ev(1, 'accepted'))).toBeUndefined();
    store.remove('b');
    store.remove('a'); // started: kept
    expect(store.get('b')).toBeUndefined();
    expect(store.get('a')?.snapshot.last_seq).toBe(1);
    store.close();
  });

  it('store - answers and cancels are kept until confirmed, and survive a reopen', () => {
    const path = join(tempDir(), 'tasks.db');
    let store = new TaskStore(path);
    store.create(task('q'), ev(1, 'accepted'));
    store.append('q', ev(2, 'waiting_input', { question: 'go?' }));
    store.setAnswer('q', 2, { content_json: '{"answer":"yes"}', action: 'accept', files: ['/tmp/f'] });
    store.create(task('c'), ev(1, 'accepted'));
    store.append('c', { ...ev(2, 'cancelled'), origin: 'planner' });
    store.setCancelPending('c', true);
    store.close();
    store = new TaskStore(path);
    expect(store.get('q')).toMatchObject({
      answered_seq: 2,
      answer: { content_json: '{"answer":"yes"}', action: 'accept', files: ['/tmp/f'] },
      cancel_pending: false,
    });
    // Terminal, but still owed to its worker until it confirms the cancel.
    expect(store.owed().map((t) => t.snapshot.task_id)).toEqual(['q', 'c']);
    store.setCancelPending('c', false);
    expect(store.owed().map((t) => t.snapshot.task_id)).toEqual(['q']);
    store.close();
  });

  it('store - a tasks.db from before these columns is migrated in place', () => {
    const path = join(tempDir(), 'tasks.db');
    const old = new Database(path);
    old.exec(`CREATE TABLE tasks (task_id TEXT PRIMARY KEY, agent_id TEXT NOT NULL, state TEXT,
      objective TEXT NOT NULL, request_json TEXT NOT NULL, created_at INTEGER NOT NULL,
      updated_at INTEGER NOT NULL, last_seq INTEGER NOT NULL DEFAULT 0, pending_json TEXT,
      result_json TEXT, artifacts_json TEXT NOT NULL DEFAULT '[]', reason TEXT, message TEXT,
      answered_seq INTEGER NOT NULL DEFAULT 0)`);
    old
      .prepare(
        `INSERT INTO tasks (task_id, agent_id, state, objective, request_json, created_at, updated_at, last_seq)
         VALUES ('old', 'w1', 'running', 'o', '{}', 1, 1, 3)`,
      )
      .run();
    old.close();
    const store = new TaskStore(path);
    expect(store.get('old')).toMatchObject({ cancel_pending: false, answer: undefined });
    store.setCancelPending('old', true);
    expect(store.get('old')?.cancel_pending).toBe(true);
    store.close();
  });
});

describe('durability - worker event log', () => {
  it('log - every event is on disk when append returns; acknowledged in full, the log is dropped', async () => {
    const file = join(tempDir(), 'events.jsonl');
    const log = new TaskEventLog('t', file);
    log.append({ state: 'accepted' });
    log.append({ state: 'running', message: 'step 1' });
    expect(readFileSync(file, 'utf8').trim().split('\n')).toHaveLength(2);
    log.ack(1n);
    expect(log.after(0n).map((e) => Number(e.seq))).toEqual([1, 2]); // read back from the file
    log.append({ state: 'completed', resultText: 'done' });
    expect(log.finished).toBe(true);
    expect(log.delivered).toBe(false);
    log.unload();
    expect(log.after(1n).map((e) => Number(e.seq))).toEqual([2, 3]);
    log.ack(3n);
    expect(log.delivered).toBe(true);
    await log.drop();
    expect(existsSync(file)).toBe(false);
  });

  it('log - a torn last line is skipped on load, and appending continues the numbering', () => {
    const file = join(tempDir(), 'events.jsonl');
    const log = new TaskEventLog('t', file);
    log.append({ state: 'accepted' });
    log.append({ state: 'running' });
    log.close();
    writeFileSync(file, `${readFileSync(file, 'utf8')}{"taskId":"t","seq":"3","sta`);
    const again = TaskEventLog.load('t', file);
    expect(again.lastSeq).toBe(2n);
    expect(again.append({ state: 'failed', reason: 'worker_restarted' }).seq).toBe(3n);
    expect(TaskEventLog.load('t', file).lastState).toBe('failed');
  });
});

describe('durability - peer watch', () => {
  afterEach(() => vi.useRealTimers());

  it('watch - unreachable for the grace period is lost; being heard, or our own link dropping, resets it', () => {
    vi.useFakeTimers();
    const lost: string[] = [];
    const checks: string[] = [];
    let connected = true;
    const watch = new PeerWatch({
      graceMs: 4_000,
      peers: () => ['a', 'b'],
      check: (p) => checks.push(p),
      lost: (p) => lost.push(p),
      connected: () => connected,
    });
    expect(watch.intervalMs).toBe(1_000);
    watch.start();
    vi.advanceTimersByTime(1_000);
    expect(checks).toEqual(['a', 'b']);
    watch.notFound('a');
    watch.notFound('b');
    vi.advanceTimersByTime(2_000);
    expect(watch.heard('b')).toBe(true);
    expect(watch.heard('b')).toBe(false);
    vi.advanceTimersByTime(2_000);
    expect(lost).toEqual(['a']);
    watch.notFound('b');
    connected = false;
    watch.linkDown();
    vi.advanceTimersByTime(10_000);
    expect(lost).toEqual(['a']);
    expect(watch.isUnreachable('b')).toBe(false);
    watch.stop();
  });

  it('watch - a connected peer silent for silentMs is lost; answering keeps it; a late tick restarts the count', () => {
    vi.useFakeTimers();
    const lost: string[] = [];
    const watch = new PeerWatch({
      graceMs: 30_000,
      silentMs: 15_000,
      peers: () => ['live', 'frozen'],
      check: () => {},
      lost: (p, ms, why) => lost.push(`${p} ${why} ${ms}`),
      connected: () => true,
    });
    expect(watch.intervalMs).toBe(5_000);
    watch.start();
    for (let t = 0; t < 4; t++) {
      vi.advanceTimersByTime(5_000);
      watch.heard('live');
    }
    // Watched from the first tick (5 s): silent at 20 s.
    expect(lost).toEqual(['frozen silent 15000']);
    watch.stop();

    // This planner frozen for 40 s: nobody is judged on that.
    lost.length = 0;
    const late = new PeerWatch({
      graceMs: 30_000,
      peers: () => ['w'],
      check: () => {},
      lost: (p) => lost.push(p),
      connected: () => true,
    });
    late.start();
    vi.advanceTimersByTime(5_000);
    const now = Date.now();
    vi.setSystemTime(now + 40_000);
    vi.advanceTimersByTime(5_000);
    expect(lost).toEqual([]);
    late.stop();
  });
});

describe('durability - recorded executors', () => {
  it('recorded pid - a surviving executor is killed with its group; a reused pid is left alone', async () => {
    const dir = tempDir();
    const child = spawn('sleep', ['30'], { detached: true, stdio: 'ignore' });
    child.unref();
    const pid = child.pid!;
    const file = join(dir, 'executor.pid');
    recordExecutorPid(file, pid);
    const record = JSON.parse(readFileSync(file, 'utf8'));
    writeFileSync(file, JSON.stringify({ ...record, start: 'not-the-same-process' }));
    expect(killRecordedExecutor(file)).toBeUndefined();
    expect(alive(pid)).toBe(true);
    recordExecutorPid(file, pid);
    expect(killRecordedExecutor(file)).toBe(pid);
    await eventually(() => !alive(pid) || child.signalCode === 'SIGKILL', 5_000, 'the executor to die');
    expect(existsSync(file)).toBe(false);
  });
});
