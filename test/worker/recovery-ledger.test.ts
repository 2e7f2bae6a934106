/**
 * The worker's recovery ledger in-process: what it replays and when, when a task's log goes, what a
 * new session with a planner is offered, and what a restarted worker reads back from its task folders.
 * Sends are recorded and timers are held by the test, so each rule is one or two calls.
 */
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import { silentLogger } from '../../src/util/log.js';
import { recoverTasks } from '../../src/worker/recovery-ledger.js';
import { REPLAY_BACKOFF } from '../../src/worker/replay-pacer.js';
import { EVENTS_FILE } from '../../src/worker/task-events.js';
import { ledgerFixture, summary } from './ledger-fixture.js';

describe('worker recovery ledger', () => {
  it('replay - the events after the seq in order, then ReplayComplete with the newest seq', async () => {
    const f = ledgerFixture();
    const t = f.task('t1', 'p1', 'running', 'completed');
    f.ledger.replay(t, 1n, 'resume');
    await f.settle();
    expect(summary(f.sent)).toEqual(['p1/t1 taskEvent:2', 'p1/t1 taskEvent:3', 'p1/t1 replayComplete:3']);
  });

  it('replay - asked again without an ack: merged into one waiting replay from the earliest seq', async () => {
    const f = ledgerFixture();
    const t = f.task('t1', 'p1', 'running', 'completed');
    f.ledger.replay(t, 2n, 'resume');
    await f.settle();
    f.sent.length = 0;
    f.ledger.replay(t, 2n, 'resume');
    f.ledger.replay(t, 0n, 'resume');
    f.ledger.replay(t, 1n, 'resume');
    expect(f.timers.map((x) => x.ms)).toEqual([REPLAY_BACKOFF.firstMs]);
    expect(f.sent).toEqual([]);
    f.clock.now += REPLAY_BACKOFF.firstMs;
    f.timers[0]!.fn();
    await f.settle();
    expect(summary(f.sent)).toEqual([
      'p1/t1 taskEvent:1',
      'p1/t1 taskEvent:2',
      'p1/t1 taskEvent:3',
      'p1/t1 replayComplete:3',
    ]);
    // After an acknowledgement the next replay goes at once.
    f.ledger.ack(t, 1n);
    f.sent.length = 0;
    f.ledger.replay(t, 1n, 'resume');
    await f.settle();
    expect(f.timers).toHaveLength(1);
    expect(summary(f.sent)).toHaveLength(3);
  });

  it('replay - one that waited is not sent once the task was delivered meanwhile', async () => {
    const f = ledgerFixture();
    const t = f.task('t1', 'p1', 'completed');
    f.ledger.replay(t, 1n, 'resume');
    f.ledger.replay(t, 1n, 'resume');
    await f.settle();
    f.sent.length = 0;
    f.ledger.ack(t, 2n);
    expect(f.ledger.get('t1')).toBeUndefined();
    f.timers[0]!.fn();
    await t.chain;
    expect(f.sent).toEqual([]);
  });

  it('replay - a link lost mid-replay ends it quietly; the next one is sent whole', async () => {
    let fail = true;
    const f = ledgerFixture({ fail: () => fail });
    const t = f.task('t1', 'p1', 'completed');
    f.ledger.replay(t, 0n, 'resume');
    await f.settle();
    expect(f.sent).toEqual([]);
    fail = false;
    f.clock.now += 60_000;
    f.ledger.replay(t, 0n, 'resume');
    await f.settle();
    expect(summary(f.sent)).toEqual(['p1/t1 taskEvent:1', 'p1/t1 taskEvent:2', 'p1/t1 replayComplete:2']);
  });

  it('ack - the final event acknowledged: an ended task is delivered (log gone, folder marked), a running one waits', async () => {
    const f = ledgerFixture();
    const t = f.task('t1', 'p1', 'running', 'completed');
    f.running.add('t1');
    f.ledger.ack(t, 2n);
    expect(f.ledger.get('t1')).toBe(t);
    f.ledger.ack(t, 3n);
    expect(f.ledger.get('t1')).toBe(t); // still running: kept until it ended
    f.running.delete('t1');
    f.ledger.ended('t1');
    expect(f.ledger.get('t1')).toBeUndefined();
    expect(f.ledger.isKnown('t1')).toBe(true);
    const dir = join(f.tasksDir, 't1');
    // The log's unlink runs off the event loop; task.json already says the task was delivered.
    await vi.waitFor(() => expect(existsSync(join(dir, EVENTS_FILE))).toBe(false));
    expect(JSON.parse(readFileSync(join(dir, 'task.json'), 'utf8'))).toMatchObject({
      task_id: 't1',
      peer: 'p1',
      final_state: 'completed',
      final_seq: 3,
      delivered_at: expect.any(String),
    });
  });

  it('ack - short of the final event, or on an unfinished task, the log stays', () => {
    const f = ledgerFixture();
    const done = f.task('t1', 'p1', 'completed');
    const open = f.task('t2', 'p1', 'running');
    f.ledger.ack(done, 1n);
    f.ledger.ack(open, 2n);
    f.ledger.ended('t2');
    expect(f.ledger.get('t1')).toBe(done);
    expect(f.ledger.get('t2')).toBe(open);
    expect(existsSync(join(f.tasksDir, 't1', EVENTS_FILE))).toBe(true);
  });

  it('owner - only the planner that started a task may resume, acknowledge or cancel it', () => {
    const f = ledgerFixture();
    const t = f.task('t1', 'p1');
    expect(f.ledger.owedTo('p1', 't1')).toBe(t);
    expect(f.ledger.owedTo('p2', 't1')).toBeUndefined();
    expect(f.ledger.owedTo('p1', 'nope')).toBeUndefined();
  });

  it('greet - a planner met on a new session is offered its finished, unacknowledged tasks once; resync offers again', async () => {
    const f = ledgerFixture();
    f.task('t1', 'p1', 'completed');
    f.task('t2', 'p1', 'running');
    f.task('t3', 'p2', 'failed');
    f.ledger.greet('p1');
    f.ledger.greet('p1');
    await f.settle();
    // The final event alone (after lastSeq - 1): the planner acknowledges it, or resumes for the rest.
    expect(summary(f.sent)).toEqual(['p1/t1 taskEvent:2', 'p1/t1 replayComplete:2']);
    f.sent.length = 0;
    f.clock.now += 60_000;
    f.ledger.resync('p1');
    f.ledger.greet('p1');
    await f.settle();
    expect(summary(f.sent)).toEqual(['p1/t1 taskEvent:2', 'p1/t1 replayComplete:2']);
    expect(f.ledger.owners()).toEqual(new Set(['p1', 'p2']));
  });

  it('restart - running tasks close as failed/worker_restarted, a lost accepted comes back, delivered ones stay known only', () => {
    const first = ledgerFixture();
    first.task('t1', 'p1', 'running').log.close();
    first.ledger.open('t2', 'p2'); // accepted, but its unflushed `accepted` was lost
    const t3 = first.task('t3', 'p1', 'completed');
    first.ledger.ack(t3, 2n);
    first.ledger.ended('t3');
    mkdirSync(join(first.tasksDir, 'stray')); // no task.json: known, never owed

    const recovered = recoverTasks(first.tasksDir, silentLogger);
    expect([...recovered.known].sort()).toEqual(['stray', 't1', 't2', 't3']);
    expect([...recovered.owed.keys()].sort()).toEqual(['t1', 't2']);
    const t1 = recovered.owed.get('t1')!;
    expect(t1.owner).toBe('p1');
    expect(t1.log.after(0n).map((e) => [Number(e.seq), e.reason])).toEqual([
      [1, ''],
      [2, ''],
      [3, 'worker_restarted'],
    ]);
    expect(t1.log.lastState).toBe('failed');
    const t2 = recovered.owed.get('t2')!;
    expect(t2.log.after(0n).map((e) => e.reason)).toEqual(['', 'worker_restarted']);

    const again = ledgerFixture({ tasksDir: first.tasksDir, recovered });
    expect(again.ledger.owners()).toEqual(new Set(['p1', 'p2']));
    expect(again.ledger.isKnown('t3')).toBe(true);
    expect(again.ledger.get('t3')).toBeUndefined();
  });
});
