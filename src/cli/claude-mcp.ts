/**
 * @module `nfltr claude-mcp`: serves the Claude Code executor over stdio. stdout is the MCP channel, so
 * everything else (logs, errors) goes to stderr. The hidden `--permission-bridge SOCKET` mode is the
 * small MCP server that claude itself starts to ask the planner for permissions (see
 * executors/claude-mcp/permission-bridge.ts).
 */
import { statSync } from 'node:fs';
import { resolve } from 'node:path';
import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';
import { type Command, InvalidArgumentError, Option } from 'commander';
import {
  checkClaudeCli,
  createClaudeMcpServer,
  DEFAULT_CLAUDE_TIMEOUT_MS,
  runPermissionBridge,
} from '../executors/claude-mcp/index.js';
import { AgentTasks, GROUP_KILL_GRACE_MS, ProcessGroups, splitCommand } from '../executors/common/index.js';
import { git } from '../executors/git-result/index.js';
import { createLogger, type Logger } from '../util/log.js';
import { die, parseDuration } from './options.js';

const HELP_AFTER = `
Each run_task call runs one headless Claude Code session in --cwd:
  claude -p --output-format stream-json --verbose --mcp-config <generated>
         --permission-prompt-tool mcp__nfltr_bridge__permission_prompt
         [--model M] [--permission-mode P] [--effort E]        (the prompt goes to stdin)
The prompt is the task's objective plus its context and constraints as JSON. Assistant messages and
tool uses stream as MCP progress; permission prompts are put to the planner as yes/no questions (MCP
elicitation) and the answer decides; the final result (text, cost, tokens, turns, session id) is the
tool result. claude-events.jsonl (the raw stream) and claude-mcp-summary.json go to output_dir.

--model, --reasoning-effort and --permission-mode are fixed for the life of this process; a task cannot
change them. They are checked against \`claude --help\` at start: a flag the installed CLI lacks, or a
value it does not accept, stops the executor with a message saying so.

--git-code-result: each task runs in its own git worktree of --cwd, from context.base_ref or HEAD; the
diff (new files included) comes back as changes.patch with the changed paths; constraints.allowed_paths,
constraints.require_changed_paths and constraints.verification_commands are enforced; the worktree is
removed afterwards.

Examples:
  nfltr worker --mcp-command "nfltr claude-mcp --cwd ~/src/app --model sonnet --git-code-result"
  nfltr claude-mcp --cwd . --permission-mode acceptEdits --reasoning-effort high --timeout 45m
`;

/** `--timeout` and friends: a duration above zero. */
export const positiveDuration = (value: string): number => {
  const ms = parseDuration(value);
  if (ms <= 0) throw new InvalidArgumentError(`expected a duration above zero, got ${JSON.stringify(value)}`);
  return ms;
};

/** A flag value that must not be empty. */
export const nonEmpty = (value: string): string => {
  if (value.trim() === '') throw new InvalidArgumentError('expected a value, got an empty string');
  return value.trim();
};

/** Splits a `--…-command` value into argv, dying with the flag's name when it cannot be. */
export function commandArgv(flag: string, value: string): string[] {
  try {
    return splitCommand(value);
  } catch (err) {
    die(`${flag} ${JSON.stringify(value)}: ${err instanceof Error ? err.message : err}`);
  }
}

/** Checks --cwd (and, with --git-code-result, that it is a git repository); returns it resolved. */
export async function checkCwd(cwd: string, gitCodeResult: boolean): Promise<string> {
  const dir = resolve(cwd);
  if (!statSync(dir, { throwIfNoEntry: false })?.isDirectory()) die(`--cwd ${dir} is not a directory`);
  if (gitCodeResult) {
    try {
      await git(dir, ['rev-parse', '--show-toplevel']);
    } catch {
      die(`--git-code-result needs --cwd to be inside a git repository, and ${dir} is not`);
    }
  }
  return dir;
}

/**
 * Connects `server` to stdio and stops cleanly: on stdin end or a signal, aborts every task (their
 * process groups get SIGTERM, then SIGKILL after the grace) and exits once `groups` has none alive.
 */
export async function serveOverStdio(
  server: McpServer,
  stop: AbortController,
  own: { groups: ProcessGroups; tasks: AgentTasks },
  log: Logger,
): Promise<void> {
  let stopping = false;
  const shutdown = (why: string) => {
    if (stopping) return;
    stopping = true;
    log.info('shutting down', { why });
    stop.abort(); // every task kills its CLI's process group: SIGTERM now, SIGKILL after the grace
    void own.tasks.runPendingCleanups(); // worktrees and bridge folders go now, not after a slow CLI has died
    void server.close().catch(() => {});
    // Exit once every task has wound down (its cleanup included) and every process group is gone, or
    // when the kill grace has passed, whatever else still holds the event loop.
    const deadline = Date.now() + GROUP_KILL_GRACE_MS + 1500;
    const idle = () => own.tasks.active === 0 && own.groups.live === 0;
    setInterval(() => {
      if (idle() || Date.now() > deadline) process.exit(0);
    }, 50);
  };
  process.stdin.on('end', () => shutdown('stdin closed'));
  process.stdout.on('error', () => shutdown('stdout closed'));
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
  await server.connect(new StdioServerTransport());
}

interface ClaudeMcpFlags {
  cwd: string;
  model?: string;
  reasoningEffort?: string;
  permissionMode?: string;
  timeout: number;
  gitCodeResult: boolean;
  claudeCommand: string;
  permissionBridge?: string;
}

export function register(program: Command): void {
  program
    .command('claude-mcp')
    .description('Executor (MCP server over stdio) whose run_task tool runs a task with Claude Code headless')
    .option('--cwd <dir>', 'repository or folder the tasks run in', process.cwd())
    .option('--model <model>', 'Claude model for every task (claude --model), e.g. sonnet, opus', nonEmpty)
    .option(
      '--reasoning-effort <level>',
      'reasoning effort for every task (claude --effort), e.g. low, high',
      nonEmpty,
    )
    .option(
      '--permission-mode <mode>',
      'Claude permission mode for every task (claude --permission-mode), e.g. default, acceptEdits, plan',
      nonEmpty,
    )
    .addOption(
      new Option('--timeout <duration>', 'time limit per task, e.g. 20m, 1h')
        .argParser(positiveDuration)
        .default(DEFAULT_CLAUDE_TIMEOUT_MS, '30m'),
    )
    .option(
      '--git-code-result',
      'run each task in its own git worktree and return its diff as changes.patch',
      false,
    )
    .option(
      '--claude-command <command>',
      'how to start Claude Code (split like a shell would, no expansion)',
      'claude',
    )
    .addOption(new Option('--permission-bridge <socket>').hideHelp())
    .addHelpText('after', HELP_AFTER)
    .action(async (o: ClaudeMcpFlags) => {
      if (o.permissionBridge) {
        const log = createLogger('claude-mcp.bridge');
        const server = await runPermissionBridge(o.permissionBridge, log);
        process.stdin.on('end', () => {
          void server.close().finally(() => process.exit(0));
        });
        return;
      }
      const log = createLogger('claude-mcp');
      const cwd = await checkCwd(o.cwd, o.gitCodeResult);
      const claudeArgv = commandArgv('--claude-command', o.claudeCommand);
      const pinned = { model: o.model, reasoningEffort: o.reasoningEffort, permissionMode: o.permissionMode };
      try {
        await checkClaudeCli({ claudeArgv, ...pinned });
      } catch (err) {
        die(err instanceof Error ? err.message : String(err));
      }
      const stop = new AbortController();
      const groups = new ProcessGroups();
      const tasks = new AgentTasks();
      const script = process.argv[1];
      if (!script)
        die(
          'cannot tell how this nfltr was started (no script path), so claude cannot start the permission bridge',
        );
      const server = createClaudeMcpServer({
        cwd,
        claudeArgv,
        ...pinned,
        timeoutMs: o.timeout,
        gitCodeResult: o.gitCodeResult,
        bridgeArgv: [
          process.execPath,
          // Node flags carry over (e.g. --enable-source-maps), but not a debugger port the bridge would fight for.
          ...process.execArgv.filter((a) => !a.startsWith('--inspect')),
          resolve(script),
          'claude-mcp',
          '--permission-bridge',
        ],
        signal: stop.signal,
        groups,
        tasks,
        logger: log,
      });
      await serveOverStdio(server, stop, { groups, tasks }, log);
      log.info('serving run_task over stdio', {
        cwd,
        claude: o.claudeCommand,
        ...pinned,
        timeout_ms: o.timeout,
        git_code_result: o.gitCodeResult,
      });
    });
}
