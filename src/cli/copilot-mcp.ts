/**
 * @module `nfltr copilot-mcp`: serves the GitHub Copilot CLI executor over stdio. stdout is the MCP
 * channel, so everything else (logs, errors) goes to stderr.
 */
import { type Command, Option } from 'commander';
import { AgentTasks } from '../executors/common/index.js';
import {
  checkCopilotCli,
  createCopilotMcpServer,
  DEFAULT_COPILOT_TIMEOUT_MS,
} from '../executors/copilot-mcp/index.js';
import { createLogger } from '../util/log.js';
import { ProcessGroups } from '../util/process-group.js';
import { checkCwd, commandArgv, nonEmpty, positiveDuration, serveOverStdio } from './claude-mcp.js';
import { die } from './options.js';

const HELP_AFTER = `
Each run_task call runs one GitHub Copilot CLI session in --cwd, over its Agent Client Protocol server:
  copilot --acp --stdio [--model M] [--mode X] [--reasoning-effort E]
(initialize, session/new, session/prompt with the task as the prompt). Agent messages, plans and tool
calls stream as MCP progress; session/request_permission is put to the planner as a yes/no question
(MCP elicitation) and the answer picks Copilot's allow or reject option; the final stop reason, text and
usage are the tool result. copilot-acp.jsonl (the ACP transcript) and copilot-mcp-summary.json go to
output_dir. A Copilot CLI without --acp is driven as \`copilot -p PROMPT --allow-all-tools …\` instead:
output lines stream as progress, and tools run without asking.

--model, --mode and --reasoning-effort are fixed for the life of this process; a task cannot change
them. They are checked against \`copilot --help\` at start: a flag the installed CLI lacks, or a value it
does not accept (its "[possible values: …]"), stops the executor with a message saying so. When a session offers modes or config
options, the pinned values are also set there (session/set_mode, session/set_config_option).

Credentials are Copilot's own: \`copilot login\`, a token in COPILOT_GITHUB_TOKEN / GH_TOKEN /
GITHUB_TOKEN, or your own model provider (COPILOT_PROVIDER_BASE_URL, COPILOT_PROVIDER_API_KEY,
COPILOT_MODEL; see \`copilot help environment\`). Behind a worker, pass env vars through with
\`nfltr worker --executor-env GH_TOKEN\`. Without credentials Copilot refuses session/new ("Authentication
required"); the task fails with Copilot's own advice and that fix, and the check_ready tool (no model
call: initialize and session/new) reports it to the worker.

--git-code-result: each task runs in its own git worktree of --cwd, from context.base_ref or HEAD; the
diff (new files included) comes back as changes.patch with the changed paths; constraints.allowed_paths,
constraints.require_changed_paths and constraints.verification_commands are enforced; the worktree is
removed afterwards.

Examples:
  nfltr worker --mcp-command "nfltr copilot-mcp --cwd ~/projects/payments --model gpt-5.2 --reasoning-effort high"
  nfltr copilot-mcp --cwd . --mode autopilot --timeout 20m --git-code-result
`;

interface CopilotMcpFlags {
  cwd: string;
  model?: string;
  mode?: string;
  reasoningEffort?: string;
  timeout: number;
  gitCodeResult: boolean;
  copilotCommand: string;
}

export function register(program: Command): void {
  program
    .command('copilot-mcp')
    .description('Executor (MCP server over stdio) whose run_task tool runs a task with GitHub Copilot CLI')
    .option('--cwd <dir>', 'repository or folder the tasks run in', process.cwd())
    .option('--model <model>', 'Copilot model for every task (copilot --model), e.g. gpt-5.2', nonEmpty)
    .option(
      '--mode <mode>',
      'Copilot agent mode for every task (copilot --mode), e.g. interactive, plan, autopilot',
      nonEmpty,
    )
    .option(
      '--reasoning-effort <level>',
      'reasoning effort for every task (copilot --reasoning-effort), e.g. low, medium, high',
      nonEmpty,
    )
    .addOption(
      new Option('--timeout <duration>', 'time limit per task, e.g. 20m, 1h')
        .argParser(positiveDuration)
        .default(DEFAULT_COPILOT_TIMEOUT_MS, '30m'),
    )
    .option(
      '--git-code-result',
      'run each task in its own git worktree and return its diff as changes.patch',
      false,
    )
    .option(
      '--copilot-command <command>',
      'how to start Copilot CLI (split like a shell would, no expansion)',
      'copilot',
    )
    .addHelpText('after', HELP_AFTER)
    .action(async (o: CopilotMcpFlags) => {
      const log = createLogger('copilot-mcp');
      const cwd = await checkCwd(o.cwd, o.gitCodeResult);
      const copilotArgv = commandArgv('--copilot-command', o.copilotCommand);
      const pinned = { model: o.model, mode: o.mode, reasoningEffort: o.reasoningEffort };
      let cli: Awaited<ReturnType<typeof checkCopilotCli>>;
      try {
        cli = await checkCopilotCli({ copilotArgv, ...pinned });
      } catch (err) {
        die(err instanceof Error ? err.message : String(err));
      }
      if (!cli.acp) {
        log.warn(
          'this Copilot CLI has no --acp: using prompt mode (-p --allow-all-tools); permission requests cannot reach the planner',
        );
      }
      const stop = new AbortController();
      const groups = new ProcessGroups();
      const tasks = new AgentTasks();
      const server = createCopilotMcpServer({
        cwd,
        copilotArgv,
        ...pinned,
        timeoutMs: o.timeout,
        gitCodeResult: o.gitCodeResult,
        cli,
        signal: stop.signal,
        groups,
        tasks,
        logger: log,
      });
      await serveOverStdio(server, stop, { groups, tasks }, log);
      log.info('serving run_task over stdio', {
        cwd,
        copilot: o.copilotCommand,
        protocol: cli.acp ? 'acp' : 'prompt',
        ...pinned,
        timeout_ms: o.timeout,
        git_code_result: o.gitCodeResult,
      });
    });
}
