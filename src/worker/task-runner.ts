/**
 * @module One task from `accepted` to its terminal event: input files into `input/`, a fresh executor
 * session, one tool call whose progress becomes `running`, whose elicitations become `waiting_input`
 * (answered by the planner's Respond) and whose result becomes `completed` or `failed` after the
 * `output/` files went out as chunks. Cancel, timeout, shutdown and channel violations halt it; every
 * path ends with the executor stopped, the slot released and exactly one terminal event.
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { CallToolResult, ElicitRequest, ElicitResult } from '@modelcontextprotocol/sdk/types.js';
import type { A2aBody } from '../agent/a2a.js';
import { ArtifactReceiver, describeFiles, sendFiles } from '../agent/artifacts.js';
import type { ArtifactChunk, ArtifactInfo, Respond, TaskStateName } from '../protocol/a2a.js';
import type { Logger } from '../util/log.js';
import {
  buildToolArguments,
  type ExecutorCommand,
  ExecutorSession,
  isConnectionClosed,
  NO_REQUEST_TIMEOUT_MS,
  type ProgressParams,
  type TaskInput,
  type ToolChoice,
} from './executor.js';
import { listOutputFiles } from './outputs.js';
import { EVENTS_FILE, type TaskEventInit, TaskEventLog } from './task-events.js';

export interface TaskSpec {
  taskId: string;
  /** The planner that started the task; only it may answer, cancel or resume. */
  peer: string;
  objective: string;
  context?: unknown;
  constraints?: unknown;
  /** 0: no limit. */
  timeoutMs: number;
  inputFiles: ArtifactInfo[];
}

export interface TaskRunnerDeps {
  /** The task folder; `input/`, `output/`, `executor.log` and `events.jsonl` live in it. */
  dir: string;
  choice: ToolChoice;
  command: ExecutorCommand;
  env: Record<string, string>;
  cwd?: string;
  /** Sends one message on this task's channel to its planner. */
  send: (msg: A2aBody) => Promise<void>;
  whenWritable: () => Promise<void>;
  maxArtifactBytes: number;
  /** From stdin closed to SIGTERM when the executor must go (cancel, timeout, shutdown). */
  killGraceMs: number;
  logger: Logger;
  /** Reports whether the executor could be started, for the probe's `executor_healthy`. */
  onSpawn: (ok: boolean, error?: string) => void;
  /** Called once, after the executor is gone and right before the terminal event is sent. */
  onTerminal: () => void;
}

/** Why a task was stopped from outside its tool call. */
export type HaltReason =
  | { kind: 'cancelled'; message: string }
  | { kind: 'timeout' | 'worker_shutdown' | 'e2ee_violation' | 'artifact_error'; message: string };

type Outcome =
  | { kind: 'result'; result: CallToolResult }
  | { kind: 'failed'; reason: string; message: string; withArtifacts?: CallToolResult }
  | { kind: 'cancelled'; message: string };

interface Question {
  params: ElicitRequest['params'];
  resolve: (r: ElicitResult) => void;
  answering: boolean;
}

class Halted extends Error {}

export class TaskRunner {
  readonly spec: TaskSpec;
  readonly events: TaskEventLog;
  readonly inputDir: string;
  readonly outputDir: string;
  readonly #deps: TaskRunnerDeps;
  readonly #log: Logger;
  readonly #abort = new AbortController();
  #halt: HaltReason | undefined;
  #onHalt: Array<(h: HaltReason) => void> = [];
  #session: ExecutorSession | undefined;
  /** The files being received (TaskStart inputs, or one Respond's files); one set at a time. */
  #receiving: { receiver: ArtifactReceiver; resolve: () => void } | undefined;
  #questions: Question[] = [];
  #state: TaskStateName = 'accepted';
  #timer: NodeJS.Timeout | undefined;
  #done: Promise<void> | undefined;

  constructor(spec: TaskSpec, deps: TaskRunnerDeps) {
    this.spec = spec;
    this.#deps = deps;
    this.#log = deps.logger;
    this.inputDir = join(deps.dir, 'input');
    this.outputDir = join(deps.dir, 'output');
    this.events = new TaskEventLog(spec.taskId, join(deps.dir, EVENTS_FILE));
  }

  get state(): TaskStateName {
    return this.#state;
  }

  /** Why the task was stopped from outside, if it was. */
  get haltReason(): HaltReason | undefined {
    return this.#halt;
  }

  /**
   * Emits `accepted` and runs the task; resolves after the terminal event. The input receiver is set up
   * before the first await, so chunks that follow the TaskStart immediately are not lost.
   */
  start(): Promise<void> {
    if (this.#done) return this.#done;
    const inputs = this.spec.inputFiles.length > 0 ? this.#receive(this.spec.inputFiles) : Promise.resolve();
    inputs.catch(() => {});
    this.#emit({ state: 'accepted' });
    if (this.spec.timeoutMs > 0) {
      this.#timer = setTimeout(
        () =>
          this.halt({
            kind: 'timeout',
            message: `task exceeded its timeout_ms of ${this.spec.timeoutMs} ms; the executor was stopped`,
          }),
        this.spec.timeoutMs,
      );
    }
    this.#done = this.#run(inputs);
    return this.#done;
  }

  /** Takes an input chunk (TaskStart files or Respond files). */
  acceptChunk(chunk: ArtifactChunk): void {
    const r = this.#receiving;
    if (!r || this.#halt) {
      this.#log.warn('artifact chunk for a task that expects none; dropped', { name: chunk.name });
      return;
    }
    r.receiver.accept(chunk).then(
      () => {
        if (r.receiver.complete && this.#receiving === r) {
          this.#receiving = undefined;
          r.resolve();
        }
      },
      (err: Error) => this.halt({ kind: 'artifact_error', message: `input file refused: ${err.message}` }),
    );
  }

  /** The planner's answer to the oldest open question; files first go into `input/`. */
  respond(r: Respond): void {
    const q = this.#questions.find((x) => !x.answering);
    if (!q || this.#halt) {
      this.#log.warn('answer for a task that asked nothing; ignored', { task: this.spec.taskId });
      return;
    }
    const action = r.action || 'accept';
    if (action !== 'accept' && action !== 'decline' && action !== 'cancel') {
      this.#log.warn('answer with an unknown action; ignored', { task: this.spec.taskId, action });
      return;
    }
    q.answering = true;
    const files = r.files.length > 0 ? this.#receive(r.files) : Promise.resolve();
    files.then(
      () => {
        this.#questions = this.#questions.filter((x) => x !== q);
        const result: ElicitResult =
          action === 'accept' ? { action, content: answerContent(r.contentJson, q.params) } : { action };
        q.resolve(result);
        this.#emit({ state: 'running', message: 'answer received' });
      },
      () => {},
    );
  }

  /**
   * Stops the task from outside: aborts the tool call (MCP cancellation), withdraws open questions,
   * and lets {@link start}'s run stop the executor and report. Later calls are ignored.
   */
  halt(reason: HaltReason): void {
    if (this.#halt || this.events.finished) return;
    this.#halt = reason;
    this.#log.info('stopping task', { task: this.spec.taskId, why: reason.kind, detail: reason.message });
    this.#abort.abort(reason.message);
    for (const q of this.#questions.splice(0)) q.resolve({ action: 'cancel' });
    for (const f of this.#onHalt.splice(0)) f(reason);
  }

  async #run(inputs: Promise<void>): Promise<void> {
    let outcome: Outcome;
    try {
      await mkdir(this.outputDir, { recursive: true });
      await mkdir(this.inputDir, { recursive: true });
      await inputs;
      this.#throwIfHalted();
      outcome = await this.#execute();
    } catch (err) {
      outcome = this.#outcomeOf(err);
    }
    clearTimeout(this.#timer);
    await this.#finish(outcome);
  }

  async #execute(): Promise<Outcome> {
    const d = this.#deps;
    const input: TaskInput = {
      taskId: this.spec.taskId,
      objective: this.spec.objective,
      context: this.spec.context,
      constraints: this.spec.constraints,
      inputDir: this.inputDir,
      outputDir: this.outputDir,
    };
    try {
      this.#session = await ExecutorSession.start({
        command: d.command,
        cwd: d.cwd,
        env: {
          ...d.env,
          NFLTR_TASK_ID: this.spec.taskId,
          NFLTR_TASK_INPUT_DIR: this.inputDir,
          NFLTR_TASK_OUTPUT_DIR: this.outputDir,
        },
        logFile: join(d.dir, 'executor.log'),
        onElicit: (params, signal) => this.#ask(params, signal),
        onProgress: (p) => this.#onProgress(p),
        logger: this.#log,
      });
      const tools = await this.#session.listAllTools();
      if (!tools.some((t) => t.name === d.choice.name)) {
        throw new Error(
          `the executor no longer offers tool ${d.choice.name} (it has: ${tools.map((t) => t.name).join(', ') || 'none'})`,
        );
      }
    } catch (err) {
      this.#throwIfHalted();
      const message = (err as Error).message;
      d.onSpawn(false, message);
      return { kind: 'failed', reason: 'executor_unavailable', message };
    }
    d.onSpawn(true);
    this.#throwIfHalted();
    const session = this.#session;
    try {
      const result = (await session.client.callTool(
        // Our own progress token (the task id, as in the contract's example): progress is read from
        // the session's transport tap, see ExecutorStartOptions.onProgress.
        {
          name: d.choice.name,
          arguments: buildToolArguments(d.choice, input),
          _meta: { progressToken: this.spec.taskId },
        },
        undefined,
        // The task's own timeout_ms is enforced by this runner (it must not reset on progress).
        { signal: this.#abort.signal, timeout: NO_REQUEST_TIMEOUT_MS },
      )) as CallToolResult;
      this.#throwIfHalted();
      return { kind: 'result', result };
    } catch (err) {
      this.#throwIfHalted();
      if (isConnectionClosed(err) && session.crashed) {
        await session.stop(0);
        const tail = session.logTail(10);
        return {
          kind: 'failed',
          reason: 'executor_crashed',
          message:
            `executor ${session.exitDescription} before returning a result` +
            (tail ? `; last lines of executor.log:\n${tail}` : ' (executor.log is empty)'),
        };
      }
      return {
        kind: 'failed',
        reason: 'executor_failed',
        message: `executor error: ${(err as Error).message}`,
      };
    }
  }

  #onProgress(p: ProgressParams): void {
    if (this.#halt || p.progressToken !== this.spec.taskId) return;
    const message = p.message ?? `progress ${p.progress}${p.total !== undefined ? ` of ${p.total}` : ''}`;
    this.#emit({ state: 'running', message, progress: p.progress, total: p.total ?? 0 });
  }

  #outcomeOf(err: unknown): Outcome {
    const h = this.#halt;
    if (h?.kind === 'cancelled') return { kind: 'cancelled', message: h.message };
    if (h) return { kind: 'failed', reason: h.kind, message: h.message };
    this.#log.error('task failed inside the worker', { task: this.spec.taskId, error: err });
    return { kind: 'failed', reason: 'worker_error', message: `worker error: ${(err as Error).message}` };
  }

  #throwIfHalted(): void {
    if (this.#halt) throw new Halted();
  }

  async #finish(outcome: Outcome): Promise<void> {
    // Stop the executor while the artifacts go out; the slot is released only once it is gone.
    const stopping = this.#session?.stop(this.#deps.killGraceMs);
    let final: TaskEventInit;
    if (outcome.kind === 'result') {
      const r = outcome.result;
      const resultText = resultTextOf(r);
      const structuredJson = r.structuredContent !== undefined ? JSON.stringify(r.structuredContent) : '';
      let artifacts: ArtifactInfo[] = [];
      try {
        artifacts = await this.#sendOutputs();
        final = r.isError
          ? {
              state: 'failed',
              reason: 'executor_failed',
              message: resultText || 'the executor reported an error without a message',
              resultText,
              structuredJson,
              artifacts,
            }
          : { state: 'completed', resultText, structuredJson, artifacts };
      } catch (err) {
        final = this.#halt
          ? haltEvent(this.#halt)
          : { state: 'failed', reason: 'artifact_error', message: (err as Error).message, resultText };
      }
    } else if (outcome.kind === 'cancelled') {
      final = { state: 'cancelled', reason: 'cancelled', message: outcome.message };
    } else {
      final = { state: 'failed', reason: outcome.reason, message: outcome.message };
    }
    await stopping;
    await this.#receiving?.receiver.abort().catch(() => {});
    this.#deps.onTerminal();
    this.#emit(final);
    this.#log.info('task ended', {
      task: this.spec.taskId,
      state: final.state,
      reason: final.reason || undefined,
    });
  }

  async #sendOutputs(): Promise<ArtifactInfo[]> {
    const { files, skipped } = await listOutputFiles(this.outputDir);
    if (skipped.length > 0)
      this.#log.warn('output entries not returned', { task: this.spec.taskId, skipped });
    const total = files.reduce((n, f) => n + f.size, 0);
    if (total > this.#deps.maxArtifactBytes) {
      throw new Error(
        `output files total ${total} bytes, over the limit of ${this.#deps.maxArtifactBytes} (--max-artifact-bytes)`,
      );
    }
    const infos = await describeFiles(files);
    await sendFiles(files, {
      taskId: this.spec.taskId,
      send: (msg) => {
        this.#throwIfHalted();
        return this.#deps.send(msg);
      },
      whenWritable: this.#deps.whenWritable,
    });
    return infos;
  }

  #ask(params: ElicitRequest['params'], signal: AbortSignal): Promise<ElicitResult> {
    if (this.#halt) return Promise.resolve({ action: 'cancel' });
    return new Promise((resolve) => {
      const q: Question = { params, resolve, answering: false };
      this.#questions.push(q);
      const requestedSchema = 'requestedSchema' in params ? params.requestedSchema : undefined;
      this.#emit({
        state: 'waiting_input',
        question: params.message,
        requestedSchemaJson: JSON.stringify(requestedSchema ?? {}),
      });
      signal.addEventListener(
        'abort',
        () => {
          if (!this.#questions.includes(q)) return;
          this.#questions = this.#questions.filter((x) => x !== q);
          resolve({ action: 'cancel' });
          if (!this.#halt) this.#emit({ state: 'running', message: 'the executor withdrew its question' });
        },
        { once: true },
      );
    });
  }

  /** Resolves when every announced file has arrived and verified; rejects on a bad file or a halt. */
  #receive(files: ArtifactInfo[]): Promise<void> {
    const receiver = new ArtifactReceiver(this.inputDir, { maxBytes: this.#deps.maxArtifactBytes });
    try {
      receiver.expect(files);
    } catch (err) {
      queueMicrotask(() => this.halt({ kind: 'artifact_error', message: (err as Error).message }));
      return Promise.reject(err);
    }
    return new Promise<void>((resolve, reject) => {
      this.#receiving = { receiver, resolve };
      this.#onHalt.push(() => reject(new Halted()));
    });
  }

  #emit(init: TaskEventInit): void {
    if (this.events.finished) return;
    this.#state = init.state;
    const event = this.events.append(init);
    this.#deps.send({ case: 'taskEvent', value: event }).catch((err: Error) =>
      this.#log.warn('could not send task event; the planner can resume', {
        task: this.spec.taskId,
        seq: String(event.seq),
        error: err.message,
      }),
    );
  }
}

function haltEvent(h: HaltReason): TaskEventInit {
  return h.kind === 'cancelled'
    ? { state: 'cancelled', reason: 'cancelled', message: h.message }
    : { state: 'failed', reason: h.kind, message: h.message };
}

/** The text of a tool result; other content kinds are named, since only text crosses as result_text. */
export function resultTextOf(r: CallToolResult): string {
  return (r.content ?? [])
    .map((c) => (c.type === 'text' ? c.text : `[${c.type} content not forwarded]`))
    .join('\n');
}

/**
 * The planner's `content_json` as an elicitation `content` object. An object is used as it is; a bare
 * value (a JSON string, or text that is not JSON) goes into the schema's first required property (else
 * its first property, else `answer`).
 */
export function answerContent(contentJson: string, params: ElicitRequest['params']): ElicitContent {
  if (contentJson.trim() === '') return {};
  let value: unknown;
  try {
    value = JSON.parse(contentJson);
  } catch {
    value = contentJson;
  }
  // The SDK checks the shape (primitive values) against MCP's result schema before it goes out.
  if (value !== null && typeof value === 'object' && !Array.isArray(value)) return value as ElicitContent;
  const schema = 'requestedSchema' in params ? params.requestedSchema : undefined;
  const required = schema?.required ?? [];
  const key = required[0] ?? Object.keys(schema?.properties ?? {})[0] ?? 'answer';
  return { [key]: value } as ElicitContent;
}

type ElicitContent = NonNullable<ElicitResult['content']>;
