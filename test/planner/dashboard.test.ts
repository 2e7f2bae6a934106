/**
 * The planner's dashboard side in-process: digests built from a real task store, and the publisher's
 * rounds against an in-memory stand-in of the relay's queue (the real relay is in test/dashboard/).
 */
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { DashboardApi } from '../../src/planner/dashboard/api.js';
import { buildDigest, DashboardPublisher } from '../../src/planner/dashboard/index.js';
import type { TaskManager } from '../../src/planner/task-manager.js';
import { TaskStore } from '../../src/planner/task-store.js';
import { DashboardCrypto, OUTCOMES_ID, type TaskDigest } from '../../src/protocol/dashboard.js';
import { newLinkKey } from '../../src/protocol/link-crypto.js';
import { silentLogger } from '../../src/util/log.js';
import { tempDir } from '../helpers/processes.js';

const task = {
  task_id: 't1',
  agent_id: 'w1',
  objective: 'secret objective',
  created_at: 1_000,
  request: { timeout_ms: 60_000 },
};

function seed(store: TaskStore) {
  store.create(task, { seq: 1, state: 'accepted', time: 1_001, origin: 'worker' });
  store.append('t1', {
    seq: 2,
    state: 'running',
    time: 1_002,
    origin: 'worker',
    message: 'step 1',
    progress: 1,
    total: 2,
  });
  store.append('t1', {
    seq: 3,
    state: 'waiting_input',
    time: 1_003,
    origin: 'worker',
    question: 'Which one?',
    schema: { type: 'object', properties: { a: { type: 'string' } } },
  });
}

/** The relay's queue and digest table, in memory. */
function fakeRelay() {
  const digests = new Map<string, string>();
  const queue: { id: number; created_at: string; sealed: string }[] = [];
  const acked: number[] = [];
  let pushes = 0;
  let next = 1;
  const api = {
    register: async () => ({}),
    push: async (_p: string, d: { task_id: string; sealed: string }[]) => {
      pushes++;
      for (const x of d) digests.set(x.task_id, x.sealed);
      return { rev: pushes };
    },
    pull: async () => queue.filter((q) => !acked.includes(q.id)),
    ack: async (_p: string, ids: number[]) => {
      acked.push(...ids);
      return { acked: ids.length };
    },
  };
  return {
    api: api as unknown as DashboardApi,
    digests,
    acked,
    pushes: () => pushes,
    queue: (sealed: string) => queue.push({ id: next++, created_at: '', sealed }),
  };
}

describe('planner dashboard', () => {
  let store: TaskStore;
  beforeEach(() => {
    store = new TaskStore(join(tempDir(), 'tasks.db'));
    seed(store);
  });
  afterEach(() => {
    store.close();
    vi.restoreAllMocks();
  });

  it('digest - full carries the texts and the pending question; status carries none', () => {
    const t = store.get('t1')!;
    const full = buildDigest(t, store.events('t1'), 'full');
    expect(full).toMatchObject({
      level: 'full',
      state: 'waiting_input',
      worker: 'w1',
      objective: 'secret objective',
      timeout_ms: 60_000,
      counts: { events: 3, artifacts: 0 },
      pending: { seq: 3, question: 'Which one?' },
    });
    expect(full.events?.map((e) => e.seq)).toEqual([1, 2, 3]);
    const status = buildDigest(t, store.events('t1'), 'status');
    expect(status.state).toBe('waiting_input');
    expect(JSON.stringify(status)).not.toMatch(/secret|Which one|step 1/);
    // Once answered, the question is no longer offered.
    store.setAnswer('t1', 3, { content_json: '{"a":"x"}', action: 'accept', files: [] });
    expect(buildDigest(store.get('t1')!, [], 'full').pending).toBeUndefined();
  });

  it('digest - a long result is cut and says so', () => {
    store.append('t1', {
      seq: 4,
      state: 'completed',
      time: 1_004,
      origin: 'worker',
      result_text: 'r'.repeat(20_000),
    });
    const d = buildDigest(store.get('t1')!, [], 'full');
    expect(d.result?.truncated).toBe(true);
    expect(d.result!.text.length).toBeLessThan(9_000);
  });

  const publisher = (relay: ReturnType<typeof fakeRelay>, manager: Partial<TaskManager>, commands = true) => {
    const crypto = new DashboardCrypto(newLinkKey(), 'plan');
    const p = new DashboardPublisher({
      plannerId: 'plan',
      api: relay.api,
      crypto,
      store,
      manager: manager as TaskManager,
      level: 'full',
      commands,
      logger: silentLogger,
    });
    return { p, crypto };
  };
  const outcomes = async (
    relay: ReturnType<typeof fakeRelay>,
    crypto: DashboardCrypto,
    p: DashboardPublisher,
  ) => {
    await vi.waitFor(async () => {
      await p.round();
      expect(relay.digests.has(OUTCOMES_ID)).toBe(true);
    });
    return crypto.openOutcomes(relay.digests.get(OUTCOMES_ID)!)!;
  };

  it('publisher - pushes a task when it changes, not again while it does not', async () => {
    const relay = fakeRelay();
    const { p, crypto } = publisher(relay, {});
    await p.round();
    expect(relay.pushes()).toBe(1);
    expect((crypto.openDigest('t1', relay.digests.get('t1')!) as TaskDigest).state).toBe('waiting_input');
    await p.round();
    expect(relay.pushes()).toBe(1);
    store.append('t1', {
      seq: 4,
      state: 'running',
      time: 1_005,
      origin: 'worker',
      message: 'answer received',
    });
    await p.round();
    expect(relay.pushes()).toBe(2);
    expect((crypto.openDigest('t1', relay.digests.get('t1')!) as TaskDigest).events?.at(-1)?.message).toBe(
      'answer received',
    );
  });

  it('publisher - runs each command once, acks every one, and refuses replays, strangers and stale ones', async () => {
    const relay = fakeRelay();
    const cancel = vi.fn(async () => ({ note: 'worker w1 stopped the task' }));
    const respond = vi.fn(async () => ({ delivery: 'sent' }));
    const { p, crypto } = publisher(relay, { cancel, respond } as unknown as Partial<TaskManager>);
    const answer = crypto.sealCommand({ type: 'answer', task_id: 't1', seq: 3, content: { a: 'x' } });
    relay.queue(answer.sealed);
    relay.queue(answer.sealed); // the same ciphertext again
    relay.queue(
      new DashboardCrypto(newLinkKey(), 'plan').sealCommand({ type: 'cancel', task_id: 't1' }).sealed,
    );
    const wrongSeq = crypto.sealCommand({ type: 'answer', task_id: 't1', seq: 2, content: {} });
    relay.queue(wrongSeq.sealed);
    const now = Date.now();
    vi.spyOn(Date, 'now').mockReturnValueOnce(now - 11 * 60_000);
    const stale = crypto.sealCommand({ type: 'cancel', task_id: 't1' });
    relay.queue(stale.sealed);
    const got = await outcomes(relay, crypto, p);
    expect(respond).toHaveBeenCalledTimes(1);
    expect(respond).toHaveBeenCalledWith('t1', { a: 'x' });
    expect(cancel).not.toHaveBeenCalled();
    expect(relay.acked.sort()).toEqual([1, 2, 3, 4, 5]);
    const byId = new Map(got.map((o) => [o.id, o]));
    expect(byId.get(answer.id)).toMatchObject({ ok: true, note: 'answer sent' });
    expect(byId.get(wrongSeq.id)).toMatchObject({
      ok: false,
      note: 'task t1 no longer waits for an answer to question 2',
    });
    expect(byId.get(stale.id)?.ok).toBe(false);
    expect(byId.get(stale.id)?.note).toMatch(/older than 10 minutes/);
    expect(got).toHaveLength(3);
  });

  it('publisher - with commands off, every command is refused and nothing runs', async () => {
    const relay = fakeRelay();
    const cancel = vi.fn();
    const { p, crypto } = publisher(relay, { cancel } as unknown as Partial<TaskManager>, false);
    const c = crypto.sealCommand({ type: 'cancel', task_id: 't1' });
    relay.queue(c.sealed);
    const got = await outcomes(relay, crypto, p);
    expect(cancel).not.toHaveBeenCalled();
    expect(got).toEqual([
      expect.objectContaining({
        id: c.id,
        ok: false,
        note: expect.stringMatching(/--dashboard-commands=false/),
      }),
    ]);
  });
});
