/**
 * @module Whether the executor can take tasks, as probes and TaskStart admission see it. The start-up
 * check chooses the task tool (swapping `claude mcp serve` for `nfltr claude-mcp`); a failed spawn then
 * marks the executor unhealthy until a recheck on the heartbeat starts it again (a package reinstalled,
 * a disk freed); and its `check_ready` answer is kept a few seconds, a probe waiting a little for a
 * fresher one.
 */
import { setTimeout as delay } from 'node:timers/promises';
import type { Logger } from '../util/log.js';
import { WorkerConfigError } from './errors.js';
import {
  checkExecutor,
  claudeMcpCommand,
  type ExecutorCheck,
  type ExecutorCommand,
  type ExecutorStartOptions,
  probeReadiness,
  type Readiness,
  type ToolChoice,
} from './executor.js';

/** A probe reuses the executor's last `check_ready` answer for this long. */
const READY_CACHE_MS = 5_000;
/** How long a probe waits for a fresh `check_ready` before answering with the last one. */
const READY_PROBE_WAIT_MS = 2_500;

export interface StartCheckOptions {
  /** `--mcp-tool`. */
  tool?: string;
  /** How to run `nfltr` when the executor must be `nfltr claude-mcp` instead. */
  self?: { execPath: string; script: string };
  cwd?: string;
  logger: Logger;
}

/**
 * The start-up check ({@link checkExecutor}) of the executor `session` starts, with `claude mcp serve`
 * replaced by `nfltr claude-mcp`; logs the tool chosen and an executor not ready for AI work. Throws a
 * {@link WorkerConfigError} when the worker cannot run tasks with it.
 */
export async function checkAtStart(
  session: ExecutorStartOptions,
  o: StartCheckOptions,
): Promise<{ command: ExecutorCommand; check: ExecutorCheck; choice: ToolChoice }> {
  const checkWith = (command: ExecutorCommand) =>
    checkExecutor({ ...session, command, tool: o.tool, logger: o.logger.child('executor') });
  let command = session.command;
  let check = await checkWith(command);
  if (!check.choice) {
    command = insteadOfClaudeServe(command, check, o);
    check = await checkWith(command);
  }
  const choice = check.choice!;
  o.logger.info('executor checked', {
    tool: choice.name,
    mode: choice.mode,
    ...(choice.task ? { task_based: true } : {}),
    tools: check.tools.map((t) => t.name),
  });
  const r = check.readiness;
  if (r && !r.ready) {
    o.logger.warn(
      `the executor is not ready for AI work: ${r.reason ?? 'no reason given'}${r.fix ? `; fix: ${r.fix}` : ''}; tasks will fail until it is (probe_worker reports executor_ready: false)`,
    );
  }
  return { command, check, choice };
}

/**
 * `claude mcp serve` offers Claude's own tools (Bash, Read, Edit…), none of which runs a whole AI task:
 * tasks run through `nfltr claude-mcp` with the same claude instead, and the log says so once.
 */
function insteadOfClaudeServe(command: ExecutorCommand, check: ExecutorCheck, o: StartCheckOptions) {
  if (!o.self) {
    throw new WorkerConfigError(
      '--mcp-command starts Claude Code\'s own MCP server, which has no tool that runs a whole task; use --mcp-command "nfltr claude-mcp --cwd DIR"',
    );
  }
  const instead = claudeMcpCommand(command, o.self, o.cwd ?? process.cwd());
  const server = [check.server?.name ?? 'claude', check.server?.version].filter(Boolean).join(' ');
  o.logger.info(
    `--mcp-command starts Claude Code's own MCP server (${server}), whose ${check.tools.length} tools (Bash, Read, Edit…) include none that runs a whole task; running each task with Claude Code headless through nfltr claude-mcp instead (progress, permission questions to the planner, cancel)`,
    { executor: [instead.command, ...instead.args].join(' ') },
  );
  return instead;
}

export class ExecutorHealth {
  /** How to start the executor for a recheck or a `check_ready` (the check log). */
  readonly #session: ExecutorStartOptions;
  readonly #tool: string;
  readonly #log: Logger;
  #healthy = true;
  #error = '';
  /** The executor's last `check_ready` answer; undefined when it has no such tool. */
  #readiness: { value: Readiness; at: number } | undefined;
  #refresh: Promise<void> | undefined;
  #rechecking = false;

  /** `readiness`: the start-up check's `check_ready` answer, if the executor has that tool. */
  constructor(session: ExecutorStartOptions, tool: string, logger: Logger, readiness?: Readiness) {
    this.#session = session;
    this.#tool = tool;
    this.#log = logger;
    if (readiness) this.#readiness = { value: readiness, at: Date.now() };
  }

  get healthy(): boolean {
    return this.#healthy;
  }

  /** Why the executor cannot start; empty while healthy. */
  get error(): string {
    return this.#error;
  }

  /** Whether an executor could be started (a task's spawn, or a recheck). */
  report(ok: boolean, error = ''): void {
    if (ok !== this.#healthy)
      this.#log[ok ? 'info' : 'warn']('executor health changed', { healthy: ok, error });
    this.#healthy = ok;
    this.#error = ok ? '' : error;
  }

  /** After a failed spawn the executor may come back (a package reinstalled, a disk freed). */
  async recheck(): Promise<void> {
    if (this.#rechecking) return;
    this.#rechecking = true;
    try {
      const check = await checkExecutor({ ...this.#session, tool: this.#tool });
      if (check.readiness) this.#readiness = { value: check.readiness, at: Date.now() };
      this.report(true);
    } catch (err) {
      this.report(false, (err as Error).message);
    } finally {
      this.#rechecking = false;
    }
  }

  /** The executor's readiness for a probe: the cached answer, refreshed when older than a few seconds. */
  async readiness(): Promise<Readiness | undefined> {
    const r = this.#readiness;
    if (!r || !this.#healthy || Date.now() - r.at < READY_CACHE_MS) return r?.value;
    this.#refresh ??= probeReadiness(this.#session)
      .then((value) => {
        if (value.ready !== this.#readiness?.value.ready) {
          this.#log[value.ready ? 'info' : 'warn']('executor readiness changed', { ...value });
        }
        this.#readiness = { value, at: Date.now() };
      })
      .catch((err: Error) => this.#log.debug('check_ready refresh failed', { error: err.message }))
      .finally(() => {
        this.#refresh = undefined;
      });
    await Promise.race([this.#refresh, delay(READY_PROBE_WAIT_MS)]);
    return this.#readiness?.value;
  }
}
