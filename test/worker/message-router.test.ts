/**
 * The worker's message router in-process: which handler each A2A message reaches, who may act on a
 * task, the order of a TaskStart's admission checks, the probe answer, and what Resume, Cancel and Ack
 * do to running, ended and unknown tasks. Running tasks are recorders; the ledger is the real one
 * over a temporary folder (see ledger-fixture.ts).
 */
import { create, type MessageInitShape } from '@bufbuild/protobuf';
import { describe, expect, it } from 'vitest';
import type { A2aBody, A2aInbound } from '../../src/agent/a2a.js';
import {
  AckSchema,
  ArtifactAckSchema,
  ArtifactChunkSchema,
  CancelSchema,
  P2pAnswerSchema,
  P2pOfferSchema,
  PROBE_CHANNEL,
  ProbeSchema,
  RespondSchema,
  ResumeSchema,
  TaskEventSchema,
  TaskStartSchema,
} from '../../src/protocol/a2a.js';
import { silentLogger } from '../../src/util/log.js';
import type { Readiness } from '../../src/worker/executor.js';
import {
  admit,
  MessageRouter,
  probeResult,
  type RunningTask,
  type WorkerStatus,
} from '../../src/worker/message-router.js';
import { ledgerFixture, type Sent, summary } from './ledger-fixture.js';

const STATUS: WorkerStatus = {
  agentId: 'w1',
  tool: 'run_task',
  labels: { gpu: 'a100' },
  maxTasks: 2,
  running: 0,
  draining: false,
  healthy: true,
  executorError: '',
};

/** A running task that records what reaches it. */
function runningTask(id: string, peer: string, calls: string[]): RunningTask {
  const rec =
    (what: string) =>
    (...args: unknown[]) => {
      calls.push(`${id} ${what}${args.length > 1 ? ` ${JSON.stringify(args[1])}` : ''}`);
    };
  return {
    spec: { taskId: id, peer, objective: 'o', timeoutMs: 0, inputFiles: [] },
    acceptChunk: rec('chunk'),
    acceptArtifactAck: rec('artifactAck'),
    acceptP2pOffer: rec('p2pOffer'),
    acceptP2pAnswer: rec('p2pAnswer'),
    respond: rec('respond'),
    halt: (reason) => calls.push(`${id} halt ${reason.kind}: ${reason.message}`),
    resync: rec('resync'),
  };
}

function routerFixture(opts: { status?: Partial<WorkerStatus>; readiness?: Readiness } = {}) {
  const f = ledgerFixture();
  const calls: string[] = [];
  const replies: Sent[] = [];
  const running = new Map<string, RunningTask>();
  const status = { ...STATUS, ...opts.status };
  const router = new MessageRouter({
    ledger: f.ledger,
    running,
    status: () => ({ ...status, running: running.size }),
    readiness: async () => opts.readiness,
    start: (spec) => calls.push(`start ${spec.taskId} of ${spec.peer}`),
    reply: (peer, channel, msg) => replies.push({ peer, channel, msg }),
    closeChannel: (peer, channel) => calls.push(`close ${peer}/${channel}`),
    logger: silentLogger,
  });
  /** A task running here: owed to its planner as well (a running task always is). */
  const run = (id: string, peer: string) => {
    f.task(id, peer, 'running');
    running.set(id, runningTask(id, peer, calls));
  };
  const send = (peer: string, channel: string, msg: A2aBody, sealed = true) =>
    router.onMessage({ peer, channel, msg, sealed } satisfies A2aInbound);
  /** The refusals answered, as `peer/channel reason: message`. */
  const refusals = () =>
    replies.flatMap(({ peer, channel, msg }) =>
      msg.case === 'taskRefused' ? [`${peer}/${channel} ${msg.value.reason}: ${msg.value.message}`] : [],
    );
  /** These planners have been met: their first messages offer nothing more. */
  const greeted = async (...peers: string[]) => {
    for (const p of peers) f.ledger.greet(p);
    await f.settle();
    f.sent.length = 0;
    f.clock.now += 60_000; // past the replay pacing
  };
  return { ...f, router, calls, replies, running, run, send, refusals, greeted };
}

const start = (init: MessageInitShape<typeof TaskStartSchema> = {}): A2aBody => ({
  case: 'taskStart',
  value: create(TaskStartSchema, { taskId: 't1', objective: 'do it', ...init }),
});

describe('worker message router', () => {
  it("task messages - reach the running task only from the planner that started it, on the task's channel", () => {
    const f = routerFixture();
    f.run('t1', 'p1');
    const messages: A2aBody[] = [
      { case: 'artifactChunk', value: create(ArtifactChunkSchema, { taskId: 't1', name: 'a' }) },
      { case: 'artifactAck', value: create(ArtifactAckSchema, { taskId: 't1', name: 'a' }) },
      { case: 'p2pOffer', value: create(P2pOfferSchema, { transferId: 'x' }) },
      { case: 'p2pAnswer', value: create(P2pAnswerSchema, { transferId: 'x' }) },
      { case: 'respond', value: create(RespondSchema, { taskId: 't1', contentJson: '{}' }) },
    ];
    for (const m of messages) f.send('p1', 't1', m, false);
    expect(f.calls).toEqual([
      't1 chunk false',
      't1 artifactAck',
      't1 p2pOffer',
      't1 p2pAnswer',
      't1 respond',
    ]);
    f.calls.length = 0;
    for (const m of messages) f.send('p2', 't1', m); // another planner's
    for (const m of messages) f.send('p1', 't2', m); // a task not running here
    expect(f.calls).toEqual([]);
    expect(f.replies).toEqual([]);
  });

  it('task messages - one a handler throws on costs that message only; what a worker does not take is ignored', () => {
    const f = routerFixture();
    f.run('t1', 'p1');
    f.running.get('t1')!.respond = () => {
      throw new Error('boom');
    };
    f.send('p1', 't1', { case: 'respond', value: create(RespondSchema, { taskId: 't1' }) });
    f.send('p1', 't1', { case: 'taskEvent', value: create(TaskEventSchema, { taskId: 't1', seq: 1n }) });
    f.send('p1', 't1', { case: 'artifactAck', value: create(ArtifactAckSchema, { taskId: 't1' }) });
    expect(f.calls).toEqual(['t1 artifactAck']);
    expect(f.replies).toEqual([]);
  });

  it('task start - admitted tasks start; a refusal is answered on the channel, naming the task', () => {
    const f = routerFixture();
    f.send('p1', 't1', start());
    expect(f.calls).toEqual(['start t1 of p1']);
    f.ledger.open('t1', 'p1');
    f.send('p1', 't1', start());
    f.send('p1', 'c9', start({ taskId: '' }));
    expect(f.refusals()).toEqual([
      'p1/t1 duplicate_task_id: task t1 was already accepted by w1; task ids are never reused',
      'p1/c9 invalid_task: task_id is empty',
    ]);
    expect(f.replies.map((r) => r.msg.case === 'taskRefused' && r.msg.value.taskId)).toEqual(['t1', 'c9']);
  });

  it('task start - checks in order: id, channel, id form, draining, reuse, fields, executor, slots', () => {
    const known = (id: string) => id === 'old';
    const verdict = (
      init: MessageInitShape<typeof TaskStartSchema>,
      s: Partial<WorkerStatus> = {},
      channel = '',
    ) => {
      const msg = create(TaskStartSchema, { taskId: 't1', objective: 'do it', ...init });
      const v = admit('p1', channel || msg.taskId || 'c', msg, { ...STATUS, ...s }, known);
      return 'refusal' in v ? `${v.refusal.reason}: ${v.refusal.message}` : `spec ${v.spec.taskId}`;
    };
    const stopped = { draining: true, healthy: false, running: 2 };
    const rows: [string, string][] = [
      [verdict({ taskId: '' }, stopped), 'invalid_task: task_id is empty'],
      [verdict({}, stopped, 'other'), 'invalid_task: task_id t1 does not match its channel other'],
      [
        verdict({ taskId: 'probe' }, stopped),
        expect.stringMatching(/^invalid_task: task_id "probe" is not usable/),
      ],
      [verdict({ taskId: 'old' }, stopped), 'draining: w1 is shutting down; send the task to another worker'],
      [
        verdict({ taskId: 'old', objective: '' }, { healthy: false }),
        'duplicate_task_id: task old was already accepted by w1; task ids are never reused',
      ],
      [verdict({ objective: ' ' }, { healthy: false, running: 2 }), 'invalid_task: objective is empty'],
      [
        verdict({}, { healthy: false, executorError: 'spawn ENOENT', running: 2 }),
        'executor_unavailable: the executor of w1 cannot start: spawn ENOENT',
      ],
      [
        verdict({}, { running: 2 }),
        'no_free_slots: 0 of 2 slots free on w1; retry later or pick another worker',
      ],
      [verdict({}, { running: 1 }), 'spec t1'],
    ];
    for (const [got, want] of rows) expect(got).toEqual(want);
  });

  it('probe - answered on the probe channel, whatever channel it came on, with the readiness', async () => {
    const f = routerFixture({
      status: { running: 0 },
      readiness: { ready: false, reason: 'not logged in', fix: 'run claude login' },
    });
    f.send('p1', 'elsewhere', { case: 'probe', value: create(ProbeSchema, { probeId: 'q1' }) });
    await new Promise((r) => setImmediate(r)); // the readiness is asked first
    expect(f.replies).toHaveLength(1);
    const { peer, channel, msg } = f.replies[0]!;
    expect([peer, channel, msg.case]).toEqual(['p1', PROBE_CHANNEL, 'probeResult']);
    expect(msg.value).toMatchObject({
      probeId: 'q1',
      available: false,
      freeSlots: 2,
      maxTasks: 2,
      protocol: 'a2a-mcp-v1',
      tool: 'run_task',
      labels: { gpu: 'a100' },
      executorReady: false,
      executorReason: 'not logged in',
      executorFix: 'run claude login',
    });
  });

  it('probe - available only with a free slot, a healthy executor, no drain and no "not ready"', () => {
    const probe = create(ProbeSchema, { probeId: 'q' });
    const answer = (s: Partial<WorkerStatus>, r?: Readiness) => probeResult(probe, { ...STATUS, ...s }, r);
    expect(answer({}).available).toBe(true);
    expect(answer({}, { ready: true }).available).toBe(true);
    expect(answer({ running: 2 })).toMatchObject({ available: false, freeSlots: 0 });
    expect(answer({ running: 5 }).freeSlots).toBe(0);
    expect(answer({ draining: true })).toMatchObject({ available: false, draining: true });
    expect(answer({ healthy: false, executorError: 'gone' })).toMatchObject({
      available: false,
      executorHealthy: false,
      executorError: 'gone',
      executorReady: false, // without check_ready, readiness is health
    });
    expect(answer({}, { ready: false })).toMatchObject({
      available: false,
      executorReady: false,
      executorReason: '',
    });
    expect(answer({}, { ready: true, reason: 'ignored' })).toMatchObject({
      executorReady: true,
      executorReason: '',
    });
  });

  it("resume - replays to the task's planner, refuses ids unknown or delivered, drops another planner's", async () => {
    const f = routerFixture();
    f.task('t1', 'p1', 'running', 'running');
    const done = f.task('t2', 'p1', 'completed');
    f.ledger.ack(done, 2n);
    const resume = (afterSeq: bigint): A2aBody => ({
      case: 'resume',
      value: create(ResumeSchema, { afterSeq }),
    });
    f.send('p2', 't1', resume(0n));
    f.send('p1', 't1', resume(1n));
    await f.settle();
    expect(summary(f.sent)).toEqual(['p1/t1 taskEvent:2', 'p1/t1 taskEvent:3', 'p1/t1 replayComplete:3']);
    f.send('p1', 't2', resume(0n));
    f.send('p1', 't9', resume(0n));
    expect(f.refusals()).toEqual([
      'p1/t2 unknown_task: w1 already delivered every event of task t2 and dropped its log',
      'p1/t9 unknown_task: w1 has no task t9',
    ]);
  });

  it('cancel - halts the running task, answers an ended one with its final event, refuses one not known', async () => {
    const f = routerFixture();
    f.run('t1', 'p1');
    f.task('t2', 'p1', 'cancelled');
    const delivered = f.task('t3', 'p1', 'completed');
    f.ledger.ack(delivered, 2n);
    await f.greeted('p1', 'p2');
    const cancel = (reason = ''): A2aBody => ({ case: 'cancel', value: create(CancelSchema, { reason }) });
    f.send('p2', 't1', cancel('not mine'));
    f.send('p1', 't1', cancel('changed my mind'));
    f.send('p1', 't1', cancel());
    expect(f.calls).toEqual([
      't1 halt cancelled: changed my mind',
      't1 halt cancelled: cancelled by the planner',
    ]);
    f.send('p2', 't2', cancel());
    f.send('p1', 't2', cancel());
    await f.settle();
    expect(summary(f.sent)).toEqual(['p1/t2 taskEvent:2', 'p1/t2 replayComplete:2']);
    f.send('p1', 't3', cancel());
    f.send('p1', 't9', cancel());
    expect(f.refusals()).toEqual([
      'p1/t3 unknown_task: task t3 already ended and was delivered',
      'p1/t9 unknown_task: task t9 is not known here',
    ]);
  });

  it("ack - the planner's ack of the final event lets an ended task go; another planner's changes nothing", () => {
    const f = routerFixture();
    f.task('t1', 'p1', 'completed');
    const ack = (seq: bigint): A2aBody => ({ case: 'ack', value: create(AckSchema, { seq }) });
    f.send('p2', 't1', ack(2n));
    expect(f.ledger.get('t1')).toBeDefined();
    f.send('p1', 't9', ack(2n));
    f.send('p1', 't1', ack(2n));
    expect(f.ledger.get('t1')).toBeUndefined();
    expect(f.replies).toEqual([]);
  });

  it("greeting - a planner's first message offers its unacknowledged final events; a resync offers them again", async () => {
    const f = routerFixture();
    f.run('t1', 'p1');
    f.run('t2', 'p2');
    f.task('t3', 'p1', 'failed');
    f.send('p1', PROBE_CHANNEL, { case: 'probe', value: create(ProbeSchema) });
    f.send('p1', PROBE_CHANNEL, { case: 'probe', value: create(ProbeSchema) });
    await f.settle();
    expect(summary(f.sent)).toEqual(['p1/t3 taskEvent:2', 'p1/t3 replayComplete:2']);
    f.sent.length = 0;
    f.clock.now += 60_000;
    f.router.onResync('p1');
    await f.settle();
    expect(f.calls).toEqual(['t1 resync']);
    expect(summary(f.sent)).toEqual(['p1/t3 taskEvent:2', 'p1/t3 replayComplete:2']);
  });

  it("failure - an E2EE violation halts the owner's task, closes any other task channel, never the probe channel", () => {
    const f = routerFixture();
    f.run('t1', 'p1');
    const fail = (peer: string, channel: string | undefined, code = 'e2ee_violation') =>
      f.router.onFailure({ peer, channel, code, message: 'bad tag' });
    fail('p1', 't1');
    fail('p2', 't1');
    fail('p1', 't9');
    fail('p1', PROBE_CHANNEL);
    fail('p1', undefined);
    fail('p1', 't1', 'handshake');
    expect(f.calls).toEqual([
      't1 halt e2ee_violation: task channel torn down: bad tag',
      'close p2/t1',
      'close p1/t9',
    ]);
  });
});
