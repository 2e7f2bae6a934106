/**
 * The task manager against a scripted worker speaking A2A directly (an in-process responder), over the
 * in-memory relay: the protocol paths a well-behaved worker rarely takes (gaps, duplicates, corrupt
 * artifacts, silence, disappearance).
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { create, type MessageInitShape } from '@bufbuild/protobuf';
import { afterAll, describe, expect, it } from 'vitest';
import { type A2aBody, A2aEndpoint, AgentClient, MemoryRelay } from '../../src/agent/index.js';
import { PlannerError, TaskManager, TaskStore } from '../../src/planner/index.js';
import {
  ArtifactChunkSchema,
  ArtifactInfoSchema,
  TaskEventSchema,
  TaskRefusedSchema,
  type TaskStart,
  type TaskStateName,
  taskStateFromName,
} from '../../src/protocol/a2a.js';
import { generatePairingKey, parsePairingKey } from '../../src/protocol/e2ee.js';
import { eventually, tempDir } from '../helpers/processes.js';

type Received = { channel: string; msg: A2aBody };

/** A worker whose answers the test writes by hand. */
class FakeWorker {
  readonly agent: AgentClient;
  readonly a2a: A2aEndpoint;
  readonly received: Received[] = [];
  onStart: (start: TaskStart, w: FakeWorker) => void = (s, w) => w.event(s.taskId, 1, 'accepted');
  peer = '';

  constructor(relay: MemoryRelay, id: string, opts: { e2ee?: boolean; pairingKey?: Uint8Array } = {}) {
    this.agent = new AgentClient({
      servers: ['memory'],
      apiKey: 'key',
      agentId: id,
      kind: 'worker',
      dialer: relay.dialer(),
    });
    this.a2a = new A2aEndpoint({
      agent: this.agent,
      role: 'responder',
      e2ee: opts.e2ee ?? true,
      pairingKey: opts.pairingKey,
    });
    this.a2a.on('message', ({ peer, channel, msg }) => {
      this.peer = peer;
      this.received.push({ channel, msg });
      if (msg.case === 'taskStart') this.onStart(msg.value, this);
    });
  }

  async start(): Promise<this> {
    await this.agent.start().waitConnected();
    return this;
  }

  send(channel: string, msg: A2aBody): void {
    void this.a2a.send(this.peer, channel, msg);
  }

  event(
    taskId: string,
    seq: number,
    state: TaskStateName,
    extra: MessageInitShape<typeof TaskEventSchema> = {},
  ): void {
    this.send(taskId, {
      case: 'taskEvent',
      value: create(TaskEventSchema, {
        taskId,
        seq: BigInt(seq),
        state: taskStateFromName(state),
        timeUnixMs: BigInt(Date.now()),
        ...extra,
      }),
    });
  }

  chunk(taskId: string, name: string, data: Buffer, chunkSha = sha(data)): void {
    this.send(taskId, {
      case: 'artifactChunk',
      value: create(ArtifactChunkSchema, {
        taskId,
        name,
        offset: 0n,
        data,
        chunkSha256: chunkSha,
        last: true,
      }),
    });
  }

  of<C extends NonNullable<A2aBody['case']>>(kind: C, channel?: string) {
    return this.received
      .filter((r) => r.msg.case === kind && (channel === undefined || r.channel === channel))
      .map((r) => r.msg.value as Extract<A2aBody, { case: C }>['value']);
  }
}

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
const info = (name: string, data: Buffer) =>
  create(ArtifactInfoSchema, { name, size: BigInt(data.length), sha256: sha(data) });

describe('task manager over A2A', () => {
  const relay = new MemoryRelay();
  const closers: (() => Promise<void> | void)[] = [];
  let n = 0;

  afterAll(async () => {
    for (const c of closers.reverse()) await c();
  });

  async function setup(
    opts: {
      e2ee?: boolean;
      pairingKey?: Uint8Array;
      worker?: { e2ee?: boolean; pairingKey?: Uint8Array };
    } = {},
    mopts: Partial<ConstructorParameters<typeof TaskManager>[0]> = {},
  ) {
    n++;
    const worker = await new FakeWorker(relay, `fake-worker-${n}`, opts.worker).start();
    const agent = new AgentClient({
      servers: ['memory'],
      apiKey: 'key',
      dialer: relay.dialer(),
      agentId: `tm-planner-${n}`,
      kind: 'planner',
    });
    const a2a = new A2aEndpoint({
      agent,
      role: 'initiator',
      e2ee: opts.e2ee ?? true,
      pairingKey: opts.pairingKey,
    });
    const stateDir = tempDir('nfltr-planner-');
    const store = new TaskStore(join(stateDir, 'tasks.db'));
    const manager = new TaskManager({ agent, a2a, store, stateDir, servers: ['memory'], ...mopts });
    await agent.start().waitConnected();
    closers.push(async () => {
      manager.close();
      await agent.close();
      await worker.agent.close();
      store.close();
    });
    return { worker, manager, store, agent, stateDir };
  }

  it('gaps - a missing event is asked again with Resume; duplicates are dropped; each stored seq is acked', async () => {
    const { worker, manager } = await setup();
    worker.onStart = (s, w) => {
      w.event(s.taskId, 1, 'accepted');
      w.event(s.taskId, 3, 'running', { message: 'three (2 is missing)' });
    };
    const { snapshot } = await manager.dispatch({
      agent_id: worker.agent.agentId,
      task_id: 'gap',
      objective: 'x',
    });
    expect(snapshot).toMatchObject({ state: 'accepted', last_seq: 1 });
    await eventually(() => worker.of('resume', 'gap').length > 0, 5_000, 'a Resume');
    expect(Number(worker.of('resume', 'gap')[0]!.afterSeq)).toBe(1);
    worker.event('gap', 2, 'running', { message: 'two' });
    worker.event('gap', 2, 'running', { message: 'two again' });
    worker.event('gap', 3, 'running', { message: 'three' });
    worker.event('gap', 4, 'completed', { resultText: 'done' });
    await eventually(() => manager.status('gap').task.snapshot.state === 'completed', 5_000, 'completed');
    expect(manager.status('gap').events.map((e) => [e.seq, e.state, e.message])).toEqual([
      [1, 'accepted', undefined],
      [2, 'running', 'two'],
      [3, 'running', 'three'],
      [4, 'completed', undefined],
    ]);
    await eventually(() => worker.of('ack', 'gap').length >= 5, 5_000, 'acks');
    expect(new Set(worker.of('ack', 'gap').map((a) => Number(a.seq)))).toEqual(new Set([1, 2, 3, 4]));
  });

  it('artifacts - completed only with every listed file verified; a corrupt one fails the task naming it', async () => {
    const { worker, manager, stateDir } = await setup();
    const good = Buffer.from('# report\n');
    worker.onStart = (s, w) => {
      w.event(s.taskId, 1, 'accepted');
      if (s.taskId === 'good') {
        w.chunk('good', 'out/report.md', good);
        w.event('good', 2, 'completed', { resultText: 'ok', artifacts: [info('out/report.md', good)] });
      } else {
        w.chunk('bad', 'report.md', good, sha(Buffer.from('something else')));
        w.event('bad', 2, 'completed', { resultText: 'ok', artifacts: [info('report.md', good)] });
      }
    };
    await manager.dispatch({ agent_id: worker.agent.agentId, task_id: 'good', objective: 'x' });
    await eventually(() => manager.status('good').task.snapshot.state === 'completed', 5_000, 'completed');
    const [a] = manager.status('good').task.snapshot.artifacts;
    expect(a).toEqual({
      name: 'out/report.md',
      size: good.length,
      sha256: sha(good),
      path: join(stateDir, 'artifacts', 'good', 'out', 'report.md'),
    });
    expect(readFileSync(a!.path, 'utf8')).toBe('# report\n');

    await manager.dispatch({ agent_id: worker.agent.agentId, task_id: 'bad', objective: 'x' });
    await eventually(() => manager.status('bad').task.snapshot.state === 'failed', 5_000, 'failed');
    expect(manager.status('bad').task.snapshot).toMatchObject({
      reason: 'artifact_integrity',
      message: expect.stringContaining('artifact report.md discarded'),
      result: { text: 'ok' },
    });
  });

  it('refusal and silence - no_free_slots is an error with the reason; no answer is a timeout naming the worker', async () => {
    const { worker, manager } = await setup({}, { acceptTimeoutMs: 400 });
    worker.onStart = (s, w) => {
      if (s.taskId === 'full') {
        w.send(s.taskId, {
          case: 'taskRefused',
          value: create(TaskRefusedSchema, {
            taskId: s.taskId,
            reason: 'no_free_slots',
            message: '0 of 1 free',
          }),
        });
      }
    };
    const id = worker.agent.agentId;
    await expect(manager.dispatch({ agent_id: id, task_id: 'full', objective: 'x' })).rejects.toThrow(
      `worker ${id} refused task full: no_free_slots (0 of 1 free)`,
    );
    // A refused id is not kept: it may be sent again (to another worker).
    await expect(manager.dispatch({ agent_id: id, task_id: 'full', objective: 'x' })).rejects.toThrow(
      /no_free_slots/,
    );
    await expect(manager.dispatch({ agent_id: id, task_id: 'silent', objective: 'x' })).rejects.toThrow(
      `worker ${id} did not accept or refuse task silent within 0.4 s. The dispatch is withdrawn`,
    );
  });

  it('withdrawn dispatch - kept and cancelled when the worker takes it late; dropped when it never got it', async () => {
    const { worker, manager } = await setup({}, { acceptTimeoutMs: 400 });
    worker.onStart = () => {};
    const id = worker.agent.agentId;
    await expect(manager.dispatch({ agent_id: id, task_id: 'late', objective: 'x' })).rejects.toThrow(
      /did not accept or refuse task late within 0\.4 s\. The dispatch is withdrawn: should task late reach/,
    );
    // The id is neither unknown nor reusable while the worker may still have it.
    expect(() => manager.status('late')).toThrow(
      /task late was withdrawn: worker fake-worker-\d+ did not answer/,
    );
    await expect(manager.dispatch({ agent_id: id, task_id: 'late', objective: 'x' })).rejects.toThrow(
      /already used by this planner/,
    );
    // The Cancel follows the TaskStart at once; the worker's late events are kept, and it is told again.
    await eventually(() => worker.of('cancel', 'late').length > 0, 5_000, 'a Cancel after the TaskStart');
    expect(worker.of('cancel', 'late')[0]!.reason).toMatch(/withdrawn/);
    worker.event('late', 1, 'accepted');
    await eventually(() => manager.status('late').task.snapshot.state === 'accepted', 5_000, 'adopted');
    worker.event('late', 2, 'cancelled', { reason: 'cancelled', message: 'withdrawn by the planner' });
    await eventually(() => manager.status('late').task.snapshot.state === 'cancelled', 5_000, 'cancelled');
    expect(manager.status('late').events.map((e) => [e.seq, e.state, e.origin])).toEqual([
      [1, 'accepted', 'worker'],
      [2, 'cancelled', 'worker'],
    ]);
    expect(manager.status('late').task.cancel_pending).toBe(false);

    // A TaskStart that never arrived: the worker's "unknown task" lets the id go on both sides.
    await expect(manager.dispatch({ agent_id: id, task_id: 'lost', objective: 'x' })).rejects.toThrow(
      /withdrawn/,
    );
    await eventually(() => worker.of('cancel', 'lost').length > 0, 5_000, 'a Cancel for lost');
    worker.send('lost', {
      case: 'taskRefused',
      value: create(TaskRefusedSchema, { taskId: 'lost', reason: 'unknown_task', message: 'no task lost' }),
    });
    await eventually(
      () => {
        try {
          manager.status('lost');
          return false;
        } catch (err) {
          return (err as PlannerError).code === 'unknown_task';
        }
      },
      5_000,
      'lost forgotten',
    );

    // A task this planner has no row for at all is stopped rather than left running for nobody.
    worker.event('ghost', 2, 'running');
    await eventually(() => worker.of('cancel', 'ghost').length > 0, 5_000, 'a Cancel for ghost');
    expect(worker.of('cancel', 'ghost')[0]!.reason).toBe('the planner has no such task');
  });

  it('timeout - no terminal event by timeout_ms + grace marks the task failed with reason timeout', async () => {
    const { worker, manager } = await setup({}, { timeoutGraceMs: 200 });
    await manager.dispatch({
      agent_id: worker.agent.agentId,
      task_id: 'slow',
      objective: 'x',
      timeout_ms: 300,
    });
    await eventually(() => manager.status('slow').task.snapshot.state === 'failed', 5_000, 'failed');
    expect(manager.status('slow').task.snapshot).toMatchObject({
      reason: 'timeout',
      message: expect.stringMatching(/within timeout_ms \(300 ms\) plus 0.2 s grace/),
    });
    expect(manager.status('slow').events.at(-1)).toMatchObject({ seq: 2, origin: 'planner' });
    await eventually(() => worker.of('cancel', 'slow')[0]?.reason === 'timeout', 5_000, 'a Cancel');
    // A late worker event for that seq is a duplicate; the state stays failed.
    expect(worker.of('ack', 'slow').some((a) => a.seq === 2n)).toBe(false);
    worker.event('slow', 2, 'completed');
    // Acknowledged once handled (a final event ends the worker's side), and the state stays failed.
    await eventually(() => worker.of('ack', 'slow').some((a) => a.seq === 2n), 5_000, 'the late event acked');
    expect(manager.status('slow').task.snapshot.state).toBe('failed');
  });

  it('answers - Respond carries content_json once; a second answer is refused until the worker moves on', async () => {
    const { worker, manager } = await setup();
    worker.onStart = (s, w) => {
      w.event(s.taskId, 1, 'accepted');
      w.event(s.taskId, 2, 'waiting_input', { question: 'env?', requestedSchemaJson: '{"type":"object"}' });
    };
    await manager.dispatch({ agent_id: worker.agent.agentId, task_id: 'ask', objective: 'x' });
    await eventually(
      () => manager.status('ask').task.snapshot.state === 'waiting_input',
      5_000,
      'waiting_input',
    );
    // Over one frame: refused up front, the question still open, and a corrected answer accepted.
    await expect(manager.respond('ask', 'x'.repeat(5 * 1024 * 1024))).rejects.toThrow(
      /over the \d+ bytes one answer can carry .*artifact_files.*the question is still open/,
    );
    expect(manager.status('ask').task.snapshot.state).toBe('waiting_input');
    await manager.respond('ask', { environment: 'staging' });
    await expect(manager.respond('ask', 'again')).rejects.toThrow(/already answered/);
    await eventually(() => worker.of('respond', 'ask').length === 1, 5_000, 'the Respond');
    expect(worker.of('respond', 'ask')[0]).toMatchObject({
      contentJson: '{"environment":"staging"}',
      action: 'accept',
    });
  });

  it('cancel - a worker that is gone gets the task marked cancelled locally, saying so', async () => {
    const { worker, manager } = await setup({}, { cancelWaitMs: 3_000 });
    await manager.dispatch({ agent_id: worker.agent.agentId, task_id: 'orphan', objective: 'x' });
    await worker.agent.close();
    const r = await manager.cancel('orphan');
    expect(r.confirmed).toBe(false);
    expect(r.snapshot.state).toBe('cancelled');
    expect(r.note).toMatch(/not connected|did not confirm/);
    await expect(manager.cancel('orphan')).rejects.toThrow(/already cancelled/);
  });

  it('e2ee - mismatched pairing keys name --e2ee-key-file; plaintext to an encrypting worker names --a2a-e2ee', async () => {
    const mismatch = await setup({
      pairingKey: parsePairingKey(generatePairingKey()),
      worker: { pairingKey: parsePairingKey(generatePairingKey()) },
    });
    const err = await mismatch.manager
      .dispatch({ agent_id: mismatch.worker.agent.agentId, objective: 'x' })
      .catch((e: PlannerError) => e);
    expect(err).toBeInstanceOf(PlannerError);
    expect((err as Error).message).toMatch(/--e2ee-key-file/);

    const plain = await setup({ e2ee: false });
    await expect(
      plain.manager.dispatch({ agent_id: plain.worker.agent.agentId, objective: 'x' }),
    ).rejects.toThrow(/--a2a-e2ee/);
    await expect(plain.manager.probe(plain.worker.agent.agentId)).rejects.toThrow(/--a2a-e2ee/);
  });

  it('e2ee - a tampered frame on a task channel fails that task with reason e2ee_violation', async () => {
    const { worker, manager, agent } = await setup();
    await manager.dispatch({ agent_id: worker.agent.agentId, task_id: 'tampered', objective: 'x' });
    worker.agent.send({
      to: agent.agentId,
      channel: 'tampered',
      seq: 1n,
      kind: 'a2a.sealed',
      payload: new Uint8Array(64).fill(7),
    });
    await eventually(() => manager.status('tampered').task.snapshot.state === 'failed', 5_000, 'failed');
    expect(manager.status('tampered').task.snapshot).toMatchObject({ reason: 'e2ee_violation' });
  });

  it('unknown agent - the relay says the peer is not connected', async () => {
    const { manager } = await setup();
    await expect(manager.dispatch({ agent_id: 'nobody-here', objective: 'x' })).rejects.toThrow(
      /unknown agent "nobody-here"/,
    );
    await expect(manager.probe('nobody-here')).rejects.toThrow(/unknown agent "nobody-here"/);
  });
});
