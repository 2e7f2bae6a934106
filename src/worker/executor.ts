/**
 * @module The executor side of a worker: the `--mcp-command` turned into argv and an allow-listed
 * environment, one MCP client session per executor process (stderr captured into a log, never our
 * stdout), choosing the task tool, building its arguments (`run_task` or an adapted tool), and a staged
 * stop that takes the executor's whole process tree with it. See docs/executor-contract.md.
 */
import { createWriteStream, type WriteStream } from 'node:fs';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { getDefaultEnvironment } from '@modelcontextprotocol/sdk/client/stdio.js';
import {
  type ElicitRequest,
  ElicitRequestSchema,
  type ElicitResult,
  ErrorCode,
  type Implementation,
  McpError,
  type ProgressNotification,
  type Tool,
} from '@modelcontextprotocol/sdk/types.js';
import { type CommandLineError, joinCommandLine, splitCommandLine } from '../util/command-line.js';
import { type Logger, silentLogger } from '../util/log.js';
import { VERSION } from '../util/version.js';
import type { ExecutorCgroup } from './cgroup.js';
import { WorkerConfigError } from './errors.js';
import { ExecutorTransport } from './executor-transport.js';
import { clearExecutorPid, type ExecutorReaper, recordExecutorPid } from './reaper.js';

export const RUN_TASK_TOOL = 'run_task';
/** The contract's readiness tool (docs/executor-contract.md). */
export const CHECK_READY_TOOL = 'check_ready';
/** The largest timer Node accepts; MCP's customary 60 s request limit must not end long tasks. */
export const NO_REQUEST_TIMEOUT_MS = 2_147_483_647;
const TAIL_BYTES = 8 * 1024;

export interface ExecutorCommand {
  command: string;
  args: string[];
}

/**
 * Parses `--mcp-command`. A leading `nfltr` runs the same nfltr as this worker (`self`), so
 * `nfltr shell-mcp …` works without nfltr on PATH and never picks up another version.
 */
export function parseExecutorCommand(
  text: string,
  self?: { execPath: string; script: string },
): ExecutorCommand {
  let words: string[];
  try {
    words = splitCommandLine(text);
  } catch (err) {
    throw new WorkerConfigError(`--mcp-command: ${(err as CommandLineError).message}`);
  }
  const [command, ...args] = words;
  if (!command)
    throw new WorkerConfigError('--mcp-command is empty: give the command that starts the executor');
  if (command === 'nfltr' && self) return { command: self.execPath, args: [self.script, ...args] };
  return { command, args };
}

/** Variables passed through besides the SDK's defaults; everything else (tokens, keys) stays with us. */
const EXTRA_ENV = ['PATH', 'HOME', 'TMPDIR', 'LANG', 'LC_ALL', 'NFLTR_LOG_LEVEL'];

/** The worker's own secrets: never passed to an executor, not even through `--executor-env`. */
export const WORKER_SECRETS = ['NFLTR_API_KEY', 'NFLTR_API_KEY_FILE', 'NFLTR_E2EE_KEY_FILE'];

/**
 * The executor's environment: the SDK's safe defaults, PATH/HOME, a few locale variables, the log
 * level, and what `--executor-env` names. No other `NFLTR_*` variable: an executor has no business on
 * the relay under our account, nor with the pairing key. Throws naming `--executor-env` when it lists
 * one of {@link WORKER_SECRETS}.
 */
export function executorEnvironment(
  extra: Record<string, string> = {},
  env: NodeJS.ProcessEnv = process.env,
  passThrough: readonly string[] = [],
): Record<string, string> {
  const secret = passThrough.find((k) => WORKER_SECRETS.includes(k));
  if (secret) {
    throw new WorkerConfigError(
      `--executor-env ${secret}: that is the worker's own secret, which tasks must not reach; give the executor credentials of its own`,
    );
  }
  const out = getDefaultEnvironment();
  for (const [k, v] of Object.entries(env)) {
    if (v === undefined || v.startsWith('()')) continue;
    if (EXTRA_ENV.includes(k) || passThrough.includes(k)) out[k] = v;
  }
  return { ...out, ...extra };
}

/** The OS user executors run as (`--executor-user`), when not the worker's own. */
export interface ExecutorUser {
  name: string;
  uid: number;
  gid: number;
  home: string;
}

export interface ToolChoice {
  name: string;
  /**
   * `contract`: the run_task arguments; `prompt`: one composed prompt in {@link promptField}; `bare`: no
   * arguments (a tool whose inputs are all optional and none can take a prompt).
   */
  mode: 'contract' | 'prompt' | 'bare';
  promptField?: string;
  /** The tool requires task-based execution (`execution.taskSupport: "required"`): called as an MCP task. */
  task?: boolean;
  tool: Tool;
}

const PROMPT_FIELD_PREFERENCE = ['prompt', 'objective', 'task', 'input', 'query', 'message'];

type JsonSchema = { type?: unknown; properties?: Record<string, { type?: unknown }>; required?: unknown };

function stringProperties(schema: JsonSchema): string[] {
  const props = schema.properties ?? {};
  return Object.keys(props).filter((k) => {
    const t = props[k]?.type;
    return t === 'string' || (Array.isArray(t) && t.includes('string'));
  });
}

/**
 * The field an adapted tool gets the prompt in: the first required string property named like a prompt
 * (in {@link PROMPT_FIELD_PREFERENCE} order), else the first required string property, else an
 * optional one named like a prompt, else the only string property.
 */
export function mainStringField(schema: JsonSchema): string | undefined {
  const strings = stringProperties(schema);
  const required = new Set(Array.isArray(schema.required) ? (schema.required as string[]) : []);
  const req = strings.filter((k) => required.has(k));
  return (
    PROMPT_FIELD_PREFERENCE.find((n) => req.includes(n)) ??
    req[0] ??
    PROMPT_FIELD_PREFERENCE.find((n) => strings.includes(n)) ??
    (strings.length === 1 ? strings[0] : undefined)
  );
}

/** Whether a tool takes the run_task arguments (by name, or by an input schema shaped like it). */
function speaksContract(tool: Tool): boolean {
  if (tool.name === RUN_TASK_TOOL) return true;
  const props = tool.inputSchema.properties ?? {};
  return ['objective', 'input_dir', 'output_dir'].every((k) => k in props);
}

/** The executor's tools, one name a line (descriptions can be kilobytes; `tools/list` has them). */
const describeTools = (tools: Tool[]) =>
  tools.length === 0 ? 'it offers no tools' : `its tools:\n${tools.map((t) => `  ${t.name}`).join('\n')}`;

/** What to use instead when an executor has no task-running tool. */
const ALTERNATIVES =
  'start an executor that runs whole AI tasks instead (nfltr claude-mcp, nfltr copilot-mcp, nfltr codex-mcp), or name the tool that runs a task with --mcp-tool NAME';

/** Properties a call must give: required ones without a default. */
function requiredWithoutDefault(schema: JsonSchema): string[] {
  const props = (schema.properties ?? {}) as Record<string, { default?: unknown }>;
  const required = Array.isArray(schema.required) ? (schema.required as string[]) : [];
  return required.filter((k) => props[k]?.default === undefined);
}

/**
 * Chooses the task tool: `preferred` (`--mcp-tool`), else `run_task`, else the only tool. Throws a
 * {@link WorkerConfigError} listing the server's tools when none can be chosen or adapted.
 */
export function chooseTool(tools: Tool[], preferred?: string): ToolChoice {
  let tool: Tool | undefined;
  if (preferred) {
    tool = tools.find((t) => t.name === preferred);
    if (!tool)
      throw new WorkerConfigError(
        `--mcp-tool ${preferred}: the executor has no such tool; ${describeTools(tools)}`,
      );
  } else {
    // check_ready is the contract's health tool, never the task tool.
    const candidates = tools.filter((t) => t.name !== CHECK_READY_TOOL);
    tool =
      candidates.find((t) => t.name === RUN_TASK_TOOL) ??
      (candidates.length === 1 ? candidates[0] : undefined);
    if (!tool) {
      throw new WorkerConfigError(
        `cannot choose a task tool: the executor has no ${RUN_TASK_TOOL} tool and ${candidates.length === 0 ? 'no other tool' : `${candidates.length} other tools`}; ${ALTERNATIVES}; ${describeTools(tools)}`,
      );
    }
  }
  const task = tool.execution?.taskSupport === 'required' ? { task: true } : {};
  if (speaksContract(tool)) return { name: tool.name, mode: 'contract', tool, ...task };
  const schema = tool.inputSchema as JsonSchema;
  const promptField = mainStringField(schema);
  if (promptField) return { name: tool.name, mode: 'prompt', promptField, tool, ...task };
  const needed = requiredWithoutDefault(schema);
  if (needed.length === 0) return { name: tool.name, mode: 'bare', tool, ...task };
  throw new WorkerConfigError(
    `tool ${tool.name} has no string input to put the task prompt in, and needs ${needed.join(', ')}, which the worker cannot fill; ${ALTERNATIVES}; ${describeTools(tools)}`,
  );
}

export interface TaskInput {
  taskId: string;
  objective: string;
  context?: unknown;
  constraints?: unknown;
  inputDir: string;
  outputDir: string;
}

/** Nothing sent: absent, or an object without keys (planners send `{}` for "none"). */
const isEmpty = (v: unknown) =>
  v === undefined || v === null || (typeof v === 'object' && Object.keys(v as object).length === 0);

/** One prompt for a tool that knows nothing of run_task: objective, context, constraints, folders. */
export function composePrompt(t: TaskInput): string {
  const parts = [t.objective];
  if (!isEmpty(t.context)) parts.push(`Context (JSON):\n${JSON.stringify(t.context, null, 2)}`);
  if (!isEmpty(t.constraints)) parts.push(`Constraints (JSON):\n${JSON.stringify(t.constraints, null, 2)}`);
  parts.push(
    `Input files from the planner, if any, are in ${t.inputDir}\n` +
      `Write any result files into ${t.outputDir} (they are returned as artifacts)`,
  );
  return parts.join('\n\n');
}

export function buildToolArguments(choice: ToolChoice, t: TaskInput): Record<string, unknown> {
  if (choice.mode === 'bare') return {};
  if (choice.mode === 'prompt') {
    // Other required strings without a default (a `description`, a `title`) get the objective's first line.
    const short = t.objective.trim().split('\n')[0]!.slice(0, 80);
    const others = requiredWithoutDefault(choice.tool.inputSchema as JsonSchema).filter(
      (k) => k !== choice.promptField && stringProperties(choice.tool.inputSchema as JsonSchema).includes(k),
    );
    return { ...Object.fromEntries(others.map((k) => [k, short])), [choice.promptField!]: composePrompt(t) };
  }
  const args: Record<string, unknown> = {
    task_id: t.taskId,
    objective: t.objective,
    input_dir: t.inputDir,
    output_dir: t.outputDir,
  };
  if (t.context !== undefined) args.context = t.context;
  if (t.constraints !== undefined) args.constraints = t.constraints;
  return args;
}

/**
 * How an executor lets its sessions be used (docs/executor-contract.md §1), declared in its `initialize`
 * answer as `capabilities.experimental["nfltr/session"]`: `fresh` (`{"fresh": true}`: it reads the task
 * from its environment, so it is started for each task, never ahead), `reuse` (`{"reuse": true}`: one
 * session may run tasks one after another), else `single` (it may be started ahead of its task, then runs
 * that one task and is retired).
 */
export type SessionPolicy = 'fresh' | 'single' | 'reuse';

/** The experimental capability an executor declares its {@link SessionPolicy} in. */
export const SESSION_CAPABILITY = 'nfltr/session';

export function sessionPolicy(
  capabilities: { experimental?: Record<string, unknown> } | undefined,
): SessionPolicy {
  const d = capabilities?.experimental?.[SESSION_CAPABILITY] as
    | { fresh?: unknown; reuse?: unknown }
    | undefined;
  if (d?.fresh === true) return 'fresh';
  return d?.reuse === true ? 'reuse' : 'single';
}

/** A local failure of an executor session; `spawn` and `handshake` mean the executor is unusable. */
export class ExecutorError extends Error {
  constructor(
    readonly code: 'spawn' | 'handshake',
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'ExecutorError';
  }
}

export type ElicitHandler = (params: ElicitRequest['params'], signal: AbortSignal) => Promise<ElicitResult>;

export type ProgressParams = ProgressNotification['params'];

/** Where a session reports: the task it runs, or the warm pool while it waits for one (see assign). */
export interface SessionBinding {
  /** The executor's stderr is appended here. */
  logFile: string;
  onElicit?: ElicitHandler;
  /**
   * Every `notifications/progress` from the executor, in arrival order. Tapped at the transport: the
   * SDK dispatches progress a microtask late and drops it when the result came in the same read.
   */
  onProgress?: (params: ProgressParams) => void;
  /** Where to record the executor's pid while it runs (the task folder's `executor.pid`). */
  pidFile?: string;
}

export interface ExecutorStartOptions extends SessionBinding {
  command: ExecutorCommand;
  cwd?: string;
  env: Record<string, string>;
  /** Limit for spawn + MCP initialize. */
  startTimeoutMs?: number;
  /** Kills the executor's process group if this worker dies (see reaper.ts). */
  reaper?: ExecutorReaper;
  /** Runs the executor as this OS user (the worker runs as root). */
  user?: ExecutorUser;
  logger?: Logger;
}

/**
 * One executor process with its MCP client. Started with {@link ExecutorSession.start}; ended with
 * {@link stop}. `crashed` tells an exit we did not ask for from one we did.
 */
export class ExecutorSession {
  readonly client: Client;
  readonly pid: number;
  readonly #transport: ExecutorTransport;
  readonly #stderrEnded: Promise<void>;
  #log: WriteStream;
  readonly #bound: SessionBinding;
  readonly #cgroup: ExecutorCgroup | undefined;
  readonly #logger: Logger;
  #tail = '';
  #stopping = false;
  #closed = false;
  #crashed = false;
  #exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  readonly #closedPromise: Promise<void>;
  #stopPromise: Promise<void> | undefined;
  /** Kills what is left in the executor's cgroup; resolves with how many processes that was. */
  #release: () => Promise<number> = async () => 0;

  private constructor(
    client: Client,
    transport: ExecutorTransport,
    log: WriteStream,
    closed: Promise<void>,
    bound: SessionBinding,
    cgroup: ExecutorCgroup | undefined,
    logger: Logger,
  ) {
    this.client = client;
    this.#transport = transport;
    const stderr = transport.stderr;
    this.#stderrEnded = new Promise((r) => stderr.once('end', () => r()));
    this.pid = transport.pid ?? 0;
    this.#log = log;
    this.#closedPromise = closed;
    this.#bound = bound;
    this.#cgroup = cgroup;
    this.#logger = logger;
  }

  /** Spawns the executor and runs the MCP handshake; throws {@link ExecutorError} saying what failed. */
  static async start(opts: ExecutorStartOptions): Promise<ExecutorSession> {
    const logger = opts.logger ?? silentLogger;
    const log = openLog(opts.logFile, logger);
    // Mutable: a warm session is bound to its task later (assign).
    const bound: SessionBinding = {
      logFile: opts.logFile,
      onElicit: opts.onElicit,
      onProgress: opts.onProgress,
      pidFile: opts.pidFile,
    };
    const u = opts.user;
    let cgroup: ExecutorCgroup | undefined;
    const transport = new ExecutorTransport({
      command: opts.command.command,
      args: opts.command.args,
      env: u ? { ...opts.env, HOME: u.home, USER: u.name, LOGNAME: u.name } : opts.env,
      cwd: opts.cwd,
      ...(u ? { uid: u.uid, gid: u.gid } : {}),
      onSpawn: (pid) => {
        cgroup = opts.reaper?.watch(pid);
        if (bound.pidFile) recordExecutorPid(bound.pidFile, pid, cgroup);
      },
    });
    // The same capabilities in every session (start-up check, probes, tasks): servers list tools by them.
    const client = new Client(
      { name: 'nfltr-worker', version: VERSION },
      { capabilities: { elicitation: {} } },
    );
    let session: ExecutorSession | undefined;
    let tail = '';
    transport.stderr.on('data', (chunk: Buffer) => {
      (session ? session.#log : log).write(chunk);
      if (session) session.#appendTail(chunk);
      else tail = (tail + chunk.toString('utf8')).slice(-TAIL_BYTES);
    });
    let resolveClosed!: () => void;
    const closed = new Promise<void>((r) => {
      resolveClosed = r;
    });
    let early: { code: number | null; signal: NodeJS.Signals | null } | undefined;
    transport.onclose = () => {
      const pid = transport.pid;
      if (pid) {
        opts.reaper?.unwatch(pid);
        if (bound.pidFile) clearExecutorPid(bound.pidFile);
      }
      if (session) session.#onClose();
      resolveClosed();
    };
    // Set before connect: the SDK chains its own handler after this one.
    transport.onmessage = (m) => {
      if ('method' in m && m.method === 'notifications/progress' && m.params) {
        bound.onProgress?.(m.params as ProgressParams);
      }
    };
    // Progress for a token the SDK did not register (ours) is reported here; it is expected.
    client.onerror = (err) => logger.debug('executor session', { error: err.message });
    client.setRequestHandler(ElicitRequestSchema, (req, extra) =>
      bound.onElicit
        ? bound.onElicit(req.params, extra.signal)
        : Promise.resolve<ElicitResult>({ action: 'decline' }),
    );
    const connecting = client.connect(transport, { timeout: opts.startTimeoutMs ?? 30_000 });
    // The exit code and signal name what happened in crash messages.
    transport.child?.once('exit', (code, signal) => {
      early = { code, signal };
      if (session) session.#exit = early;
    });
    try {
      await connecting;
    } catch (err) {
      const what = `${[opts.command.command, ...opts.command.args].join(' ')}`;
      await transport.close().catch(() => {});
      await opts.reaper?.release(cgroup);
      await new Promise<void>((r) => log.end(r));
      const e = err as NodeJS.ErrnoException;
      if (e.code === 'ENOENT' || e.code === 'EACCES' || e.syscall?.startsWith('spawn')) {
        throw new ExecutorError('spawn', `cannot start the executor (${what}): ${e.message}`, { cause: err });
      }
      const exit = early ? ` (${describeExit(early)})` : '';
      const lastLines = tailLines(tail, 5);
      throw new ExecutorError(
        'handshake',
        `executor (${what}) did not complete the MCP handshake${exit}: ${e.message}${lastLines ? `; its stderr ends with: ${lastLines}` : ''}`,
        { cause: err },
      );
    }
    session = new ExecutorSession(client, transport, log, closed, bound, cgroup, logger);
    session.#release = () => opts.reaper?.release(cgroup) ?? Promise.resolve(0);
    session.#tail = tail;
    session.#exit = early;
    return session;
  }

  /**
   * Hands the session to a task (or back to the warm pool): its stderr goes to `b.logFile` from now on,
   * its pid is recorded in `b.pidFile` (and no longer in the previous one), and its questions and
   * progress reach `b`'s handlers (none: questions are declined, progress dropped).
   */
  assign(b: SessionBinding): void {
    if (b.logFile !== this.#bound.logFile) {
      this.#log.end();
      this.#log = openLog(b.logFile, this.#logger);
    }
    if (this.#bound.pidFile && this.#bound.pidFile !== b.pidFile) clearExecutorPid(this.#bound.pidFile);
    if (b.pidFile && !this.#closed) recordExecutorPid(b.pidFile, this.pid, this.#cgroup);
    Object.assign(this.#bound, { onElicit: undefined, onProgress: undefined, pidFile: undefined }, b);
  }

  /** How the executor lets its sessions be used, as it declared at `initialize`. */
  get policy(): SessionPolicy {
    return sessionPolicy(this.client.getServerCapabilities());
  }

  /** False once the process has gone (crashed, or stopped). */
  get alive(): boolean {
    return !this.#closed && !this.#stopping;
  }

  /** True once the process went away without {@link stop} being called. */
  get crashed(): boolean {
    return this.#crashed;
  }

  /** Why the worker ended the executor itself (an oversized message), if it did. */
  get fatal(): Error | undefined {
    return this.#transport.fatal;
  }

  /** "exited with code 3", "killed by SIGKILL", or "exited". */
  get exitDescription(): string {
    return this.#exit ? describeExit(this.#exit) : 'exited';
  }

  /** The last lines the executor wrote to stderr (for error messages; the full text is in the log). */
  logTail(lines = 10): string {
    return tailLines(this.#tail, lines);
  }

  /** Resolves when the executor's process has closed (after a crash or a stop). */
  get closed(): Promise<void> {
    return this.#closedPromise;
  }

  /** The server's name and version from its `initialize` answer. */
  get serverInfo(): Implementation | undefined {
    return this.client.getServerVersion();
  }

  /** Every tool of the server, following pagination. */
  async listAllTools(timeoutMs = 30_000): Promise<Tool[]> {
    const tools: Tool[] = [];
    let cursor: string | undefined;
    do {
      const page = await this.client.listTools(cursor ? { cursor } : undefined, { timeout: timeoutMs });
      tools.push(...page.tools);
      cursor = page.nextCursor;
    } while (cursor);
    return tools;
  }

  /**
   * Ends the session in stages (ExecutorTransport.stop): close stdin, wait `graceMs`, SIGTERM the
   * executor's group and descendants, wait, SIGKILL what is left; then kill what is left of its cgroup.
   */
  stop(graceMs = 2_000): Promise<void> {
    this.#stopPromise ??= this.#stop(graceMs);
    return this.#stopPromise;
  }

  async #stop(graceMs: number): Promise<void> {
    this.#stopping = true;
    // The transport's ladder is the one kill ladder; the SDK's close (below) joins the same run.
    const stopped = this.#transport.stop(graceMs, (signal) => {
      if (signal === 'SIGTERM') {
        this.#logger.debug('executor still running after stdin closed; sending SIGTERM', { pid: this.pid });
      } else this.#logger.warn('executor ignored SIGTERM; killing it', { pid: this.pid });
    });
    const closing = this.client.close().catch(() => {});
    await stopped;
    // What is left of its cgroup (a process that left the group with setsid) goes with it.
    const leftovers = await this.#release();
    if (leftovers > 0) {
      this.#logger.info('killed processes the executor left behind (they had left its process group)', {
        pid: this.pid,
        killed: leftovers,
      });
    }
    await Promise.race([closing, sleep(500)]);
    // The stderr pipe may still hold the executor's last words (a crash message): let them reach the log.
    await Promise.race([this.#stderrEnded, sleep(200)]);
    await new Promise<void>((r) => this.#log.end(r));
  }

  #appendTail(chunk: Buffer): void {
    this.#tail = (this.#tail + chunk.toString('utf8')).slice(-TAIL_BYTES);
  }

  #onClose(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (!this.#stopping) this.#crashed = true;
  }
}

/** Throws when the session's executor no longer offers the task tool chosen at start. */
export async function checkTaskTool(session: ExecutorSession, choice: ToolChoice): Promise<void> {
  const tools = await session.listAllTools();
  if (!tools.some((t) => t.name === choice.name)) {
    throw new Error(
      `the executor no longer offers tool ${choice.name} (it has: ${tools.map((t) => t.name).join(', ') || 'none'})`,
    );
  }
}

/** Whether an error from a call means the connection to the executor closed under it. */
export function isConnectionClosed(err: unknown): boolean {
  return err instanceof McpError && err.code === ErrorCode.ConnectionClosed;
}

function openLog(file: string, logger: Logger): WriteStream {
  const log = createWriteStream(file, { flags: 'a' });
  log.on('error', (err) => logger.warn('cannot write executor log', { file, error: err }));
  return log;
}

function describeExit(e: { code: number | null; signal: NodeJS.Signals | null }): string {
  if (e.signal) return `killed by ${e.signal}`;
  return e.code === null ? 'exited' : `exited with code ${e.code}`;
}

function tailLines(text: string, lines: number): string {
  return text.trimEnd().split('\n').slice(-lines).join('\n');
}

// Not unref'd: a worker awaiting an executor's exit must not end because nothing else keeps it alive.
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** The `check_ready` contract (docs/executor-contract.md): can the executor do AI work right now? */
export interface Readiness {
  ready: boolean;
  /** Why not, when not ready. */
  reason?: string;
  /** What to do about it (a command to run, a variable to set, a worker flag). */
  fix?: string;
}

/** Calls the executor's `check_ready` tool; an answer that breaks the contract reads as not ready. */
export async function callCheckReady(session: ExecutorSession, timeoutMs = 15_000): Promise<Readiness> {
  try {
    const r = await session.client.callTool({ name: CHECK_READY_TOOL, arguments: {} }, undefined, {
      timeout: timeoutMs,
    });
    const sc = r.structuredContent as Partial<Readiness> | undefined;
    if (typeof sc?.ready !== 'boolean') {
      return {
        ready: false,
        reason: `${CHECK_READY_TOOL} answered without structuredContent {ready: boolean}`,
      };
    }
    return {
      ready: sc.ready,
      ...(typeof sc.reason === 'string' && sc.reason ? { reason: sc.reason } : {}),
      ...(typeof sc.fix === 'string' && sc.fix ? { fix: sc.fix } : {}),
    };
  } catch (err) {
    return { ready: false, reason: `${CHECK_READY_TOOL} failed: ${(err as Error).message}` };
  }
}

/**
 * Whether the executor is Claude Code's own MCP server (`claude mcp serve`): its tools are Claude's
 * (Bash, Read, Edit, Agent…), none of which runs a whole AI task.
 */
export function isClaudeCodeServer(server: Implementation | undefined, tools: Tool[]): boolean {
  if (tools.some((t) => t.name === RUN_TASK_TOOL)) return false;
  const names = new Set(tools.map((t) => t.name));
  const claudeTools = ['Agent', 'Bash', 'Edit', 'Read', 'Write'].every((n) => names.has(n));
  return /^claude(\/|-code|$)/i.test(server?.name ?? '') || claudeTools;
}

/**
 * The executor that runs tasks for a `claude mcp serve` command line: `nfltr claude-mcp` in the worker's
 * folder, driving the same Claude Code (the words before `mcp serve`, e.g. `npx claude`).
 */
export function claudeMcpCommand(
  command: ExecutorCommand,
  self: { execPath: string; script: string },
  cwd: string,
): ExecutorCommand {
  const words = [command.command, ...command.args];
  const at = words.findIndex((w, i) => w === 'mcp' && words[i + 1] === 'serve');
  const claude = at > 0 ? words.slice(0, at) : ['claude'];
  return {
    command: self.execPath,
    args: [self.script, 'claude-mcp', '--cwd', cwd, '--claude-command', joinCommandLine(claude)],
  };
}

export interface ExecutorCheck {
  /** Undefined when the executor is Claude Code's own server, to be replaced ({@link isClaudeCodeServer}). */
  choice?: ToolChoice;
  tools: Tool[];
  server?: Implementation;
  /** The executor's `check_ready` answer, when it has that tool. */
  readiness?: Readiness;
  /** How its sessions may be used ({@link SessionPolicy}). */
  policy: SessionPolicy;
}

/**
 * The start-up check: launches the executor once, lists its tools, chooses the task tool and asks
 * `check_ready` when offered. Throws a {@link WorkerConfigError} saying why the worker cannot run tasks
 * with it. A tool that must run as an MCP task needs a server that takes task-augmented tool calls.
 */
export async function checkExecutor(opts: ExecutorStartOptions & { tool?: string }): Promise<ExecutorCheck> {
  let session: ExecutorSession;
  try {
    session = await ExecutorSession.start(opts);
  } catch (err) {
    throw new WorkerConfigError(`--mcp-command: ${(err as Error).message}`, { cause: err });
  }
  try {
    const tools = await session.listAllTools().catch((err: Error) => {
      throw new WorkerConfigError(`--mcp-command: the executor did not list its tools: ${err.message}`);
    });
    const server = session.serverInfo;
    const policy = session.policy;
    if (!opts.tool && isClaudeCodeServer(server, tools)) return { tools, server, policy };
    const choice = chooseTool(tools, opts.tool);
    if (choice.task && !session.client.getServerCapabilities()?.tasks?.requests?.tools?.call) {
      throw new WorkerConfigError(
        `tool ${choice.name} requires task-based execution (execution.taskSupport "required"), but the executor does not declare tasks.requests.tools.call in its capabilities, so it cannot be called; pick another tool with --mcp-tool`,
      );
    }
    const readiness = tools.some((t) => t.name === CHECK_READY_TOOL)
      ? await callCheckReady(session)
      : undefined;
    return { choice, tools, policy, ...(server ? { server } : {}), ...(readiness ? { readiness } : {}) };
  } finally {
    await session.stop(1_000);
  }
}

/** Asks a fresh executor session its `check_ready` (for probes); throws when the executor cannot start. */
export async function probeReadiness(opts: ExecutorStartOptions): Promise<Readiness> {
  const session = await ExecutorSession.start(opts);
  try {
    return await callCheckReady(session);
  } finally {
    await session.stop(1_000);
  }
}
