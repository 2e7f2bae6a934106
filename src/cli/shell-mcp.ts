/**
 * @module `nfltr shell-mcp`: serves the shell executor over stdio. stdout is the MCP channel, so
 * everything else (logs, errors) goes to stderr.
 */
import { statSync } from 'node:fs';
import { resolve } from 'node:path';
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';
import { type Command, InvalidArgumentError, Option } from 'commander';
import {
  compileAllowPattern,
  createShellMcpServer,
  DEFAULT_COMMAND_TIMEOUT_MS,
} from '../executors/shell-mcp/index.js';
import { createLogger } from '../util/log.js';
import { GROUP_KILL_GRACE_MS, ProcessGroups } from '../util/process-group.js';
import { die, parseDuration } from './options.js';

const HELP_AFTER = `
Each run_task call runs the strings in constraints.commands one after another with /bin/sh -c in
--cwd, stopping at the first that fails. Output lines stream as MCP progress; full logs and
summary.json are written to the task's output_dir. Commands see NFLTR_TASK_ID, NFLTR_TASK_INPUT_DIR
and NFLTR_TASK_OUTPUT_DIR.

--allow matching: a pattern is compared with the WHOLE command string (leading and trailing
whitespace ignored), case-sensitively:
  *    any run of characters, possibly empty, except the shell control characters ; & | < > $ \` ( )
       and line breaks
  **   any run of characters, control characters included (--allow '**' allows every command)
  any other character matches itself (control characters written in the pattern match literally)
Examples: 'npm test' allows exactly "npm test"; 'npm test *' also allows "npm test -- --grep x" but
not "npm test; rm -rf ~"; 'git status *' allows "git status -s" but not "git log | head" (write
'git log | head' for that).
A wildcard cannot widen a pattern through a program's own options: when the words a * or ** matched
make a program run other code (git -c alias.x='!cmd', -C, --exec-path, git config; find -exec; awk,
sed and inline-code interpreter programs (python -c, node -e, perl -e); make -f or VAR=; npm
--script-shell or exec; tar --to-command; env, xargs, sh, sudo, timeout and other runners; a program
name itself, e.g. after a pipe), the command is asked like an unmatched one. Write such words
literally in the pattern to allow them. A pattern of stars only ('**') allows every command.
See docs/security.md for the full list.
A command that matches no pattern is put to the planner as a yes/no question (MCP elicitation) and
runs only if approved; if the MCP client cannot be asked, the task fails.

Examples:
  nfltr worker --mcp-command "nfltr shell-mcp --cwd ~/src/app --allow 'npm test *' --allow 'npm ci'"
  nfltr shell-mcp --cwd . --allow 'make test' --allow 'git status *' --timeout 30m
`;

const collect = (value: string, previous: string[]): string[] => {
  if (value.trim() === '') throw new InvalidArgumentError('an --allow pattern must not be empty');
  compileAllowPattern(value);
  return [...previous, value];
};

const positiveDuration = (value: string): number => {
  const ms = parseDuration(value);
  if (ms <= 0) throw new InvalidArgumentError(`expected a duration above zero, got ${JSON.stringify(value)}`);
  return ms;
};

export function register(program: Command): void {
  program
    .command('shell-mcp')
    .description(
      'Executor (MCP server over stdio) whose run_task tool runs shell commands; needs no AI account',
    )
    .option('--cwd <dir>', 'directory the commands run in', process.cwd())
    .option(
      '--allow <pattern>',
      'run commands matching this pattern without asking (repeatable)',
      collect,
      [],
    )
    .addOption(
      new Option('--timeout <duration>', 'time limit per command, e.g. 30s, 5m, 1h')
        .argParser(positiveDuration)
        .default(DEFAULT_COMMAND_TIMEOUT_MS, '10m'),
    )
    .addHelpText('after', HELP_AFTER)
    .action(async (o: { cwd: string; allow: string[]; timeout: number }) => {
      const log = createLogger('shell-mcp');
      const timeoutMs = o.timeout;
      const cwd = resolve(o.cwd);
      if (!statSync(cwd, { throwIfNoEntry: false })?.isDirectory()) die(`--cwd ${cwd} is not a directory`);
      const stop = new AbortController();
      const groups = new ProcessGroups();
      const server = createShellMcpServer({
        cwd,
        allow: o.allow,
        timeoutMs,
        signal: stop.signal,
        groups,
        logger: log,
      });

      let stopping = false;
      const shutdown = (why: string) => {
        if (stopping) return;
        stopping = true;
        log.info('shutting down', { why });
        stop.abort(); // kills running command groups: SIGTERM now, SIGKILL after the grace
        void server.close().catch(() => {});
        // Exit once every command group is gone (or its kill grace has passed), whatever else still
        // holds the event loop.
        const deadline = Date.now() + GROUP_KILL_GRACE_MS + 300;
        setInterval(() => {
          if (groups.live === 0 || Date.now() > deadline) process.exit(0);
        }, 50);
      };
      process.stdin.on('end', () => shutdown('stdin closed'));
      process.stdout.on('error', () => shutdown('stdout closed'));
      process.on('SIGTERM', () => shutdown('SIGTERM'));
      process.on('SIGINT', () => shutdown('SIGINT'));

      await server.connect(new StdioServerTransport());
      log.info('serving run_task over stdio', { cwd, allow: o.allow, timeout_ms: timeoutMs });
    });
}
