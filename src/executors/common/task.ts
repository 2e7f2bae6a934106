/**
 * @module The `run_task` skeleton shared by the AI executors (`claude-mcp`, `copilot-mcp`): argument
 * checks, the prompt built from the task, the time limit, progress, questions to the planner, the
 * optional `--git-code-result` worktree around the run, and the result the worker turns into
 * `completed`/`failed`. Each executor supplies only `run`, which drives its CLI.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { isAbsolute, join } from 'node:path';
import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import type {
  CallToolResult,
  ElicitRequestFormParams,
  ElicitResult,
} from '@modelcontextprotocol/sdk/types.js';
import { z } from 'zod';
import type { Logger } from '../../util/log.js';
import type { ProcessGroups } from '../../util/process-group.js';
import {
  type ChangedPath,
  type CollectedChanges,
  checkChanges,
  collectChanges,
  createWorktree,
  type GitConstraints,
  readGitConstraints,
  runVerification,
  type VerificationResult,
  verificationError,
  type Worktree,
  WorktreeError,
} from '../git-result/index.js';
import { formatDuration } from '../shell-mcp/index.js';

/** How long one question to the planner may wait (the task's own time limit still applies). */
const QUESTION_TIMEOUT_MS = 24 * 3_600_000;

/** Progress messages carry at most this many characters. */
const MAX_PROGRESS_CHARS = 400;

/** The `run_task` arguments of docs/executor-contract.md. */
export const runTaskInputSchema = {
  task_id: z.string().describe('Task identifier chosen by the planner'),
  objective: z.string().describe('What to do, in plain words; this becomes the prompt'),
  context: z
    .record(z.unknown())
    .optional()
    .describe(
      'Structured context, passed to the AI as JSON; `base_ref` picks the commit with --git-code-result',
    ),
  constraints: z
    .record(z.unknown())
    .optional()
    .describe(
      'Limits, passed to the AI as JSON; max_minutes, and with --git-code-result allowed_paths, require_changed_paths, verification_commands',
    ),
  input_dir: z.string().describe('Absolute path of the folder holding files sent with the task'),
  output_dir: z.string().describe('Absolute path of the folder whose files are returned as artifacts'),
};

export type RunTaskArgs = {
  task_id: string;
  objective: string;
  context?: Record<string, unknown>;
  constraints?: Record<string, unknown>;
  input_dir: string;
  output_dir: string;
};

/** Tokens, cost and time of one run, as far as the CLI reports them (absent fields: not reported). */
export interface TaskUsage {
  [key: string]: unknown;
  /** The model that did the work, as the CLI names it. */
  model?: string;
  input_tokens?: number;
  output_tokens?: number;
  cache_read_tokens?: number;
  cache_write_tokens?: number;
  reasoning_tokens?: number;
  total_tokens?: number;
  cost_usd?: number;
  /** Cost in another unit than USD (e.g. premium requests), as the CLI states it. */
  cost?: { amount: number; currency: string };
  turns?: number;
  /** Wall time of the CLI run, measured by the executor when the CLI does not say. */
  duration_ms: number;
  api_duration_ms?: number;
}

/** What an executor's `run` returns. */
export interface AgentRunResult {
  ok: boolean;
  /** The AI's final answer (success) or what went wrong, in the CLI's words (failure). */
  text: string;
  usage: TaskUsage;
  session_id?: string;
  model?: string;
  /** Executor-specific facts for structuredContent (stop reason, permission denials, mode…). */
  details?: Record<string, unknown>;
}

/** What `run` gets. */
export interface AgentRunContext {
  args: RunTaskArgs;
  /** Where the CLI runs: the task's worktree with --git-code-result, else --cwd. */
  cwd: string;
  prompt: string;
  /** Aborted on cancellation, time limit or shutdown: stop the CLI (kill its process group) and return. */
  signal: AbortSignal;
  /** Environment for the CLI: this process's plus NFLTR_TASK_ID, NFLTR_TASK_INPUT_DIR, NFLTR_TASK_OUTPUT_DIR. */
  env: NodeJS.ProcessEnv;
  /** Where the CLI's process group is registered (the executor command's registry). */
  groups: ProcessGroups;
  /** Registers a temporary thing to remove if the command stops first (see {@link AgentTasks.trackCleanup}). */
  trackCleanup(fn: () => Promise<void>): () => Promise<void>;
  /** Sends one progress notification (a short human sentence). */
  report(message: string): void;
  /**
   * Asks the planner by form elicitation; resolves undefined when the MCP client cannot be asked. Rejects
   * when the task is aborted or asking fails.
   */
  ask(params: Omit<ElicitRequestFormParams, 'mode'>): Promise<ElicitResult | undefined>;
  log: Logger;
}

export interface AgentTaskSpec {
  /** `claude-mcp`, `copilot-mcp`: names the executor in results. */
  executor: string;
  /** The CLI's name in messages (`claude`, `copilot`). */
  cliName: string;
  cwd: string;
  gitCodeResult: boolean;
  timeoutMs: number;
  /** Settings pinned at start, reported in structuredContent (model, mode, effort…). */
  settings: Record<string, string | undefined>;
  /** Aborting stops every running task (shutdown). */
  signal?: AbortSignal;
  /** The command's registry of process groups (tasks' CLIs and verification commands). */
  groups: ProcessGroups;
  /** The command's tasks in progress and their pending cleanups. */
  tasks: AgentTasks;
  log: Logger;
  server: McpServer;
  run(ctx: AgentRunContext): Promise<AgentRunResult>;
}

interface ToolExtra {
  signal: AbortSignal;
  requestId: string | number;
  _meta?: { progressToken?: string | number };
  sendNotification: (n: {
    method: 'notifications/progress';
    params: { progressToken: string | number; progress: number; message?: string };
  }) => Promise<void>;
}

export interface GitCodeResultInfo {
  [key: string]: unknown;
  base_ref: string;
  base_commit: string;
  changed_paths: ChangedPath[];
  /** `changes.patch` in output_dir, or null when nothing changed. */
  patch: string | null;
  patch_bytes: number;
  disallowed_paths: string[];
  verification: VerificationResult[];
}

/** `structuredContent` of every result of an AI executor, success or failure. */
export interface AgentTaskResult {
  [key: string]: unknown;
  task_id: string;
  executor: string;
  ok: boolean;
  cwd: string;
  settings: Record<string, string>;
  /** The AI's final answer (also when a later check failed the task). */
  result?: string;
  error?: string;
  session_id?: string;
  model?: string;
  usage: TaskUsage;
  details?: Record<string, unknown>;
  git?: GitCodeResultInfo;
}

export const agentTaskOutputSchema = {
  task_id: z.string(),
  executor: z.string(),
  ok: z.boolean().describe('true when the AI finished successfully and every check passed'),
  cwd: z.string(),
  settings: z.record(z.string()).describe('model, mode, effort… pinned when this executor started'),
  result: z.string().optional().describe("the AI's final answer"),
  error: z.string().optional().describe('why the task failed'),
  session_id: z.string().optional(),
  model: z.string().optional(),
  usage: z
    .record(z.unknown())
    .describe('model, tokens, cost_usd or cost, turns, duration_ms, as far as the CLI reports them'),
  details: z.record(z.unknown()).optional(),
  git: z
    .record(z.unknown())
    .optional()
    .describe('with --git-code-result: base_commit, changed_paths, patch, disallowed_paths, verification'),
};

export const errorResult = (text: string): CallToolResult => ({
  content: [{ type: 'text', text }],
  isError: true,
});

const clip = (s: string, n: number) => (s.length > n ? `${s.slice(0, n - 1)}…` : s);

/** One line for progress: whitespace collapsed, bounded. */
export function progressLine(s: string): string {
  return clip(s.replace(/\s+/g, ' ').trim(), MAX_PROGRESS_CHARS);
}

/** The prompt the CLI gets: the objective, the planner's context and constraints, and where files are. */
export function composePrompt(
  args: RunTaskArgs,
  git: { worktree: Worktree; constraints: GitConstraints } | undefined,
) {
  const parts = [args.objective.trim()];
  if (args.context && Object.keys(args.context).length > 0) {
    parts.push(`Context from the planner (JSON):\n${JSON.stringify(args.context, null, 2)}`);
  }
  if (args.constraints && Object.keys(args.constraints).length > 0) {
    parts.push(`Constraints from the planner (JSON):\n${JSON.stringify(args.constraints, null, 2)}`);
  }
  parts.push(
    `Files sent with the task are in ${args.input_dir}. Write any result files (reports, generated artifacts) to ${args.output_dir}; they are returned to the planner.`,
  );
  if (git) {
    const rules = git.constraints.allowedPaths?.map((r) => r.pattern);
    parts.push(
      [
        `You are working in a fresh git worktree (${git.worktree.dir}) at commit ${git.worktree.baseCommit.slice(0, 12)} (${git.worktree.baseRef}).`,
        'Make the code changes there; when you finish, every change (new files included) is collected as a patch. There is no need to commit.',
        rules
          ? `Only change paths matching: ${rules.join(', ')}; a change anywhere else fails the task.`
          : '',
        git.constraints.verificationCommands.length
          ? `Afterwards these commands run in the worktree to verify the change: ${git.constraints.verificationCommands.map((c) => `\`${c}\``).join(', ')}.`
          : '',
      ]
        .filter(Boolean)
        .join(' '),
    );
  }
  return parts.join('\n\n');
}

/** The task's time limit: --timeout, or `constraints.max_minutes` when that is shorter. */
function taskTimeout(spec: AgentTaskSpec, constraints: Record<string, unknown> | undefined): number {
  const m = constraints?.max_minutes;
  return typeof m === 'number' && m > 0 ? Math.min(spec.timeoutMs, m * 60_000) : spec.timeoutMs;
}

/**
 * The `run_task` calls of one executor command and the temporary things (worktrees, bridge folders)
 * they must remove if it stops. The command owns one and passes it to its server, as it does its
 * {@link ProcessGroups}.
 */
export class AgentTasks {
  #active = 0;
  readonly #cleanups = new Set<() => Promise<void>>();

  /** How many `run_task` calls are in progress, cleanup included; a stopping executor waits for zero. */
  get active(): number {
    return this.#active;
  }

  /** Counts `task` as in progress until it settles. */
  async run<T>(task: () => Promise<T>): Promise<T> {
    this.#active += 1;
    try {
      return await task();
    } finally {
      this.#active -= 1;
    }
  }

  /**
   * Registers `fn` (removing a temporary worktree or folder) so that {@link runPendingCleanups} can run
   * it if the process must stop before the task gets there. Returns the function the task calls itself:
   * it runs `fn` once, whoever comes first, and never rejects.
   */
  trackCleanup(fn: () => Promise<void>): () => Promise<void> {
    let running: Promise<void> | undefined;
    const run = () => {
      this.#cleanups.delete(run);
      running ??= fn().catch(() => {});
      return running;
    };
    this.#cleanups.add(run);
    return run;
  }

  /**
   * Runs every registered cleanup now. Used on shutdown: a worker that stops an executor (cancel, time
   * limit) kills it after a short grace, and a CLI that takes its time to die must not leave worktrees
   * behind.
   */
  async runPendingCleanups(): Promise<void> {
    await Promise.all([...this.#cleanups].map((c) => c()));
  }
}

/** Runs one `run_task` call of an AI executor. Always resolves with a tool result. */
/**
 * Registers an AI executor's `run_task` on `server`: the contract's input and output schemas, and each
 * call run by {@link runAgentTask} with `spec`.
 */
export function registerAgentRunTask(
  server: McpServer,
  tool: { title: string; description: string },
  spec: Omit<AgentTaskSpec, 'server'>,
): void {
  server.registerTool(
    'run_task',
    {
      ...tool,
      inputSchema: runTaskInputSchema,
      outputSchema: agentTaskOutputSchema,
      annotations: { destructiveHint: true, openWorldHint: true },
    },
    (args, extra) => runAgentTask({ ...spec, server }, args, extra),
  );
}

export async function runAgentTask(
  spec: AgentTaskSpec,
  args: RunTaskArgs,
  extra: ToolExtra,
): Promise<CallToolResult> {
  return spec.tasks.run(() => runOneTask(spec, args, extra));
}

async function runOneTask(spec: AgentTaskSpec, args: RunTaskArgs, extra: ToolExtra): Promise<CallToolResult> {
  if (!isAbsolute(args.output_dir) || !isAbsolute(args.input_dir)) {
    return errorResult('input_dir and output_dir must be absolute paths');
  }
  if (args.objective.trim() === '') return errorResult('objective is empty: say what the AI should do');
  await mkdir(args.output_dir, { recursive: true });
  const log = spec.log.child(args.task_id);

  let gitConstraints: GitConstraints | undefined;
  if (spec.gitCodeResult) {
    const c = readGitConstraints(args.constraints);
    if (typeof c === 'string') return errorResult(c);
    gitConstraints = c;
  } else {
    const gitOnly = ['allowed_paths', 'require_changed_paths', 'verification_commands'].filter(
      (k) => args.constraints?.[k] !== undefined,
    );
    if (gitOnly.length > 0) {
      return errorResult(
        `constraints.${gitOnly.join(', constraints.')} need --git-code-result, which this ${spec.executor} was not started with; send the task to a worker started with it, or drop them`,
      );
    }
  }

  const progressToken = extra._meta?.progressToken;
  let progress = 0;
  const report = (message: string) => {
    if (progressToken === undefined) return;
    progress += 1;
    extra
      .sendNotification({
        method: 'notifications/progress',
        params: { progressToken, progress, message: progressLine(message) },
      })
      .catch(() => {}); // the client may be gone; the result path reports that
  };

  const timeoutMs = taskTimeout(spec, args.constraints);
  const timeout = AbortSignal.timeout(timeoutMs);
  const signal = AbortSignal.any([extra.signal, timeout, ...(spec.signal ? [spec.signal] : [])]);

  let worktree: Worktree | undefined;
  let removeWorktree: (() => Promise<void>) | undefined;
  if (gitConstraints) {
    const baseRef = typeof args.context?.base_ref === 'string' ? args.context.base_ref : undefined;
    try {
      worktree = await createWorktree(spec.cwd, args.task_id, baseRef);
    } catch (err) {
      return errorResult(err instanceof WorktreeError ? err.message : `could not create a worktree: ${err}`);
    }
    const wt = worktree;
    removeWorktree = spec.tasks.trackCleanup(() => wt.remove());
    report(`worktree at ${worktree.baseRef} (${worktree.baseCommit.slice(0, 12)}): ${worktree.dir}`);
  }

  const started = Date.now();
  try {
    const cwd = worktree?.dir ?? spec.cwd;
    const ctx: AgentRunContext = {
      args,
      cwd,
      prompt: composePrompt(
        args,
        worktree && gitConstraints ? { worktree, constraints: gitConstraints } : undefined,
      ),
      signal,
      env: {
        ...process.env,
        NFLTR_TASK_ID: args.task_id,
        NFLTR_TASK_INPUT_DIR: args.input_dir,
        NFLTR_TASK_OUTPUT_DIR: args.output_dir,
      },
      groups: spec.groups,
      trackCleanup: (fn) => spec.tasks.trackCleanup(fn),
      report,
      ask: (params) => ask(spec.server, params, signal, extra.requestId),
      log,
    };
    log.info('task started', { cwd, timeout_ms: timeoutMs, git: worktree !== undefined });
    let run: AgentRunResult;
    try {
      run = await spec.run(ctx);
    } catch (err) {
      run = {
        ok: false,
        text: err instanceof Error ? err.message : String(err),
        usage: { duration_ms: Date.now() - started },
      };
    }
    let error: string | undefined;
    if (extra.signal.aborted || spec.signal?.aborted) error = 'task cancelled';
    else if (timeout.aborted) {
      error = `${spec.cliName} did not finish within ${formatDuration(timeoutMs)} (${timeoutMs < spec.timeoutMs ? 'constraints.max_minutes' : '--timeout'}) and was killed`;
    } else if (!run.ok) error = run.text || `${spec.cliName} failed without saying why`;

    let gitInfo: GitCodeResultInfo | undefined;
    if (worktree && gitConstraints && error !== 'task cancelled') {
      const g = await finishGit(worktree, gitConstraints, args, ctx, error === undefined, timeoutMs);
      gitInfo = g.info;
      error ??= g.error;
    }

    const structured: AgentTaskResult = {
      task_id: args.task_id,
      executor: spec.executor,
      ok: error === undefined,
      cwd: spec.cwd,
      settings: Object.fromEntries(
        Object.entries(spec.settings).filter(([, v]) => v !== undefined),
      ) as Record<string, string>,
      ...(run.ok ? { result: run.text } : {}),
      ...(error !== undefined ? { error } : {}),
      ...(run.session_id ? { session_id: run.session_id } : {}),
      ...(run.model ? { model: run.model } : {}),
      usage: run.usage,
      ...(run.details ? { details: run.details } : {}),
      ...(gitInfo ? { git: gitInfo } : {}),
    };
    await writeFile(
      join(args.output_dir, `${spec.executor}-summary.json`),
      `${JSON.stringify(structured, null, 2)}\n`,
    ).catch((err) => log.warn('could not write summary', { error: err }));
    log.info('task finished', { ok: structured.ok, error });
    return {
      content: [{ type: 'text', text: summarise(spec, structured) }],
      structuredContent: structured,
      ...(error !== undefined ? { isError: true } : {}),
    };
  } finally {
    await removeWorktree?.();
  }
}

/** Patch, path checks, then (only when everything so far succeeded) the verification commands. */
async function finishGit(
  wt: Worktree,
  constraints: GitConstraints,
  args: RunTaskArgs,
  ctx: AgentRunContext,
  runOk: boolean,
  timeoutMs: number,
): Promise<{ info: GitCodeResultInfo; error?: string }> {
  let changes: CollectedChanges;
  try {
    changes = await collectChanges(wt, args.output_dir);
  } catch (err) {
    return {
      info: emptyGitInfo(wt),
      error: `could not collect the changes: ${err instanceof Error ? err.message : err}`,
    };
  }
  const summary = changes.changed_paths.length
    ? `${changes.changed_paths.length} changed path(s): ${changes.changed_paths.map((c) => `${c.path} (${c.status})`).join(', ')}`
    : 'no file changed';
  ctx.report(summary);
  const check = checkChanges(changes, constraints);
  const info: GitCodeResultInfo = {
    base_ref: wt.baseRef,
    base_commit: wt.baseCommit,
    changed_paths: changes.changed_paths,
    patch: changes.patch,
    patch_bytes: changes.patch_bytes,
    disallowed_paths: check.disallowed,
    verification: [],
  };
  if (check.error || !runOk) return { info, ...(check.error ? { error: check.error } : {}) };
  if (constraints.verificationCommands.length > 0) {
    info.verification = await runVerification(wt, constraints.verificationCommands, {
      outputDir: args.output_dir,
      env: ctx.env,
      groups: ctx.groups,
      timeoutMs,
      signal: ctx.signal,
      report: ctx.report,
    });
    const error = verificationError(info.verification);
    if (error) return { info, error };
  }
  return { info };
}

const emptyGitInfo = (wt: Worktree): GitCodeResultInfo => ({
  base_ref: wt.baseRef,
  base_commit: wt.baseCommit,
  changed_paths: [],
  patch: null,
  patch_bytes: 0,
  disallowed_paths: [],
  verification: [],
});

async function ask(
  server: McpServer,
  params: Omit<ElicitRequestFormParams, 'mode'>,
  signal: AbortSignal,
  relatedRequestId: string | number,
): Promise<ElicitResult | undefined> {
  if (!server.server.getClientCapabilities()?.elicitation?.form) return undefined;
  return server.server.elicitInput(
    { mode: 'form', ...params },
    { signal, relatedRequestId, timeout: QUESTION_TIMEOUT_MS },
  );
}

const fmtTokens = (n: number) => (n >= 10_000 ? `${(n / 1000).toFixed(1)}k` : String(n));

/** The usage line of a text result: what the run cost, as far as the CLI said. */
export function usageLine(u: TaskUsage): string {
  const parts: string[] = [];
  if (u.model) parts.push(u.model);
  if (u.turns !== undefined) parts.push(`${u.turns} turn(s)`);
  if (u.cost_usd !== undefined) parts.push(`$${u.cost_usd.toFixed(4)}`);
  if (u.cost) parts.push(`${u.cost.amount} ${u.cost.currency}`);
  if (u.input_tokens !== undefined || u.output_tokens !== undefined) {
    parts.push(`${fmtTokens(u.input_tokens ?? 0)} in / ${fmtTokens(u.output_tokens ?? 0)} out tokens`);
  } else if (u.total_tokens !== undefined) parts.push(`${fmtTokens(u.total_tokens)} tokens`);
  parts.push(formatDuration(u.duration_ms) || '0ms');
  return parts.join(', ');
}

function summarise(spec: AgentTaskSpec, r: AgentTaskResult): string {
  const lines: string[] = [];
  if (!r.ok) lines.push(`FAILED: ${r.error}`, '');
  if (r.result !== undefined) lines.push(r.result, '');
  lines.push(`${spec.executor}: ${usageLine(r.usage)}${r.session_id ? `, session ${r.session_id}` : ''}`);
  if (r.git) {
    const g = r.git;
    lines.push(
      g.patch
        ? `${g.patch} (${g.patch_bytes} bytes) against ${g.base_ref} ${g.base_commit.slice(0, 12)}: ${g.changed_paths.map((c) => `${c.path} (${c.status})`).join(', ')}`
        : `no file changed against ${g.base_ref} ${g.base_commit.slice(0, 12)}`,
    );
    if (g.disallowed_paths.length) lines.push(`outside allowed_paths: ${g.disallowed_paths.join(', ')}`);
    for (const v of g.verification) {
      lines.push(
        `verify \`${v.command}\`: ${v.status}${v.exit_code !== null ? `, exit ${v.exit_code}` : v.signal ? `, killed by ${v.signal}` : ''}, ${v.duration_ms} ms, log ${v.log}`,
      );
      if (v.status !== 'succeeded') lines.push(...v.output_tail.map((l) => `    ${l}`));
    }
  }
  return lines.join('\n');
}
