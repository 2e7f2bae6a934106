/**
 * @module The `nfltr claude-mcp` executor: an MCP server whose `run_task` tool runs one Claude Code
 * headless session per task:
 *
 *   claude -p --output-format stream-json --verbose
 *          --mcp-config <generated> --permission-prompt-tool mcp__nfltr_bridge__permission_prompt
 *          [--model M] [--permission-mode P] [--effort E]          (prompt on stdin)
 *
 * Stream events become progress, permission prompts become questions to the planner (see
 * permission-bridge.ts), and the final `result` message becomes the tool result with its usage.
 */
import { createWriteStream } from 'node:fs';
import { join } from 'node:path';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { formatDuration } from '../../util/duration.js';
import { type Logger, silentLogger } from '../../util/log.js';
import type { ProcessGroups } from '../../util/process-group.js';
import { VERSION } from '../../util/version.js';
import { findHelpOption, formatArgv, readHelp } from '../common/cli-command.js';
import { spawnAgentProcess } from '../common/process.js';
import { registerCheckReady } from '../common/ready.js';
import {
  type AgentRunContext,
  type AgentRunResult,
  type AgentTasks,
  registerAgentRunTask,
} from '../common/task.js';
import { claudeReadiness } from './credentials.js';
import {
  BRIDGE_SERVER_NAME,
  PERMISSION_PROMPT_TOOL,
  type PermissionDecision,
  type PermissionRequest,
  startPermissionBridge,
} from './permission-bridge.js';
import { ClaudeStream, describeToolUse } from './stream-json.js';

/** Default time limit of one task (`--timeout`). */
export const DEFAULT_CLAUDE_TIMEOUT_MS = 30 * 60_000;

/** After the result message, how long claude may take to exit before it is killed. */
const EXIT_AFTER_RESULT_MS = 10_000;

export interface ClaudeMcpOptions {
  /** The repository or folder tasks run in. */
  cwd: string;
  /** `--claude-command`, split into argv. */
  claudeArgv: readonly string[];
  model?: string;
  reasoningEffort?: string;
  permissionMode?: string;
  timeoutMs?: number;
  gitCodeResult?: boolean;
  /** How to start `nfltr claude-mcp --permission-bridge` (the socket path is appended). */
  bridgeArgv: readonly string[];
  /** Aborting stops every running task (shutdown). */
  signal?: AbortSignal;
  /** The command's registry of process groups: every CLI started for a task or a check is counted there. */
  groups: ProcessGroups;
  /** The command's tasks in progress and their pending cleanups. */
  tasks: AgentTasks;
  logger?: Logger;
}

/**
 * Checks at start that the installed claude CLI has every option the flags need, reading its `--help`.
 * Throws an Error whose message says what is missing and what to do.
 */
export async function checkClaudeCli(
  opts: Pick<ClaudeMcpOptions, 'claudeArgv' | 'model' | 'reasoningEffort' | 'permissionMode'>,
) {
  const shown = formatArgv(opts.claudeArgv);
  let help: string;
  try {
    help = await readHelp(opts.claudeArgv);
  } catch (err) {
    throw new Error(
      `could not run \`${shown} --help\` (${err instanceof Error ? err.message : err}); install Claude Code or point --claude-command at it`,
    );
  }
  if (!findHelpOption(help, '--output-format')) {
    throw new Error(
      `\`${shown}\` has no --output-format option (needed for stream-json); is it Claude Code? Upgrade it`,
    );
  }
  const need = (flag: string, value: string | undefined, ours: string) => {
    if (value === undefined) return;
    const o = findHelpOption(help, flag);
    if (!o) {
      throw new Error(
        `${ours} ${value} needs \`${shown}\` to support ${flag}, and its --help lists no such option; upgrade Claude Code or drop ${ours}`,
      );
    }
    if (o.choices && !o.choices.includes(value)) {
      throw new Error(
        `${ours} ${JSON.stringify(value)} is not accepted by \`${shown}\` ${flag}; it accepts: ${o.choices.join(', ')}`,
      );
    }
  };
  need('--model', opts.model, '--model');
  need('--effort', opts.reasoningEffort, '--reasoning-effort');
  need('--permission-mode', opts.permissionMode, '--permission-mode');
}

/** The claude argv of one task. */
export function claudeArgv(opts: ClaudeMcpOptions, mcpConfigPath: string): string[] {
  return [
    ...opts.claudeArgv,
    '-p',
    '--output-format',
    'stream-json',
    '--verbose',
    '--mcp-config',
    mcpConfigPath,
    '--permission-prompt-tool',
    PERMISSION_PROMPT_TOOL,
    ...(opts.model ? ['--model', opts.model] : []),
    ...(opts.permissionMode ? ['--permission-mode', opts.permissionMode] : []),
    ...(opts.reasoningEffort ? ['--effort', opts.reasoningEffort] : []),
  ];
}

function describeTool(opts: ClaudeMcpOptions, timeoutMs: number): string {
  const pinned = [
    `model ${opts.model ?? "(the CLI's default)"}`,
    `reasoning effort ${opts.reasoningEffort ?? "(the CLI's default)"}`,
    `permission mode ${opts.permissionMode ?? "(the CLI's default)"}`,
  ].join(', ');
  return [
    `Run one task with Claude Code (headless) on this worker machine, in ${opts.cwd}.`,
    '`objective` is the prompt; `context` and `constraints` are passed along as JSON. Claude reads and edits files and runs commands there.',
    `Pinned when this executor started, and not changeable per task: ${pinned}.`,
    'Each assistant message and tool use streams as progress. When Claude needs permission for a tool, you are asked',
    '(approve: true/false, optional reason) and your answer decides.',
    `Time limit ${formatDuration(timeoutMs)} per task (constraints.max_minutes may shorten it).`,
    opts.gitCodeResult
      ? 'The task runs in its own git worktree, from context.base_ref (a branch, tag or commit) or HEAD. Its changes come back as changes.patch in the artifacts, with the changed paths; constraints.allowed_paths (paths or globs) fails the task if anything else changed, constraints.require_changed_paths: true fails it if nothing changed, and constraints.verification_commands run in the worktree afterwards, with exit codes and output tails in the result.'
      : '',
    "The result is Claude's final answer, with tokens, cost (USD), turns, duration and session id in structuredContent.usage. Files Claude writes to output_dir come back as artifacts.",
  ]
    .filter(Boolean)
    .join(' ');
}

/** The question put to the planner for one permission prompt. */
function permissionQuestion(req: PermissionRequest, taskId: string) {
  return {
    message: `Claude Code asks to run ${describeToolUse(req.tool_name, req.input)} (task ${taskId}). Allow it? yes/no`,
    requestedSchema: {
      type: 'object' as const,
      properties: {
        approve: {
          type: 'boolean' as const,
          title: 'Allow this tool use?',
          description: 'true lets Claude run it; false refuses',
        },
        reason: {
          type: 'string' as const,
          title: 'Reason (optional)',
          description: 'told to Claude when you refuse, so it can change course',
        },
      },
      required: ['approve'],
    },
  };
}

async function decidePermission(
  ctx: AgentRunContext,
  req: PermissionRequest,
  record: unknown[],
): Promise<PermissionDecision> {
  const what = describeToolUse(req.tool_name, req.input);
  const deny = (message: string, why: string): PermissionDecision => {
    record.push({ tool: what, decision: 'denied', reason: why });
    return { behavior: 'deny', message };
  };
  let answer: Awaited<ReturnType<AgentRunContext['ask']>>;
  try {
    answer = await ctx.ask(permissionQuestion(req, ctx.args.task_id));
  } catch (err) {
    if (ctx.signal.aborted) return deny('The task was cancelled.', 'cancelled');
    return deny('The planner could not be asked; do not retry this tool use.', `asking failed: ${err}`);
  }
  if (answer === undefined) {
    return deny(
      'Nobody can approve tool uses for this task (the planner cannot be asked). Continue without this tool use.',
      'the MCP client cannot answer questions (no elicitation support)',
    );
  }
  if (answer.action === 'accept' && answer.content?.approve === true) {
    record.push({ tool: what, decision: 'allowed' });
    ctx.report(`planner allowed ${what}`);
    return { behavior: 'allow', updatedInput: req.input };
  }
  const reason = typeof answer.content?.reason === 'string' ? answer.content.reason.trim() : '';
  ctx.report(`planner refused ${what}${reason ? `: ${reason}` : ''}`);
  return deny(
    reason ? `The planner refused this tool use: ${reason}` : 'The planner refused this tool use.',
    answer.action === 'accept' ? reason || 'refused' : answer.action,
  );
}

/** Runs claude for one task and reads its stream to the end. */
async function runClaude(opts: ClaudeMcpOptions, ctx: AgentRunContext): Promise<AgentRunResult> {
  const started = Date.now();
  const permissions: unknown[] = [];
  const bridge = await startPermissionBridge({
    bridgeArgv: opts.bridgeArgv,
    decide: (req) => decidePermission(ctx, req, permissions),
    log: ctx.log,
  });
  const closeBridge = ctx.trackCleanup(() => bridge.close());
  const events = createWriteStream(join(ctx.args.output_dir, 'claude-events.jsonl'));
  events.on('error', () => {}); // the run matters more than its log
  try {
    const stream = new ClaudeStream(ctx.report, BRIDGE_SERVER_NAME);
    const argv = claudeArgv(opts, bridge.mcpConfigPath);
    ctx.log.info('starting claude', { argv: formatArgv(argv), cwd: ctx.cwd });
    let afterResult: NodeJS.Timeout | undefined;
    const proc = spawnAgentProcess({
      argv,
      cwd: ctx.cwd,
      groups: ctx.groups,
      env: {
        ...ctx.env,
        // Claude bounds MCP tool calls; a permission prompt waits for the planner as long as the task runs.
        MCP_TOOL_TIMEOUT:
          ctx.env.MCP_TOOL_TIMEOUT ?? String((opts.timeoutMs ?? DEFAULT_CLAUDE_TIMEOUT_MS) + 60_000),
      },
      onStdoutLine: (line) => {
        events.write(`${line}\n`);
        const hadResult = stream.result !== undefined;
        stream.line(line);
        if (!hadResult && stream.result) {
          // A CLI that lingers after its result (an MCP server that will not stop) is done anyway.
          afterResult = setTimeout(() => proc.kill(), EXIT_AFTER_RESULT_MS);
        }
      },
    });
    proc.child.stdin.end(ctx.prompt);
    const onAbort = () => proc.kill();
    ctx.signal.addEventListener('abort', onAbort, { once: true });
    if (ctx.signal.aborted) onAbort();
    const exit = await proc.exited;
    clearTimeout(afterResult);
    ctx.signal.removeEventListener('abort', onAbort);
    const outcome = stream.outcome(exit, proc.stderrTail(), Date.now() - started);
    if (stream.bridgeProblem && !outcome.ok) {
      outcome.text += ` (the nfltr permission bridge failed to start, so no tool use could be approved)`;
    }
    return {
      ...outcome,
      details: { ...outcome.details, ...(permissions.length ? { permission_requests: permissions } : {}) },
    };
  } finally {
    await new Promise<void>((resolve) => events.end(resolve));
    await closeBridge();
  }
}

/** Creates the Claude executor's MCP server (not yet connected to a transport). */
export function createClaudeMcpServer(opts: ClaudeMcpOptions): McpServer {
  const log = opts.logger ?? silentLogger;
  const timeoutMs = opts.timeoutMs ?? DEFAULT_CLAUDE_TIMEOUT_MS;
  const server = new McpServer({ name: 'nfltr-claude-mcp', version: VERSION });
  registerAgentRunTask(
    server,
    { title: 'Run a task with Claude Code', description: describeTool(opts, timeoutMs) },
    {
      executor: 'claude-mcp',
      cliName: 'claude',
      cwd: opts.cwd,
      gitCodeResult: opts.gitCodeResult ?? false,
      timeoutMs,
      settings: {
        model: opts.model,
        reasoning_effort: opts.reasoningEffort,
        permission_mode: opts.permissionMode,
      },
      ...(opts.signal ? { signal: opts.signal } : {}),
      groups: opts.groups,
      tasks: opts.tasks,
      log,
      run: (ctx) => runClaude(opts, ctx),
    },
  );
  registerCheckReady(server, 'Claude Code', () => claudeReadiness());
  return server;
}
