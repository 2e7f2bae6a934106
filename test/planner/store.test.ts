import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it, vi } from 'vitest';
import {
  acquireStateLock,
  answerProblem,
  applyEvent,
  generateTaskId,
  LockError,
  matchesSelector,
  newSnapshot,
  parseSelector,
  type TaskEventRecord,
  TaskStore,
} from '../../src/planner/index.js';
import { taskIdProblem } from '../../src/protocol/a2a.js';
import { tempDir } from '../helpers/processes.js';

const ev = (
  seq: number,
  state: TaskEventRecord['state'],
  extra: Partial<TaskEventRecord> = {},
): TaskEventRecord => ({
  seq,
  state,
  time: 1_000 + seq,
  origin: 'worker',
  ...extra,
});

const base = () => newSnapshot({ task_id: 't1', agent_id: 'w1', objective: 'do it', created_at: 1_000 });

describe('task state - applyEvent', () => {
  it('follows accepted → running → waiting_input → running → completed', () => {
    let s = base();
    s = applyEvent(s, ev(1, 'accepted'));
    expect(s).toMatchObject({ state: 'accepted', last_seq: 1 });
    s = applyEvent(s, ev(2, 'running', { message: 'step 1' }));
    s = applyEvent(s, ev(3, 'waiting_input', { question: 'which env?', schema: { type: 'object' } }));
    expect(s.pending).toEqual({ seq: 3, question: 'which env?', schema: { type: 'object' } });
    s = applyEvent(s, ev(4, 'running'));
    expect(s.pending).toBeUndefined();
    const artifacts = [{ name: 'a.txt', size: 1, sha256: 'x'.repeat(64), path: '/tmp/a.txt' }];
    s = applyEvent(s, ev(5, 'completed', { result_text: 'done', structured: { ok: true }, artifacts }));
    expect(s).toMatchObject({
      state: 'completed',
      last_seq: 5,
      result: { text: 'done', structured: { ok: true } },
    });
    expect(s.artifacts).toEqual(artifacts);
  });

  it('terminal states absorb later events; accepted cannot come back', () => {
    let s = applyEvent(applyEvent(base(), ev(1, 'accepted')), ev(2, 'running'));
    expect(applyEvent(s, ev(3, 'accepted')).state).toBe('running');
    s = applyEvent(s, ev(3, 'failed', { reason: 'timeout', message: 'too slow' }));
    expect(s).toMatchObject({ state: 'failed', reason: 'timeout', message: 'too slow' });
    const after = applyEvent(s, ev(4, 'completed', { result_text: 'late' }));
    expect(after.state).toBe('failed');
    expect(after.result).toBeUndefined();
  });
});

describe('task store', () => {
  it('drops a duplicate seq, keeps events in order, and replays snapshots from events', () => {
    const dir = tempDir();
    const store = new TaskStore(join(dir, 'tasks.db'));
    const t = {
      task_id: 't1',
      agent_id: 'w1',
      objective: 'x',
      created_at: 1_000,
      request: { timeout_ms: 5 },
    };
    store.create(t, ev(1, 'accepted'));
    expect(store.get('t1')).toBeDefined();
    expect(store.append('t1', ev(2, 'running', { message: 'a' }))?.state).toBe('running');
    expect(store.append('t1', ev(2, 'running', { message: 'dup' }))).toBeUndefined();
    expect(store.append('nope', ev(1, 'accepted'))).toBeUndefined();
    store.append('t1', ev(3, 'waiting_input', { question: 'q?' }));
    expect(store.events('t1').map((e) => [e.seq, e.message])).toEqual([
      [1, undefined],
      [2, 'a'],
      [3, undefined],
    ]);
    expect(store.events('t1', 2).map((e) => e.seq)).toEqual([3]);
    expect(store.active().map((x) => x.snapshot.task_id)).toEqual(['t1']);
    expect(store.get('t1')?.request).toEqual({ timeout_ms: 5 });
    store.setAnswer('t1', 3, { content_json: '{}', action: 'accept', files: [] });
    store.close();

    // A snapshot row that went wrong is rebuilt from the events.
    const raw = new Database(join(dir, 'tasks.db'));
    raw.prepare("UPDATE tasks SET state = 'completed', pending_json = NULL WHERE task_id = 't1'").run();
    raw.close();
    const reopened = new TaskStore(join(dir, 'tasks.db'));
    expect(reopened.get('t1')?.snapshot.state).toBe('completed');
    expect(reopened.replay()).toBe(1);
    expect(reopened.get('t1')?.snapshot).toMatchObject({
      state: 'waiting_input',
      pending: { question: 'q?' },
    });
    expect(reopened.get('t1')?.answered_seq).toBe(3);
    reopened.append('t1', ev(4, 'completed', { result_text: 'ok' }));
    expect(reopened.active()).toEqual([]);
    expect(reopened.recent(10)[0]?.snapshot).toMatchObject({ state: 'completed', last_seq: 4 });
    reopened.close();
  });

  it('synced() flushes once for every commit made meanwhile, and close() lets a flush in flight end', async () => {
    const dir = tempDir();
    const store = new TaskStore(join(dir, 'tasks.db'));
    const task = (id: string) => ({
      task_id: id,
      agent_id: 'w1',
      objective: 'x',
      created_at: 1,
      request: {},
    });
    store.create(task('a'), ev(1, 'accepted'));
    const first = store.synced();
    store.create(task('b'), ev(1, 'accepted'));
    // The flush starts once this turn of the event loop ends: b, committed before that, shares it.
    expect(store.synced()).toBe(first);
    await new Promise((resolve) => setImmediate(resolve));
    store.create(task('c'), ev(1, 'accepted'));
    // c was committed after the first flush began: it needs another, which serves every caller meanwhile.
    const second = store.synced();
    expect(second).not.toBe(first);
    expect(store.synced()).toBe(second);
    await Promise.all([first, second]);
    const third = store.synced();
    store.close();
    await third;
    const reopened = new TaskStore(join(dir, 'tasks.db'));
    expect(['a', 'b', 'c'].map((id) => reopened.get(id) !== undefined)).toEqual([true, true, true]);
    reopened.close();
  });

  it('checkpoints once commits pause, not inside a commit (SQLite would at 1,000 pages)', async () => {
    const dir = tempDir();
    const path = join(dir, 'tasks.db');
    const store = new TaskStore(path);
    const before = statSync(path).size;
    // ~100 pages: far below SQLite's automatic checkpoint, so only the store's own moves them to the file.
    for (let i = 0; i < 100; i++) {
      store.begin({
        task_id: `t${i}`,
        agent_id: 'w1',
        objective: 'x'.repeat(3000),
        created_at: i,
        request: {},
      });
    }
    await store.synced();
    expect(statSync(path).size).toBe(before); // still only in the WAL
    await vi.waitFor(() => expect(statSync(path).size).toBeGreaterThan(before + 100 * 3000), {
      timeout: 5_000,
    });
    store.close();
  });
});

describe('wait_for_tasks events', () => {
  const task = (id: string) => ({
    task_id: id,
    agent_id: 'w1',
    objective: 'x',
    created_at: 1_000,
    request: {},
  });
  const all = new Set(['waiting_input', 'completed', 'failed', 'cancelled'] as const);

  it('each event is taken once, and stays taken across a reopen (a restarted planner)', () => {
    const path = join(tempDir(), 'tasks.db');
    let store = new TaskStore(path);
    store.create(task('a'), ev(1, 'accepted'));
    store.create(task('b'), ev(1, 'accepted'));
    store.append('a', ev(2, 'waiting_input', { question: 'q?', schema: { type: 'object' } }));
    expect(store.takeUndelivered(all).map((t) => t.snapshot.task_id)).toEqual(['a']);
    expect(store.takeUndelivered(all)).toEqual([]);
    store.append('a', ev(3, 'running'));
    store.append('a', ev(4, 'waiting_input', { question: 'again?' })); // a second question is news
    store.append('b', ev(2, 'completed'));
    // Filters leave what they do not take for later.
    expect(store.takeUndelivered(new Set(['completed'] as const), new Set(['a']))).toEqual([]);
    expect(store.takeUndelivered(all, new Set(['b'])).map((t) => t.snapshot.state)).toEqual(['completed']);
    store.close();
    store = new TaskStore(path);
    expect(store.takeUndelivered(all).map((t) => [t.snapshot.task_id, t.snapshot.pending?.seq])).toEqual([
      ['a', 4],
    ]);
    store.append('a', ev(5, 'failed'));
    store.close();
    store = new TaskStore(path);
    expect(store.takeUndelivered(all).map((t) => t.snapshot.state)).toEqual(['failed']);
    expect(store.takeUndelivered(all)).toEqual([]);
    store.close();
  });

  it('an answered question is not news; tasks that ended before the column existed are not either', () => {
    const path = join(tempDir(), 'tasks.db');
    let store = new TaskStore(path);
    store.create(task('old'), ev(1, 'accepted'));
    store.append('old', ev(2, 'completed'));
    store.create(task('q'), ev(1, 'accepted'));
    store.append('q', ev(2, 'waiting_input', { question: 'q?' }));
    store.setAnswer('q', 2, { content_json: '{}', action: 'accept', files: [] });
    store.close();
    const db = new Database(path);
    db.exec('ALTER TABLE tasks DROP COLUMN delivered'); // a store written by an older planner
    db.close();
    store = new TaskStore(path);
    expect(store.takeUndelivered(all)).toEqual([]);
    store.close();
  });
});

describe('answers - checked against the question schema', () => {
  const schema = {
    type: 'object',
    properties: { approve: { type: 'boolean' }, env: { type: 'string', enum: ['staging', 'prod'] } },
    required: ['approve'],
  };
  it('names each wrong field and the type it wants', () => {
    expect(answerProblem({ approve: true, env: 'prod' }, schema)).toBeUndefined();
    expect(answerProblem({ approve: 'yes' }, schema)).toBe('approve must be boolean (got string "yes")');
    expect(answerProblem({ env: 'qa' }, schema)).toBe(
      'approve is required (boolean); env must be one of ["staging","prod"] (got string "qa")',
    );
    expect(answerProblem({ approve: 1 }, { ...schema, additionalProperties: false })).toBe(
      'approve must be boolean (got number 1)',
    );
    expect(answerProblem({ approve: true, x: 1 }, { ...schema, additionalProperties: false })).toBe(
      'unknown field "x" (the schema has approve, env)',
    );
  });
  it('lets anything through when the question set no schema', () => {
    expect(answerProblem({ anything: 1 }, null)).toBeUndefined();
  });
});

describe('selectors', () => {
  it('parses k=v and k!=v terms and matches labels', () => {
    const terms = parseSelector('zone=eu, gpu!=none');
    expect(terms).toEqual([
      { key: 'zone', op: '=', value: 'eu' },
      { key: 'gpu', op: '!=', value: 'none' },
    ]);
    expect(matchesSelector({ zone: 'eu' }, terms)).toBe(true);
    expect(matchesSelector({ zone: 'eu', gpu: 'none' }, terms)).toBe(false);
    expect(matchesSelector({ zone: 'us' }, terms)).toBe(false);
    expect(parseSelector('')).toEqual([]);
  });

  it('refuses a malformed term, quoting it', () => {
    expect(() => parseSelector('zone=eu,gpu')).toThrow(/bad selector term "gpu"/);
    expect(() => parseSelector('=x')).toThrow(
      /bad selector term "=x".*label key "" must be 1-128 characters/,
    );
    expect(() => parseSelector('zone=eu,')).toThrow(/bad selector term ""/);
    expect(() => parseSelector('zone==eu')).toThrow(/"zone==eu".*the value "=eu" has a second = in it/);
    expect(() => parseSelector('zo ne=eu')).toThrow(/label key "zo ne" must be/);
    expect(() => parseSelector('gpu')).toThrow(/"gpu".*no = or != in it/);
  });
});

describe('task ids', () => {
  it('generates valid unique ids and refuses bad ones', () => {
    const a = generateTaskId();
    expect(a).toMatch(/^task-\d{8}T\d{6}Z-[0-9a-f]{6}$/);
    expect(taskIdProblem(a)).toBeUndefined();
    expect(generateTaskId()).not.toBe(a);
    for (const bad of ['', '..', '.x', 'a/b', 'probe', 'x'.repeat(129), 'a b'])
      expect(taskIdProblem(bad)).toBeTruthy();
    expect(taskIdProblem('release-report-20260414')).toBeUndefined();
  });
});

describe('state dir lock', () => {
  it('a live holder is named; a stale lock is taken over; release removes it', () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'planner.lock'), `${process.ppid}\n`);
    expect(() => acquireStateLock(dir)).toThrow(LockError);
    expect(() => acquireStateLock(dir)).toThrow(new RegExp(`pid ${process.ppid}`));
    writeFileSync(join(dir, 'planner.lock'), '999999999\n');
    const release = acquireStateLock(dir);
    expect(readFileSync(join(dir, 'planner.lock'), 'utf8').trim()).toBe(String(process.pid));
    release();
    expect(existsSync(join(dir, 'planner.lock'))).toBe(false);
  });
});
