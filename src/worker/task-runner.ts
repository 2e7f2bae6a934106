/**
 * @module One task from `accepted` to its terminal event: input files into `input/`, a fresh executor
 * session, one tool call whose progress becomes `running`, whose elicitations become `waiting_input`
 * (answered by the planner's Respond) and whose result becomes `completed` or `failed` after the
 * `output/` files went out as chunks. Cancel, timeout, shutdown and channel violations halt it; every
 * path ends with the executor stopped, the slot released and exactly one terminal event.
 */
import { chown, mkdir, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { CallToolResult, ElicitRequest, ElicitResult } from '@modelcontextprotocol/sdk/types.js';
import type { A2aBody } from '../agent/a2a.js';
import {
  ArtifactReceiver,
  ArtifactSender,
  type ArtifactSenderOptions,
  type ChunkRef,
  checkArtifactLimit,
  describeFiles,
  ProgressThrottle,
  progressText,
} from '../agent/artifacts/index.js';
import {
  answerWithSideLink,
  type PathChange,
  sendFiles,
  type TransferChannel,
  type TransferIdentity,
} from '../agent/p2p/index.js';
import type {
  ArtifactAck,
  ArtifactChunk,
  ArtifactInfo,
  FailureReason,
  P2pAnswer,
  P2pOffer,
  Respond,
  TaskEvent,
  TaskStateName,
} from '../protocol/a2a.js';
import { answerObject } from '../protocol/a2a.js';
import { formatDuration } from '../util/duration.js';
import type { Logger } from '../util/log.js';
import { ProgressPacer } from '../util/progress-pacer.js';
import { trace } from '../util/trace.js';
import {
  buildToolArguments,
  checkTaskTool,
  type ExecutorCommand,
  ExecutorSession,
  type ExecutorUser,
  isConnectionClosed,
  NO_REQUEST_TIMEOUT_MS,
  type ProgressParams,
  type TaskInput,
  type ToolChoice,
} from './executor.js';
import { collectResultFiles } from './outputs.js';
import type { ExecutorReaper } from './reaper.js';
import { EVENTS_FILE, type TaskEventInit, TaskEventLog } from './task-events.js';
import type { WarmPool } from './warm-pool.js';

/** The running executor's pid, in the task folder, for a restarted worker to kill if it survived. */
export const EXECUTOR_PID_FILE = 'executor.pid';

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
  whenWritable: ArtifactSenderOptions['whenWritable'];
  maxArtifactBytes: number;
  /** For tests (`NFLTR_TEST_CORRUPT_CHUNK`): the artifact sender corrupts this chunk once. */
  testCorruptChunk?: ChunkRef;
  /** Channels are sealed end to end: chunks go without their own SHA-256 (see ArtifactSender). */
  sealed: boolean;
  /**
   * Direct links with the planner (`--p2p-threshold`): output files above `threshold` are offered on
   * one, and input files offered on one are taken from it. Undefined: the relay only.
   */
  direct?: { threshold: number; identity: TransferIdentity; addresses: () => string[] };
  /** From stdin closed to SIGTERM when the executor must go (cancel, timeout, shutdown). */
  killGraceMs: number;
  /** After this long without an event (a question aside), a `running` event says so; 0: never. */
  stallAfterMs?: number;
  /**
   * Once the executor has returned, how long delivering the output files may go without the planner
   * acknowledging a byte before the task fails (`lease_expired`) and frees its slot; 0: never.
   */
  slotLeaseMs?: number;
  logger: Logger;
  /** Reports whether the executor could be started, for the probe's `executor_healthy`. */
  onSpawn: (ok: boolean, error?: string) => void;
  /**
   * Called once, right before the terminal event is sent: after the executor is gone, or, when it
   * returned its result, while it may still be exiting.
   */
  onTerminal: () => void;
  /** Kills the executor if the worker dies; its pid is also kept in `executor.pid` while it runs. */
  reaper?: ExecutorReaper;
  /** The executor runs as this OS user: `input/` and `output/` are handed to it. */
  user?: ExecutorUser;
  /** Warm sessions (`--warm-executors`): the task takes one if it can, else starts its own. */
  warm?: WarmPool;
}

const LIMIT_FLAG = '--max-artifact-bytes of nfltr worker';
/** Result text or structured content above this travels as a file among the result's artifacts. */
export const INLINE_RESULT_BYTES = 1024 * 1024;
/** Event texts (messages, questions, the preview of a result sent as a file) are cut to this. */
export const EVENT_TEXT_BYTES = 64 * 1024;
/** The files a too-large result text and structured content travel in. */
export const RESULT_TEXT_FILE = 'nfltr-result-text.txt';
export const RESULT_STRUCTURED_FILE = 'nfltr-structured-content.json';

/** Why a task was stopped from outside its tool call. */
export type HaltReason =
  | { kind: 'cancelled'; message: string }
  | {
      kind: Extract<
        FailureReason,
        'timeout' | 'worker_shutdown' | 'e2ee_violation' | 'artifact_error' | 'lease_expired'
      >;
      message: string;
    };

type Outcome =
  | { kind: 'result'; result: CallToolResult }
  | { kind: 'failed'; reason: FailureReason; message: string; withArtifacts?: CallToolResult }
  | { kind: 'cancelled'; message: string };

interface Question {
  params: ElicitRequest['params'];
  resolve: (r: ElicitResult) => void;
  answering: boolean;
  /** Seq of the waiting_input event that asked it; an answer names it (Respond.question_seq). */
  seq: bigint;
}

class Halted extends Error {}

/**
 * A task's progress events: the first 32 as they come, then ten a second; faster progress is coalesced
 * (the latest wins), so an executor's flood never becomes a flood of stored, flushed events.
 */
const PROGRESS_INTERVAL_MS = 100;
const PROGRESS_BURST = 32;

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
  /** Input files (TaskStart's, then each Respond's), into `input/`; partial files wait in `.incoming/`. */
  #receiver: ArtifactReceiver | undefined;
  /** Output files going out, while they do. */
  #sender: ArtifactSender | undefined;
  /** Output files going out by {@link sendFiles} (a direct attempt): its handler of the channel's messages. */
  #outgoing: Parameters<TransferChannel['subscribe']>[0] | undefined;
  /** Input files' direct link, while it is open. */
  #sideLink: (() => void) | undefined;
  #questions: Question[] = [];
  #state: TaskStateName = 'accepted';
  #timer: NodeJS.Timeout | undefined;
  #stallTimer: NodeJS.Timeout | undefined;
  /** The last event other than a stall notice: when, and what it said. */
  #lastSign = { at: Date.now(), what: 'accepted' };
  #done: Promise<void> | undefined;
  /** The executor's progress, paced and coalesced (see ProgressPacer). */
  readonly #progress = new ProgressPacer<TaskEventInit>({
    intervalMs: PROGRESS_INTERVAL_MS,
    burst: PROGRESS_BURST,
    writable: () => this.#deps.whenWritable(),
    emit: (init) => this.#emit(init),
  });

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
    const inputs =
      this.spec.inputFiles.length > 0
        ? this.#receive(this.spec.inputFiles, 'input files')
        : Promise.resolve();
    inputs.catch(() => {});
    this.#emit({ state: 'accepted' }, false);
    trace('worker.accepted', this.spec.taskId);
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
  acceptChunk(chunk: ArtifactChunk, sealed: boolean): void {
    if (!this.#receiver || this.#halt) {
      this.#log.warn('artifact chunk for a task that expects none; dropped', { name: chunk.name });
      return;
    }
    void this.#receiver.accept(chunk, sealed);
  }

  /** The planner acknowledged output bytes. */
  acceptArtifactAck(ack: ArtifactAck): void {
    this.#sender?.onAck(ack);
    this.#outgoing?.message({ case: 'artifactAck', value: ack });
  }

  /** The planner's answer to the offer of output files on a direct link. */
  acceptP2pAnswer(answer: P2pAnswer): void {
    this.#outgoing?.message({ case: 'p2pAnswer', value: answer });
  }

  /** The planner offers input files on a direct link: chunks on it go where those through the relay go. */
  acceptP2pOffer(offer: P2pOffer): void {
    const receiver = this.#receiver;
    if (!receiver || this.#halt) return;
    this.#sideLink?.();
    const d = this.#deps;
    void receiver
      .standing()
      .then((standing) =>
        answerWithSideLink({
          offer,
          send: d.send,
          identity: d.direct?.identity,
          addresses: d.direct?.addresses() ?? [],
          standing,
          // Chunks on a direct link carry their SHA-256 (its sender always hashes them).
          onChunk: (chunk) => this.acceptChunk(chunk, false),
          onPath: (c) => this.#emit({ state: 'running', message: `input files: ${pathText(c)}` }),
          logger: this.#log,
        }),
      )
      .then(
        (close) => {
          this.#sideLink = close;
          if (this.#halt) close();
        },
        (err: Error) => this.#log.warn('could not answer a direct transfer offer', { error: err.message }),
      );
  }

  /** The link to the planner has a new session: resume file transfers from the acknowledged offsets. */
  resync(): void {
    this.#sender?.resync();
    this.#outgoing?.resync?.();
    this.#receiver?.resync();
  }

  /** The planner's answer to the oldest open question; files first go into `input/`. */
  respond(r: Respond): void {
    // An answer resent after a reconnect names its question: one already answered is not answered twice.
    const q = this.#questions.find((x) => !x.answering && (r.questionSeq === 0n || x.seq === r.questionSeq));
    if (!q || this.#halt) {
      this.#log.warn('answer for no open question (already answered, withdrawn, or none asked); ignored', {
        task: this.spec.taskId,
        question_seq: String(r.questionSeq),
      });
      return;
    }
    const action = r.action || 'accept';
    if (action !== 'accept' && action !== 'decline' && action !== 'cancel') {
      this.#log.warn('answer with an unknown action; ignored', { task: this.spec.taskId, action });
      return;
    }
    q.answering = true;
    const files = r.files.length > 0 ? this.#receive(r.files, 'answer files') : Promise.resolve();
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
    let opening: Promise<Outcome | undefined> | undefined;
    try {
      await mkdir(this.outputDir, { recursive: true });
      await mkdir(this.inputDir, { recursive: true });
      // The executor starts while the input files arrive; its tool call waits for them. One that runs
      // as another user starts once its folders are handed to it.
      const u = this.#deps.user;
      opening = u ? undefined : this.#open();
      opening?.catch(() => {});
      await inputs;
      if (u) await chownTree([this.outputDir, this.inputDir], u);
      this.#throwIfHalted();
      opening ??= this.#open();
      outcome = (await opening) ?? (await this.#execute());
    } catch (err) {
      // A session started meanwhile is the task's, for #finish to stop.
      await opening?.catch(() => {});
      outcome = this.#outcomeOf(err);
    }
    clearTimeout(this.#timer);
    clearTimeout(this.#stallTimer);
    await this.#finish(outcome);
  }

  /** Takes a warm session or starts one for the task; a failed outcome if none can start. */
  async #open(): Promise<Outcome | undefined> {
    this.#throwIfHalted();
    const d = this.#deps;
    const binding = {
      logFile: join(d.dir, 'executor.log'),
      pidFile: join(d.dir, EXECUTOR_PID_FILE),
      onElicit: (params: ElicitRequest['params'], signal: AbortSignal) => this.#ask(params, signal),
      onProgress: (p: ProgressParams) => this.#onProgress(p),
    };
    // A warm session was initialised and its tools checked while it waited: the task starts with its call.
    const warm = d.warm?.take();
    if (warm) {
      warm.assign(binding);
      this.#session = warm;
      return undefined;
    }
    try {
      trace('worker.spawn', this.spec.taskId);
      this.#session = await ExecutorSession.start({
        command: d.command,
        cwd: d.cwd,
        env: {
          ...d.env,
          NFLTR_TASK_ID: this.spec.taskId,
          NFLTR_TASK_INPUT_DIR: this.inputDir,
          NFLTR_TASK_OUTPUT_DIR: this.outputDir,
        },
        reaper: d.reaper,
        ...(d.user ? { user: d.user } : {}),
        ...binding,
        logger: this.#log,
      });
      trace('worker.initialized', this.spec.taskId);
      await checkTaskTool(this.#session, d.choice);
    } catch (err) {
      this.#throwIfHalted();
      const message = (err as Error).message;
      d.onSpawn(false, message);
      return { kind: 'failed', reason: 'executor_unavailable', message };
    }
    d.onSpawn(true);
    return undefined;
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
    this.#throwIfHalted();
    const session = this.#session as ExecutorSession;
    try {
      // Our own progress token (the task id, as in the contract's example): progress is read from the
      // session's transport tap, see ExecutorStartOptions.onProgress.
      const params = {
        name: d.choice.name,
        arguments: buildToolArguments(d.choice, input),
        _meta: { progressToken: this.spec.taskId },
      };
      // The task's own timeout_ms is enforced by this runner (it must not reset on progress).
      const options = { signal: this.#abort.signal, timeout: NO_REQUEST_TIMEOUT_MS };
      const result = d.choice.task
        ? await this.#callAsTask(session, params, options)
        : ((await session.client.callTool(params, undefined, options)) as CallToolResult);
      trace('worker.result', this.spec.taskId);
      this.#throwIfHalted();
      return { kind: 'result', result };
    } catch (err) {
      this.#throwIfHalted();
      if (isConnectionClosed(err) && session.fatal) {
        await session.stop(0);
        return { kind: 'failed', reason: 'executor_failed', message: session.fatal.message };
      }
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

  /**
   * A tool that requires task-based execution: called task-augmented (the SDK's experimental tasks
   * client polls it); its status messages become `running` events.
   */
  async #callAsTask(
    session: ExecutorSession,
    params: Parameters<ExecutorSession['client']['callTool']>[0],
    options: { signal: AbortSignal; timeout: number },
  ): Promise<CallToolResult> {
    for await (const m of session.client.experimental.tasks.callToolStream(params, undefined, options)) {
      if (m.type === 'result') return m.result as CallToolResult;
      if (m.type === 'error') throw m.error;
      const t = m.task;
      if (this.#halt || this.#questions.length > 0) continue;
      this.#emit({
        state: 'running',
        message: `executor task ${t.taskId} ${t.status}${t.statusMessage ? `: ${t.statusMessage}` : ''}`,
      });
    }
    throw new Error('the executor ended the task stream without a result');
  }

  /**
   * Re-armed by every event: after `stallAfterMs` of silence (not while a question waits for the
   * planner) a `running` event says how long it has been and what the last sign of life was.
   */
  #armStall(): void {
    const ms = this.#deps.stallAfterMs ?? 0;
    clearTimeout(this.#stallTimer);
    if (ms <= 0 || this.events.finished) return;
    this.#stallTimer = setTimeout(() => {
      if (this.#halt || this.events.finished) return;
      if (this.#state === 'waiting_input') return this.#armStall();
      const silent = formatDuration(Date.now() - this.#lastSign.at);
      const stderr = this.#session?.logTail(1).trim();
      this.#emit(
        {
          state: 'running',
          message:
            `no sign of life from the executor for ${silent} (--stall-after ${formatDuration(ms)}); the last was: ${this.#lastSign.what}` +
            (stderr ? `; its stderr last said: ${stderr.slice(0, 300)}` : ''),
        },
        true,
        true,
      );
    }, ms);
    this.#stallTimer.unref();
  }

  #onProgress(p: ProgressParams): void {
    if (this.#halt || p.progressToken !== this.spec.taskId) return;
    const message = p.message ?? `progress ${p.progress}${p.total !== undefined ? ` of ${p.total}` : ''}`;
    this.#progress.push({ state: 'running', message, progress: p.progress, total: p.total ?? 0 });
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
    // Stop the executor while the artifacts go out; the slot is released only once it is gone. An
    // executor that declared `reuse` goes back to the warm pool after a result (never after a halt).
    const s = this.#session;
    const kept = s && this.#deps.warm?.release(s, outcome.kind === 'result' && !this.#halt);
    const stopping = kept ? undefined : s?.stop(this.#deps.killGraceMs);
    let final: TaskEventInit;
    if (outcome.kind === 'result') {
      const r = outcome.result;
      let resultText = resultTextOf(r);
      let structuredJson = r.structuredContent !== undefined ? JSON.stringify(r.structuredContent) : '';
      let artifacts: ArtifactInfo[] = [];
      try {
        ({ resultText, structuredJson } = await this.#spillLargeResult(resultText, structuredJson));
        artifacts = await this.#sendOutputs(r);
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
    // An executor that returned its result has done its work: its exit (awaited below, before the
    // task counts as done) no longer holds back the slot and the final event. A halted one is waited
    // for first, so that `cancelled` or `failed` means the process is gone.
    if (outcome.kind !== 'result') await stopping;
    await this.#receiver?.abort().catch(() => {});
    await this.events.folderFlushed();
    this.#sideLink?.();
    this.#deps.onTerminal();
    this.#emit(final);
    trace('worker.final', this.spec.taskId);
    this.#deps.warm?.refill();
    await stopping;
    this.#log.info('task ended', {
      task: this.spec.taskId,
      state: final.state,
      reason: final.reason || undefined,
    });
  }

  /**
   * A result text or structured content too large for one relay frame goes into `output/` as a file (so
   * it travels as an artifact, verified); the event keeps the text's beginning and says where the rest is.
   */
  async #spillLargeResult(
    resultText: string,
    structuredJson: string,
  ): Promise<{ resultText: string; structuredJson: string }> {
    const notes: string[] = [];
    const textBytes = Buffer.byteLength(resultText);
    if (textBytes > INLINE_RESULT_BYTES) {
      await writeFile(join(this.outputDir, RESULT_TEXT_FILE), resultText);
      notes.push(`the result text is ${textBytes} bytes; the whole text is the artifact ${RESULT_TEXT_FILE}`);
      resultText = cutText(resultText, EVENT_TEXT_BYTES);
    }
    const jsonBytes = Buffer.byteLength(structuredJson);
    if (jsonBytes > INLINE_RESULT_BYTES) {
      await writeFile(join(this.outputDir, RESULT_STRUCTURED_FILE), structuredJson);
      notes.push(
        `the structured content is ${jsonBytes} bytes of JSON, in the artifact ${RESULT_STRUCTURED_FILE}`,
      );
      structuredJson = '';
    }
    if (notes.length === 0) return { resultText, structuredJson };
    this.#log.info('result too large to travel inline; sent as files', { task: this.spec.taskId, notes });
    return { resultText: `${resultText}\n\n[nfltr: ${notes.join('; ')}]`, structuredJson };
  }

  /** Streams the result files; resolves once the planner acknowledged every one (or discarded it). */
  async #sendOutputs(result: CallToolResult): Promise<ArtifactInfo[]> {
    const { files, skipped } = await collectResultFiles({
      taskDir: this.#deps.dir,
      outputDir: this.outputDir,
      content: result.content,
    });
    if (skipped.length > 0)
      this.#log.warn('output entries not returned', { task: this.spec.taskId, skipped });
    try {
      checkArtifactLimit(files, this.#deps.maxArtifactBytes, LIMIT_FLAG);
    } catch (err) {
      throw new Error(`output files refused: ${(err as Error).message}`);
    }
    const infos = await describeFiles(files);
    if (files.length === 0) return infos;
    const direct = this.#deps.direct;
    // A file above --p2p-threshold: all are offered on a direct link (the relay when none connects).
    const viaLink = direct && files.some((f) => f.size > direct.threshold) ? direct : undefined;
    const send = (msg: A2aBody) => {
      this.#throwIfHalted();
      return this.#deps.send(msg);
    };
    let acked = 0;
    const onProgress = (bytes: number) => {
      acked = bytes;
      progress.update(bytes);
    };
    const sender = viaLink
      ? undefined
      : new ArtifactSender(files, {
          taskId: this.spec.taskId,
          send,
          whenWritable: this.#deps.whenWritable,
          signal: this.#abort.signal,
          chunkHashes: !this.#deps.sealed,
          sendConsumesData: this.#deps.sealed,
          corruptChunk: this.#deps.testCorruptChunk,
          logger: this.#log,
          onProgress,
        });
    const progress = new ProgressThrottle(
      infos.reduce((n, f) => n + Number(f.size), 0),
      (done, total) => {
        const resent = sender?.counters.bytesResent ?? 0;
        this.#emit({
          state: 'running',
          message:
            `sending output files: ${progressText(done, total)}` +
            (resent > 0 ? `, ${resent} bytes re-sent after a reconnect` : ''),
          progress: done,
          total,
        });
      },
    );
    this.#sender = sender;
    const lease = this.#lease(
      () => acked,
      (ms) =>
        `the executor finished but its result could not be delivered: the planner acknowledged none of the output files for ${ms} ` +
        `(${sender ? `${sender.counters.bytesSent} bytes sent, ${acked} acknowledged` : `${acked} bytes acknowledged`}). ` +
        `The files stay on the worker in ${this.outputDir}`,
    );
    try {
      const names = files.map((f) => f.name).join(', ');
      const report = viaLink
        ? await sendFiles({
            channel: {
              send,
              whenWritable: this.#deps.whenWritable,
              subscribe: (handler) => {
                this.#outgoing = handler;
                return () => {
                  this.#outgoing = undefined;
                };
              },
            },
            identity: viaLink.identity,
            addresses: viaLink.addresses(),
            transferId: `${this.spec.taskId}/output`,
            taskId: this.spec.taskId,
            files,
            infos,
            relayIfUnanswered: true,
            signal: this.#abort.signal,
            corruptChunk: this.#deps.testCorruptChunk,
            onPath: (c) => this.#emit({ state: 'running', message: `output files ${names}: ${pathText(c)}` }),
            onProgress,
            logger: this.#log,
          })
        : await sender!.run();
      this.#log.info('output files sent', {
        task: this.spec.taskId,
        files: report.files,
        bytes: report.bytes,
        path: 'path' in report ? report.path : undefined,
        bytes_sent: report.bytesSent,
        bytes_resent: report.bytesResent,
        discarded: report.failed.length ? report.failed : undefined,
      });
    } finally {
      clearInterval(lease);
      this.#sender = undefined;
    }
    return infos;
  }

  /**
   * The slot lease while files move between planner and worker: when no byte has made progress for
   * `slotLeaseMs` (the planner gone, frozen, or its link down), the task fails with `lease_expired`,
   * which frees the slot; the event waits in the log for the planner's resume, so both sides end the
   * same. `progress` counts the bytes acknowledged (output) or received (input); `why` says what stalled.
   */
  #lease(progress: () => number, why: (ms: string) => string): NodeJS.Timeout | undefined {
    const ms = this.#deps.slotLeaseMs ?? 0;
    if (ms <= 0) return undefined;
    let last = { at: Date.now(), bytes: progress() };
    const timer = setInterval(
      () => {
        const now = Date.now();
        if (progress() !== last.bytes) last = { at: now, bytes: progress() };
        if (now - last.at < ms) return;
        clearInterval(timer);
        this.halt({
          kind: 'lease_expired',
          message: `${why(formatDuration(ms))}; the worker's slot was reclaimed (--slot-lease)`,
        });
      },
      Math.min(1_000, ms),
    );
    timer.unref();
    return timer;
  }

  #ask(params: ElicitRequest['params'], signal: AbortSignal): Promise<ElicitResult> {
    if (this.#halt) return Promise.resolve({ action: 'cancel' });
    const requestedSchema = 'requestedSchema' in params ? params.requestedSchema : undefined;
    const requestedSchemaJson = JSON.stringify(requestedSchema ?? {});
    const schemaBytes = Buffer.byteLength(requestedSchemaJson);
    if (schemaBytes > INLINE_RESULT_BYTES) {
      // A question must fit one event; the executor hears "decline" and may ask a smaller one.
      this.#emit({
        state: 'running',
        message: `the executor asked a question whose schema is ${schemaBytes} bytes, over the ${INLINE_RESULT_BYTES} a question can carry; it was declined`,
      });
      return Promise.resolve({ action: 'decline' });
    }
    return new Promise((resolve) => {
      const q: Question = { params, resolve, answering: false, seq: 0n };
      this.#questions.push(q);
      q.seq =
        this.#emit({ state: 'waiting_input', question: params.message, requestedSchemaJson })?.seq ?? 0n;
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

  /**
   * Resolves when every announced file has arrived and verified in `input/`; rejects (and halts the
   * task, naming the file) on a bad file, or on a halt.
   */
  #receive(files: ArtifactInfo[], what: string): Promise<void> {
    const d = this.#deps;
    this.#receiver ??= new ArtifactReceiver({
      taskId: this.spec.taskId,
      dir: this.inputDir,
      partialDir: join(d.dir, '.incoming'),
      maxBytes: d.maxArtifactBytes,
      limitFlag: LIMIT_FLAG,
      logger: this.#log,
      sendAck: (ack) => {
        d.send({ case: 'artifactAck', value: ack }).catch(() => {});
      },
    });
    const total = files.reduce((n, f) => n + Number(f.size), 0);
    let duplicates = 0;
    const progress = new ProgressThrottle(total, (done) =>
      this.#emit({
        state: 'running',
        message:
          `receiving ${what}: ${progressText(done, total)}` +
          (duplicates > 0 ? `, ${duplicates} bytes received twice after a reconnect` : ''),
        progress: done,
        total,
      }),
    );
    let done: Promise<unknown>;
    let received = 0;
    try {
      done = this.#receiver.expect(files, {
        onProgress: (bytes, _total, dup) => {
          received = bytes;
          duplicates = dup;
          progress.update(bytes);
        },
      });
    } catch (err) {
      queueMicrotask(() =>
        this.halt({ kind: 'artifact_error', message: `${what} refused: ${(err as Error).message}` }),
      );
      return Promise.reject(err);
    }
    const lease = this.#lease(
      () => received,
      (ms) =>
        `${what} stopped arriving: no byte came from the planner for ${ms} (${received} of ${total} bytes received)`,
    );
    done.finally(() => clearInterval(lease)).catch(() => {});
    this.#onHalt.push(() => clearInterval(lease));
    return new Promise<void>((resolve, reject) => {
      done.then(
        () => resolve(),
        (err: Error) => {
          this.halt({ kind: 'artifact_error', message: `${what} refused: ${err.message}` });
          reject(err);
        },
      );
      this.#onHalt.push(() => reject(new Halted()));
    });
  }

  #emit(init: TaskEventInit, flush = true, stall = false): TaskEvent | undefined {
    if (this.events.finished) return undefined;
    this.#progress.cancel(); // this event supersedes progress still held back
    this.#state = init.state;
    if (!stall) {
      const what = init.state === 'waiting_input' ? `a question: ${init.question}` : init.message;
      this.#lastSign = { at: Date.now(), what: what ? `${init.state} "${what}"` : init.state };
    }
    // One event must fit one relay frame: long texts are cut (a result's are sent as files beforehand).
    if (init.message) init = { ...init, message: cutText(init.message, EVENT_TEXT_BYTES) };
    if (init.question) init = { ...init, question: cutText(init.question, EVENT_TEXT_BYTES) };
    if (init.resultText && Buffer.byteLength(init.resultText) > INLINE_RESULT_BYTES)
      init = { ...init, resultText: cutText(init.resultText, EVENT_TEXT_BYTES) };
    if (init.structuredJson && Buffer.byteLength(init.structuredJson) > INLINE_RESULT_BYTES)
      init = { ...init, structuredJson: '' };
    // Stored (and flushed) before it is sent: the planner never sees an event the log could lose.
    const event = this.events.append(init, flush);
    this.#armStall();
    this.#deps.send({ case: 'taskEvent', value: event }).catch((err: Error) =>
      this.#log.warn('could not send task event; the planner can resume', {
        task: this.spec.taskId,
        seq: String(event.seq),
        error: err.message,
      }),
    );
    return event;
  }
}

/** Hands folders and what is in them to the executor's user (input files arrive owned by the worker). */
async function chownTree(dirs: string[], u: ExecutorUser): Promise<void> {
  for (const dir of dirs) {
    await chown(dir, u.uid, u.gid);
    for (const e of await readdir(dir, { recursive: true })) await chown(join(dir, e), u.uid, u.gid);
  }
}

function haltEvent(h: HaltReason): TaskEventInit {
  return h.kind === 'cancelled'
    ? { state: 'cancelled', reason: 'cancelled', message: h.message }
    : { state: 'failed', reason: h.kind, message: h.message };
}

/** `text` cut to at most `maxBytes` of UTF-8, saying how much was left out. */
export function cutText(text: string, maxBytes: number): string {
  const bytes = Buffer.byteLength(text);
  if (bytes <= maxBytes) return text;
  const head = Buffer.from(text)
    .subarray(0, maxBytes)
    .toString('utf8')
    .replace(/\uFFFD$/, '');
  return `${head}… [${bytes - Buffer.byteLength(head)} more bytes cut]`;
}

/** The text of a tool result; other content kinds are named, since only text crosses as result_text. */
export function resultTextOf(r: CallToolResult): string {
  return (r.content ?? [])
    .map((c) =>
      c.type === 'text'
        ? c.text
        : c.type === 'resource_link'
          ? `[resource_link ${c.uri}]`
          : `[${c.type} content not forwarded]`,
    )
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
  const schema = 'requestedSchema' in params ? params.requestedSchema : undefined;
  return answerObject(value, schema) as ElicitContent;
}

type ElicitContent = NonNullable<ElicitResult['content']>;

/** Which path carries a task's files from now on, for its events. */
function pathText(c: PathChange): string {
  return c.path === 'direct'
    ? `direct path (peer to peer, ${c.remote ?? 'connected'})`
    : `relay path${c.why ? ` (${c.why})` : ''}`;
}
