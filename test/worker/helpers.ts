/**
 * Test helpers for the worker: start real `nfltr worker` processes, and a stand-in planner that speaks
 * the A2A messages over a real relay (an AgentClient of kind planner plus an initiator A2aEndpoint).
 */
import type { ChildProcess } from 'node:child_process';
import { createHash, randomUUID } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { create } from '@bufbuild/protobuf';
import { type A2aBody, A2aEndpoint, type A2aFailure, AgentClient } from '../../src/agent/index.js';
import { answerOffer } from '../../src/agent/p2p/transfer.js';
import {
  ArtifactAckSchema,
  type ArtifactChunk,
  ArtifactChunkSchema,
  ArtifactInfoSchema,
  CancelSchema,
  type ProbeResult,
  ProbeSchema,
  RespondSchema,
  ResumeSchema,
  type TaskEvent,
  type TaskRefused,
  TaskStartSchema,
  type TaskStateName,
  taskStateName,
} from '../../src/protocol/a2a.js';
import { fixturePath } from '../helpers/fixtures.js';
import { eventually, type RelayProcess, spawnNfltr, tempDir } from '../helpers/processes.js';

/** A `--mcp-command` running a fixture with this Node. */
export const fixtureCommand = (name: string) => `"${process.execPath}" "${fixturePath(name)}"`;

export interface WorkerProcess {
  child: ChildProcess;
  name: string;
  stateDir: string;
  stderr: () => string;
  /** Sends the signal (SIGTERM by default) and resolves with the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
  exited: Promise<number | null>;
}

export interface WorkerStartOptions {
  name: string;
  mcpCommand?: string;
  args?: string[];
  stateDir?: string;
  /** The worker's environment (default: this process's) and working folder. */
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** How the worker gets its API key: `--api-key` (default), NFLTR_API_KEY, or `--api-key-file`. */
  apiKeyVia?: 'argv' | 'env' | 'file';
}

/** Starts `nfltr worker` and resolves once it printed its ready line. */
export async function startWorker(
  relay: RelayProcess,
  apiKey: string,
  opts: WorkerStartOptions,
): Promise<WorkerProcess> {
  const stateDir = opts.stateDir ?? tempDir('nfltr-worker-');
  const via = opts.apiKeyVia ?? 'argv';
  let keyArgs = ['--api-key', apiKey];
  let env = opts.env ?? process.env;
  if (via === 'env') [keyArgs, env] = [[], { ...env, NFLTR_API_KEY: apiKey }];
  if (via === 'file') {
    const file = join(tempDir('nfltr-key-'), 'key');
    writeFileSync(file, `${apiKey}\n`, { mode: 0o600 });
    keyArgs = ['--api-key-file', file];
  }
  const w = await spawnNfltr(
    'worker',
    [
      '--server',
      relay.grpcAddr,
      ...keyArgs,
      '--name',
      opts.name,
      '--state-dir',
      stateDir,
      '--mcp-command',
      opts.mcpCommand ?? fixtureCommand('scripted-executor.mjs'),
      ...(opts.args ?? []),
    ],
    /nfltr worker ready agent_id=/,
    { env, cwd: opts.cwd },
  );
  return { child: w.child, name: opts.name, stateDir, stderr: w.output, exited: w.exited, stop: w.stop };
}

export interface TaskInit {
  taskId?: string;
  objective: string;
  context?: unknown;
  constraints?: unknown;
  timeoutMs?: number;
  files?: Record<string, string>;
}

const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

function fileMessages(taskId: string, files: Record<string, string>) {
  const infos = Object.entries(files).map(([name, content]) =>
    create(ArtifactInfoSchema, {
      name,
      size: BigInt(Buffer.byteLength(content)),
      sha256: sha256(Buffer.from(content)),
    }),
  );
  const chunks: A2aBody[] = Object.entries(files).map(([name, content]) => ({
    case: 'artifactChunk',
    value: create(ArtifactChunkSchema, {
      taskId,
      name,
      offset: 0n,
      data: Buffer.from(content),
      chunkSha256: sha256(Buffer.from(content)),
      last: true,
    }),
  }));
  return { infos, chunks };
}

/** A planner stand-in: records what workers send and waits for it. */
export class TestPlanner {
  readonly agent: AgentClient;
  readonly endpoint: A2aEndpoint;
  readonly events = new Map<string, TaskEvent[]>();
  readonly refusals = new Map<string, TaskRefused>();
  readonly probes = new Map<string, ProbeResult>();
  readonly chunks = new Map<string, ArtifactChunk[]>();
  readonly failures: A2aFailure[] = [];
  /** Whether artifact chunks are acknowledged (a planner that cannot take them does not). */
  ackArtifacts = true;

  constructor(relay: RelayProcess, apiKey: string, opts: { id?: string; e2ee?: boolean } = {}) {
    this.agent = new AgentClient({
      servers: [relay.grpcAddr],
      apiKey,
      agentId: opts.id ?? `planner-${randomUUID().slice(0, 8)}`,
      kind: 'planner',
    });
    this.endpoint = new A2aEndpoint({ agent: this.agent, role: 'initiator', e2ee: opts.e2ee ?? true });
    this.endpoint.on('failure', (f) => this.failures.push(f));
    this.endpoint.on('message', ({ peer, channel, msg }) => {
      switch (msg.case) {
        case 'taskEvent': {
          const list = this.events.get(msg.value.taskId) ?? [];
          list.push(msg.value);
          this.events.set(msg.value.taskId, list);
          return;
        }
        case 'taskRefused':
          this.refusals.set(msg.value.taskId || channel, msg.value);
          return;
        case 'probeResult':
          this.probes.set(msg.value.probeId, msg.value);
          return;
        case 'p2pOffer':
          // Answered as a planner with `--p2p-threshold off` answers: no address, so the worker takes the
          // relay at once (an offer nobody answers holds the files for the 30 s answer deadline).
          void answerOffer({
            offer: msg.value,
            identity: undefined,
            addresses: [],
            standing: [],
            send: (body) => this.endpoint.send(peer, channel, body),
          });
          return;
        case 'artifactChunk': {
          const c = msg.value;
          const list = this.chunks.get(c.taskId) ?? [];
          list.push(c);
          this.chunks.set(c.taskId, list);
          // The worker waits for every file to be acknowledged before its final event.
          if (!this.ackArtifacts) return;
          const offset = c.offset + BigInt(c.data.length);
          void this.endpoint.send(peer, channel, {
            case: 'artifactAck',
            value: create(ArtifactAckSchema, { taskId: c.taskId, name: c.name, offset, done: c.last }),
          });
          return;
        }
      }
    });
  }

  async start(): Promise<this> {
    this.agent.start();
    await this.agent.waitConnected();
    return this;
  }

  async probe(worker: string): Promise<ProbeResult> {
    const probeId = randomUUID();
    await this.endpoint.send(worker, 'probe', { case: 'probe', value: create(ProbeSchema, { probeId }) });
    return eventually(() => this.probes.get(probeId)!, 10_000, `probe answer from ${worker}`);
  }

  /** Sends a TaskStart (and its input files); returns the task id. */
  async startTask(worker: string, t: TaskInit): Promise<string> {
    const taskId = t.taskId ?? `t-${randomUUID().slice(0, 8)}`;
    const { infos, chunks } = fileMessages(taskId, t.files ?? {});
    await this.endpoint.send(worker, taskId, {
      case: 'taskStart',
      value: create(TaskStartSchema, {
        taskId,
        objective: t.objective,
        contextJson: t.context === undefined ? '' : JSON.stringify(t.context),
        constraintsJson: t.constraints === undefined ? '' : JSON.stringify(t.constraints),
        timeoutMs: BigInt(t.timeoutMs ?? 0),
        inputFiles: infos,
      }),
    });
    for (const c of chunks) await this.endpoint.send(worker, taskId, c);
    return taskId;
  }

  async respond(
    worker: string,
    taskId: string,
    r: { content?: unknown; action?: string; files?: Record<string, string> },
  ): Promise<void> {
    const { infos, chunks } = fileMessages(taskId, r.files ?? {});
    await this.endpoint.send(worker, taskId, {
      case: 'respond',
      value: create(RespondSchema, {
        taskId,
        contentJson: r.content === undefined ? '' : JSON.stringify(r.content),
        action: r.action ?? '',
        files: infos,
      }),
    });
    for (const c of chunks) await this.endpoint.send(worker, taskId, c);
  }

  cancel(worker: string, taskId: string, reason = ''): Promise<void> {
    return this.endpoint.send(worker, taskId, {
      case: 'cancel',
      value: create(CancelSchema, { taskId, reason }),
    });
  }

  resume(worker: string, taskId: string, afterSeq: number): Promise<void> {
    return this.endpoint.send(worker, taskId, {
      case: 'resume',
      value: create(ResumeSchema, { taskId, afterSeq: BigInt(afterSeq) }),
    });
  }

  states(taskId: string): TaskStateName[] {
    return (this.events.get(taskId) ?? []).map((e) => taskStateName(e.state)!);
  }

  /** Resolves with the first event of the task in `state`. */
  waitFor(taskId: string, state: TaskStateName, timeoutMs = 15_000): Promise<TaskEvent> {
    return eventually(
      () => (this.events.get(taskId) ?? []).find((e) => taskStateName(e.state) === state)!,
      timeoutMs,
      `task ${taskId} to reach ${state} (has ${this.states(taskId).join(', ') || 'nothing'})`,
    );
  }

  /** Resolves with the task's terminal event. */
  waitEnd(taskId: string, timeoutMs = 15_000): Promise<TaskEvent> {
    return eventually(
      () =>
        (this.events.get(taskId) ?? []).find((e) =>
          ['completed', 'failed', 'cancelled'].includes(taskStateName(e.state)!),
        )!,
      timeoutMs,
      `task ${taskId} to end (has ${this.states(taskId).join(', ') || 'nothing'})`,
    );
  }

  waitRefused(taskId: string, timeoutMs = 10_000): Promise<TaskRefused> {
    return eventually(() => this.refusals.get(taskId)!, timeoutMs, `refusal of ${taskId}`);
  }

  /** The bytes of an artifact the worker streamed for a task. */
  artifact(taskId: string, name: string): Buffer {
    const parts = (this.chunks.get(taskId) ?? []).filter((c) => c.name === name);
    parts.sort((a, b) => Number(a.offset - b.offset));
    return Buffer.concat(parts.map((c) => c.data));
  }

  async close(): Promise<void> {
    await this.agent.close();
  }
}

export { sha256 };
