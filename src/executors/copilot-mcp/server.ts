/**
 * @module The `nfltr copilot-mcp` executor: an MCP server whose `run_task` tool runs one GitHub Copilot
 * CLI session per task. It prefers Copilot's Agent Client Protocol server,
 *
 *   copilot --acp --stdio [--model M] [--mode X] [--reasoning-effort E]
 *
 * so that messages, plans and tool calls stream as progress and permission requests go to the planner;
 * where the installed CLI has no `--acp`, it falls back to one-shot prompt mode,
 *
 *   copilot -p PROMPT --allow-all-tools [--model M] [--mode X] [--reasoning-effort E]
 *
 * which streams output lines as progress but cannot route permission requests (every tool is allowed).
 */
import { join } from 'node:path';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { type Logger, silentLogger } from '../../util/log.js';
import type { ProcessGroups } from '../../util/process-group.js';
import { VERSION } from '../../util/version.js';
import {
  type AgentExit,
  type AgentRunContext,
  type AgentRunResult,
  type AgentTasks,
  findHelpOption,
  formatArgv,
  readHelp,
  registerAgentRunTask,
  spawnAgentProcess,
} from '../common/index.js';
import { type Readiness, registerCheckReady } from '../common/ready.js';
import { openTranscript } from '../common/transcript.js';
import { withRpcProcess } from '../rpc-process.js';
import { formatDuration } from '../shell-mcp/index.js';
import {
  ACP_PROTOCOL_VERSION,
  AUTH_REQUIRED,
  authRequiredText,
  COPILOT_AUTH_FIX,
  COPILOT_TOKEN_ENV,
  type InitializeResponse,
  runAcpTask,
} from './acp.js';
import { type JsonRpcPeer, RpcError } from './json-rpc.js';

/** Default time limit of one task (`--timeout`). */
export const DEFAULT_COPILOT_TIMEOUT_MS = 30 * 60_000;

/** After a cancellation, how long Copilot gets to wind down (session/cancel) before its group is killed. */
const CANCEL_GRACE_MS = 300;

/** After the turn ended and stdin closed, how long copilot may take to exit. */
const EXIT_GRACE_MS = 3000;

/** Longest prompt passed as a `-p` argument (Linux limits one argument to 128 KiB). */
const MAX_ARGV_PROMPT = 100_000;

/** What the installed CLI supports, learned from its --help at start. */
export interface CopilotCli {
  /** `--acp` is available: drive it over ACP. */
  acp: boolean;
  /** The CLI's name for the reasoning-effort option. */
  effortFlag: '--reasoning-effort' | '--effort';
  /** `--no-color` is available (prompt mode only). */
  noColor: boolean;
}

export interface CopilotMcpOptions {
  cwd: string;
  /** `--copilot-command`, split into argv. */
  copilotArgv: readonly string[];
  model?: string;
  mode?: string;
  reasoningEffort?: string;
  timeoutMs?: number;
  gitCodeResult?: boolean;
  /** From {@link checkCopilotCli}. */
  cli: CopilotCli;
  /** Aborting stops every running task (shutdown). */
  signal?: AbortSignal;
  /** The command's registry of process groups: every CLI started for a task or a check is counted there. */
  groups: ProcessGroups;
  /** The command's tasks in progress and their pending cleanups. */
  tasks: AgentTasks;
  logger?: Logger;
}

/**
 * Reads the installed CLI's `--help` at start: whether it has ACP, and that it has every option the pinned
 * flags need (with an accepted value, when the help lists the choices). Throws with a clear message.
 */
export async function checkCopilotCli(
  opts: Pick<CopilotMcpOptions, 'copilotArgv' | 'model' | 'mode' | 'reasoningEffort'>,
): Promise<CopilotCli> {
  const shown = formatArgv(opts.copilotArgv);
  let help: string;
  try {
    help = await readHelp(opts.copilotArgv);
  } catch (err) {
    throw new Error(
      `could not run \`${shown} --help\` (${err instanceof Error ? err.message : err}); install GitHub Copilot CLI or point --copilot-command at it`,
    );
  }
  const acp = findHelpOption(help, '--acp') !== undefined;
  if (!acp && !findHelpOption(help, '--prompt') && !/^\s*-p[,\s]/m.test(help)) {
    throw new Error(`\`${shown}\` has neither --acp nor -p/--prompt; is it GitHub Copilot CLI? Upgrade it`);
  }
  if (!acp && !findHelpOption(help, '--allow-all-tools')) {
    throw new Error(
      `\`${shown}\` has no --acp, and its prompt mode lacks --allow-all-tools, so tools could neither be approved nor run; upgrade GitHub Copilot CLI`,
    );
  }
  const check = (flag: string, value: string | undefined, ours: string, alias?: string) => {
    if (value === undefined) return flag;
    const found = findHelpOption(help, flag)
      ? flag
      : alias && findHelpOption(help, alias)
        ? alias
        : undefined;
    if (!found) {
      throw new Error(
        `${ours} ${value} needs \`${shown}\` to support ${flag}${alias ? ` (or ${alias})` : ''}, and its --help lists no such option; upgrade GitHub Copilot CLI or drop ${ours}`,
      );
    }
    const option = findHelpOption(help, found);
    const choices = option?.choices ?? possibleValues(option?.text ?? '');
    if (choices && !choices.includes(value)) {
      throw new Error(
        `${ours} ${JSON.stringify(value)} is not accepted by \`${shown}\` ${found}; it accepts: ${choices.join(', ')}`,
      );
    }
    return found;
  };
  check('--model', opts.model, '--model');
  check('--mode', opts.mode, '--mode');
  const effortFlag = check('--reasoning-effort', opts.reasoningEffort, '--reasoning-effort', '--effort') as
    | '--reasoning-effort'
    | '--effort';
  return { acp, effortFlag, noColor: findHelpOption(help, '--no-color') !== undefined };
}

/** The choices of an option whose help says `[possible values: a, b]` (Copilot CLI 1.0's own help format). */
export function possibleValues(text: string): string[] | undefined {
  const m = /\[possible values:\s*([^\]]*)\]/.exec(text);
  return m
    ? m[1]!
        .split(',')
        .map((v) => v.trim())
        .filter(Boolean)
    : undefined;
}

/** The pinned settings as the CLI's own options. */
function settingFlags(opts: CopilotMcpOptions): string[] {
  return [
    ...(opts.model ? ['--model', opts.model] : []),
    ...(opts.mode ? ['--mode', opts.mode] : []),
    ...(opts.reasoningEffort ? [opts.cli.effortFlag, opts.reasoningEffort] : []),
  ];
}

export function copilotAcpArgv(opts: CopilotMcpOptions): string[] {
  return [...opts.copilotArgv, '--acp', '--stdio', ...settingFlags(opts)];
}

export function copilotPromptArgv(opts: CopilotMcpOptions, prompt: string): string[] {
  return [
    ...opts.copilotArgv,
    '-p',
    prompt,
    '--allow-all-tools',
    ...settingFlags(opts),
    ...(opts.cli.noColor ? ['--no-color'] : []),
  ];
}

function exitText(exit: AgentExit, stderr: string): string {
  const how = exit.spawnError
    ? `could not be started: ${exit.spawnError}`
    : exit.code !== null
      ? `exited with code ${exit.code}`
      : `was killed by ${exit.signal}`;
  return `copilot ${how}${stderr ? `: ${stderr}` : ''}`;
}

/** How long the readiness check may take (initialize and session/new; no prompt, no model call). */
const CHECK_TIMEOUT_MS = 30_000;

/**
 * Whether Copilot could run a task now, without a model call: over ACP, whether it accepts session/new
 * (it refuses with "Authentication required" when it has no login, token or own model provider).
 */
export async function checkCopilotReady(
  opts: CopilotMcpOptions,
  env: NodeJS.ProcessEnv = process.env,
): Promise<Readiness> {
  if (!opts.cli.acp) {
    const named = [...COPILOT_TOKEN_ENV, 'COPILOT_PROVIDER_BASE_URL'].filter((n) => env[n]);
    return named.length > 0
      ? { ready: true }
      : {
          ready: true,
          reason: `not checked: this Copilot CLI has no --acp to ask, and none of ${[...COPILOT_TOKEN_ENV, 'COPILOT_PROVIDER_BASE_URL'].join(', ')} is set (a stored \`copilot login\` may still work)`,
        };
  }
  let init: InitializeResponse | undefined;
  try {
    await withRpcProcess(
      {
        argv: copilotAcpArgv(opts),
        cwd: opts.cwd,
        env,
        groups: opts.groups,
        timeoutMs: CHECK_TIMEOUT_MS,
        exitText,
      },
      async (peer) => {
        init = await peer.request('initialize', {
          protocolVersion: ACP_PROTOCOL_VERSION,
          clientCapabilities: { fs: { readTextFile: false, writeTextFile: false }, terminal: false },
          clientInfo: {
            name: 'nfltr-copilot-mcp',
            title: 'nfltr copilot-mcp (check_ready)',
            version: VERSION,
          },
        });
        await peer.request('session/new', { cwd: opts.cwd, mcpServers: [] });
      },
    );
    return { ready: true };
  } catch (err) {
    if (err instanceof RpcError && err.code === AUTH_REQUIRED) {
      return { ready: false, reason: authRequiredText(err, init), fix: COPILOT_AUTH_FIX };
    }
    return {
      ready: false,
      reason:
        err instanceof RpcError
          ? `copilot answered with an error: ${err.describe()}`
          : String(err instanceof Error ? err.message : err),
      fix: 'install GitHub Copilot CLI or point --copilot-command at it; run it by hand in --cwd to see what it needs',
    };
  }
}

/** One task over ACP. */
async function runAcp(opts: CopilotMcpOptions, ctx: AgentRunContext): Promise<AgentRunResult> {
  const started = Date.now();
  const transcript = openTranscript(join(ctx.args.output_dir, 'copilot-acp.jsonl'));
  const record = transcript.record;
  let peer: JsonRpcPeer | undefined;
  const early: string[] = [];
  const argv = copilotAcpArgv(opts);
  ctx.log.info('starting copilot', { argv: formatArgv(argv), cwd: ctx.cwd });
  const proc = spawnAgentProcess({
    argv,
    cwd: ctx.cwd,
    env: ctx.env,
    groups: ctx.groups,
    onStdoutLine: (line) => {
      record('received', line);
      if (peer) peer.line(line);
      else early.push(line);
    },
  });
  let exitInfo: string | undefined;
  void proc.exited.then((exit) => {
    exitInfo = exitText(exit, proc.stderrTail());
    peer?.close(new Error(exitInfo));
  });
  let killTimer: NodeJS.Timeout | undefined;
  const onAbort = () => {
    killTimer = setTimeout(() => proc.kill(), CANCEL_GRACE_MS);
  };
  ctx.signal.addEventListener('abort', onAbort, { once: true });
  if (ctx.signal.aborted) onAbort();
  try {
    return await runAcpTask(
      ctx,
      {
        write: (line) => {
          record('sent', line.trimEnd());
          if (!proc.child.stdin.destroyed) proc.child.stdin.write(line);
        },
        end: () => proc.child.stdin.end(),
        settings: {
          ...(opts.mode ? { mode: opts.mode } : {}),
          ...(opts.model ? { model: opts.model } : {}),
          ...(opts.reasoningEffort ? { reasoningEffort: opts.reasoningEffort } : {}),
        },
        attach: (p) => {
          peer = p;
          if (exitInfo) p.close(new Error(exitInfo));
          for (const line of early.splice(0)) p.line(line);
        },
      },
      started,
    );
  } catch (err) {
    // The connection failed (not an error answer): let the exit and its stderr arrive, then say what
    // copilot said.
    if (!(err instanceof RpcError))
      await Promise.race([proc.exited, new Promise((r) => setTimeout(r, 1000))]);
    const text =
      err instanceof RpcError
        ? `copilot answered with an error: ${err.describe()}${proc.stderrTail() ? ` (stderr: ${proc.stderrTail()})` : ''}`
        : err instanceof Error
          ? err.message
          : String(err);
    return { ok: false, text, usage: { duration_ms: Date.now() - started } };
  } finally {
    ctx.signal.removeEventListener('abort', onAbort);
    proc.child.stdin.end();
    const gone = await Promise.race([
      proc.exited.then(() => true),
      new Promise((r) => setTimeout(() => r(false), EXIT_GRACE_MS)),
    ]);
    if (!gone) proc.kill();
    await proc.exited;
    clearTimeout(killTimer);
    await transcript.end();
  }
}

/** One task in prompt mode (`copilot -p`), for CLIs without ACP. */
async function runPrompt(opts: CopilotMcpOptions, ctx: AgentRunContext): Promise<AgentRunResult> {
  const started = Date.now();
  if (Buffer.byteLength(ctx.prompt) > MAX_ARGV_PROMPT) {
    return {
      ok: false,
      text: `the prompt is ${Buffer.byteLength(ctx.prompt)} bytes, too long for \`copilot -p\` (at most ${MAX_ARGV_PROMPT}); this Copilot CLI has no --acp, so shorten context/constraints or upgrade it`,
      usage: { duration_ms: 0 },
    };
  }
  const out: string[] = [];
  const argv = copilotPromptArgv(opts, ctx.prompt);
  ctx.log.info('starting copilot (prompt mode)', {
    argv: formatArgv([...opts.copilotArgv, '-p', '…']),
    cwd: ctx.cwd,
  });
  const proc = spawnAgentProcess({
    argv,
    cwd: ctx.cwd,
    env: ctx.env,
    groups: ctx.groups,
    onStdoutLine: (line) => {
      out.push(line);
      if (line.trim()) ctx.report(`copilot: ${line}`);
    },
  });
  proc.child.stdin.end();
  const onAbort = () => proc.kill();
  ctx.signal.addEventListener('abort', onAbort, { once: true });
  if (ctx.signal.aborted) onAbort();
  const exit = await proc.exited;
  ctx.signal.removeEventListener('abort', onAbort);
  const text = out.join('\n').trim();
  const usage = { duration_ms: Date.now() - started };
  const details = { protocol: 'prompt', exit_code: exit.code };
  if (exit.code === 0) return { ok: true, text, usage, details };
  return { ok: false, text: exitText(exit, proc.stderrTail() || out.slice(-10).join('\n')), usage, details };
}

function describeTool(opts: CopilotMcpOptions, timeoutMs: number): string {
  const pinned = [
    `model ${opts.model ?? "(the CLI's default)"}`,
    `mode ${opts.mode ?? "(the CLI's default)"}`,
    `reasoning effort ${opts.reasoningEffort ?? "(the CLI's default)"}`,
  ].join(', ');
  return [
    `Run one task with GitHub Copilot CLI on this worker machine, in ${opts.cwd}.`,
    '`objective` is the prompt; `context` and `constraints` are passed along as JSON. Copilot reads and edits files and runs commands there.',
    `Pinned when this executor started: ${pinned}. A task cannot override the model, mode or reasoning effort; pick a worker started with the ones you need.`,
    opts.cli.acp
      ? "Copilot's messages, plan and tool calls stream as progress. When Copilot asks permission for a tool call, you are asked (approve: true/false) and your answer decides."
      : 'This Copilot CLI has no ACP server, so it runs in prompt mode: output lines stream as progress and every tool is allowed without asking (--allow-all-tools).',
    `Time limit ${formatDuration(timeoutMs)} per task (constraints.max_minutes may shorten it).`,
    opts.gitCodeResult
      ? 'The task runs in its own git worktree, from context.base_ref (a branch, tag or commit) or HEAD. Its changes come back as changes.patch in the artifacts, with the changed paths; constraints.allowed_paths (paths or globs) fails the task if anything else changed, constraints.require_changed_paths: true fails it if nothing changed, and constraints.verification_commands run in the worktree afterwards, with exit codes and output tails in the result.'
      : '',
    "The result is Copilot's final answer, with tokens, cost and duration (as far as Copilot reports them) and the session id in structuredContent. Files Copilot writes to output_dir come back as artifacts.",
  ]
    .filter(Boolean)
    .join(' ');
}

/** Creates the Copilot executor's MCP server (not yet connected to a transport). */
export function createCopilotMcpServer(opts: CopilotMcpOptions): McpServer {
  const log = opts.logger ?? silentLogger;
  const timeoutMs = opts.timeoutMs ?? DEFAULT_COPILOT_TIMEOUT_MS;
  const server = new McpServer({ name: 'nfltr-copilot-mcp', version: VERSION });
  registerAgentRunTask(
    server,
    { title: 'Run a task with GitHub Copilot CLI', description: describeTool(opts, timeoutMs) },
    {
      executor: 'copilot-mcp',
      cliName: 'copilot',
      cwd: opts.cwd,
      gitCodeResult: opts.gitCodeResult ?? false,
      timeoutMs,
      settings: {
        model: opts.model,
        mode: opts.mode,
        reasoning_effort: opts.reasoningEffort,
        protocol: opts.cli.acp ? 'acp' : 'prompt',
      },
      ...(opts.signal ? { signal: opts.signal } : {}),
      groups: opts.groups,
      tasks: opts.tasks,
      log,
      run: (ctx) => (opts.cli.acp ? runAcp(opts, ctx) : runPrompt(opts, ctx)),
    },
  );
  registerCheckReady(server, 'Copilot CLI', () => checkCopilotReady(opts));
  return server;
}
