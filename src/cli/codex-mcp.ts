/**
 * @module `nfltr codex-mcp`: serves the OpenAI Codex CLI executor over stdio. stdout is the MCP channel,
 * so everything else (logs, errors) goes to stderr.
 */
import { type Command, Option } from 'commander';
import {
  checkCodexCli,
  createCodexMcpServer,
  DEFAULT_CODEX_TIMEOUT_MS,
  DEFAULT_UNREACHABLE_AFTER_MS,
} from '../executors/codex-mcp/index.js';
import { AgentTasks } from '../executors/common/index.js';
import { createLogger } from '../util/log.js';
import { ProcessGroups } from '../util/process-group.js';
import { checkCwd, commandArgv, nonEmpty, positiveDuration, serveOverStdio } from './claude-mcp.js';
import { die } from './options.js';

const HELP_AFTER = `
Each run_task call runs one Codex thread in --cwd, over Codex's app-server (JSON-RPC on stdio):
  codex app-server
(initialize; thread/start with --cwd, --sandbox, --ask-for-approval and --model; turn/start with the
task as the prompt and --reasoning-effort). Codex's messages, commands and file changes stream as MCP
progress, and its retries when the model API fails as well; approval requests
(a command or file change outside the sandbox) are put to the planner as yes/no questions (MCP
elicitation) and answered in Codex's shape ({decision: accept | decline}). A refused approval fails the
task, with Codex's final answer in the error. Cancellation sends turn/interrupt. The result carries the
model, tokens and model responses (turns) in structuredContent.usage; codex-app-server.jsonl (the
transcript) and codex-mcp-summary.json go to output_dir. Codex retries a model API it cannot reach
without end; after --unreachable-after of nothing but retries the turn is stopped and the task fails
with Codex's last error.

--model, --reasoning-effort, --sandbox and --ask-for-approval are fixed for the life of this process; a
task cannot change them. They are checked at start against the installed Codex: its app-server must
accept the sandbox mode and approval policy, and the reasoning effort must be one its model catalogue
offers for the model (an ephemeral thread and the model catalogue; no model call).

Credentials are Codex's own: a login in CODEX_HOME (\`codex login\`), OPENAI_API_KEY, or the key env var
(env_key) of the model provider in CODEX_HOME/config.toml. Behind a worker, pass them through with
\`nfltr worker --executor-env OPENAI_API_KEY,CODEX_HOME\`. The check_ready tool reports missing ones.

--git-code-result: each task runs in its own git worktree of --cwd, from context.base_ref or HEAD; the
diff (new files included) comes back as changes.patch with the changed paths; constraints.allowed_paths,
constraints.require_changed_paths and constraints.verification_commands are enforced; the worktree is
removed afterwards.

Examples:
  nfltr worker --executor-env OPENAI_API_KEY --mcp-command "nfltr codex-mcp --cwd ~/src/app --model gpt-5.2 --reasoning-effort high"
  nfltr codex-mcp --cwd . --sandbox workspace-write --ask-for-approval untrusted --git-code-result
`;

interface CodexMcpFlags {
  cwd: string;
  model?: string;
  reasoningEffort?: string;
  sandbox: string;
  askForApproval: string;
  timeout: number;
  unreachableAfter: number;
  gitCodeResult: boolean;
  codexCommand: string;
}

export function register(program: Command): void {
  program
    .command('codex-mcp')
    .description('Executor (MCP server over stdio) whose run_task tool runs a task with OpenAI Codex CLI')
    .option('--cwd <dir>', 'repository or folder the tasks run in', process.cwd())
    .option('--model <model>', 'Codex model for every task (codex -m), e.g. gpt-5.2', nonEmpty)
    .option(
      '--reasoning-effort <level>',
      "reasoning effort for every task (model_reasoning_effort), one of the model's, e.g. low, medium, high",
      nonEmpty,
    )
    .option(
      '--sandbox <mode>',
      'sandbox for the commands Codex runs (codex --sandbox): read-only, workspace-write, danger-full-access',
      nonEmpty,
      'workspace-write',
    )
    .option(
      '--ask-for-approval <policy>',
      'when Codex asks the planner before acting (codex --ask-for-approval): untrusted, on-request, never',
      nonEmpty,
      'on-request',
    )
    .addOption(
      new Option('--timeout <duration>', 'time limit per task, e.g. 20m, 1h')
        .argParser(positiveDuration)
        .default(DEFAULT_CODEX_TIMEOUT_MS, '30m'),
    )
    .addOption(
      new Option(
        '--unreachable-after <duration>',
        'fail a task whose model API has failed this long (Codex itself retries for ever), e.g. 30s, 5m',
      )
        .argParser(positiveDuration)
        .default(DEFAULT_UNREACHABLE_AFTER_MS, '2m'),
    )
    .option(
      '--git-code-result',
      'run each task in its own git worktree and return its diff as changes.patch',
      false,
    )
    .option(
      '--codex-command <command>',
      'how to start Codex CLI (split like a shell would, no expansion)',
      'codex',
    )
    .addHelpText('after', HELP_AFTER)
    .action(async (o: CodexMcpFlags) => {
      const log = createLogger('codex-mcp');
      const cwd = await checkCwd(o.cwd, o.gitCodeResult);
      const codexArgv = commandArgv('--codex-command', o.codexCommand);
      const settings = {
        sandbox: o.sandbox,
        approvalPolicy: o.askForApproval,
        ...(o.model ? { model: o.model } : {}),
        ...(o.reasoningEffort ? { reasoningEffort: o.reasoningEffort } : {}),
      };
      const groups = new ProcessGroups();
      const tasks = new AgentTasks();
      try {
        for (const note of await checkCodexCli({ codexArgv, settings, cwd, groups })) log.warn(note);
      } catch (err) {
        die(err instanceof Error ? err.message : String(err));
      }
      const stop = new AbortController();
      const server = createCodexMcpServer({
        cwd,
        codexArgv,
        settings,
        timeoutMs: o.timeout,
        unreachableAfterMs: o.unreachableAfter,
        gitCodeResult: o.gitCodeResult,
        signal: stop.signal,
        groups,
        tasks,
        logger: log,
      });
      await serveOverStdio(server, stop, { groups, tasks }, log);
      log.info('serving run_task over stdio', {
        cwd,
        codex: o.codexCommand,
        ...settings,
        timeout_ms: o.timeout,
        git_code_result: o.gitCodeResult,
      });
    });
}
