/**
 * @module The `nfltr shell-mcp` executor: an MCP server whose `run_task` tool runs the shell commands
 * listed in `constraints.commands`, one after another. It needs no AI account, which makes it the
 * reference executor for the `run_task` contract (docs/executor-contract.md) and a useful worker in its
 * own right (builds, test runs, data jobs).
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { isAbsolute, join } from 'node:path';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { z } from 'zod';
import { formatDuration } from '../../util/duration.js';
import { type Logger, silentLogger } from '../../util/log.js';
import type { ProcessGroups } from '../../util/process-group.js';
import { ProgressPacer } from '../../util/progress-pacer.js';
import { VERSION } from '../../util/version.js';
import { type AllowRule, checkAllowed, compileAllowPattern } from './allow.js';
import { commandStatus, runCommand } from './run-command.js';

/** Default per-command time limit (`--timeout`). */
export const DEFAULT_COMMAND_TIMEOUT_MS = 10 * 60_000;

/** How long one approval question may wait for the planner's answer. */
const APPROVAL_TIMEOUT_MS = 24 * 3_600_000;

/** Progress notifications: the first 32 as they come, then ten a second; faster output is coalesced. */
const PROGRESS_INTERVAL_MS = 100;
const PROGRESS_BURST = 32;

/** Lines of each command's output repeated in the text result (full output is in the log files). */
const TAIL_LINES = 10;

/** Progress messages carry at most this many characters of one output line. */
const MAX_PROGRESS_LINE = 1000;

/** The result's output tails carry at most this many characters of one line (the log has it whole). */
const MAX_TAIL_LINE = 4000;

export interface ShellMcpOptions {
  /** Directory the commands run in. */
  cwd: string;
  /** `--allow` patterns (see allow.ts): matching commands run without asking. */
  allow?: readonly string[];
  /** Per-command time limit in milliseconds; default {@link DEFAULT_COMMAND_TIMEOUT_MS}. */
  timeoutMs?: number;
  /** Aborting kills every running command (used on shutdown). */
  signal?: AbortSignal;
  /** The command's registry of process groups: every command run is counted there while alive. */
  groups: ProcessGroups;
  logger?: Logger;
}

export type CommandStatus = 'succeeded' | 'failed' | 'timed_out' | 'cancelled' | 'not_approved';

/** One entry of `structuredContent.results`. */
export interface CommandResult {
  command: string;
  status: CommandStatus;
  /** Exit code; null when the command did not run or was ended by a signal. */
  exit_code: number | null;
  signal: string | null;
  duration_ms: number;
  /** Log file name relative to output_dir; null when the command did not run. */
  log: string | null;
}

/** `structuredContent` of every run_task result, success or failure. */
export interface ShellTaskResult {
  [key: string]: unknown;
  task_id: string;
  cwd: string;
  ok: boolean;
  results: CommandResult[];
  /** Why the task failed; absent when ok. */
  error?: string;
}

const commandResultSchema = z.object({
  command: z.string(),
  status: z.enum(['succeeded', 'failed', 'timed_out', 'cancelled', 'not_approved']),
  exit_code: z.number().int().nullable(),
  signal: z.string().nullable(),
  duration_ms: z.number(),
  log: z.string().nullable(),
});

const outputSchema = {
  task_id: z.string(),
  cwd: z.string(),
  ok: z.boolean().describe('true when every command exited with code 0'),
  results: z.array(commandResultSchema).describe('one entry per command attempted, in order'),
  error: z.string().optional().describe('why the task failed'),
};

const inputSchema = {
  task_id: z.string().describe('Task identifier chosen by the planner'),
  objective: z.string().describe('What the task is for; recorded in summary.json, not interpreted'),
  context: z.record(z.unknown()).optional().describe('Free-form context; recorded, not interpreted'),
  constraints: z
    .record(z.unknown())
    .optional()
    .describe('Must contain `commands`: an array of shell command strings, run in order'),
  input_dir: z.string().describe('Absolute path of the folder holding files sent with the task'),
  output_dir: z.string().describe('Absolute path of the folder whose files are returned as artifacts'),
};

function describeTool(cwd: string, rules: readonly AllowRule[], timeoutMs: number): string {
  const allowed = rules.length
    ? `Commands matching one of these patterns run without asking: ${rules.map((r) => `\`${r.pattern}\``).join(', ')} (\`*\` matches anything except the shell characters ; & | < > $ \` ( ) and line breaks; \`**\` matches anything), unless a wildcard supplied code to a program that runs code through its options (git -c, find -exec, awk programs, env, sh -c…). Any other command is first put to you as a yes/no question and runs only if approved.`
    : 'No command is pre-approved: each one is first put to you as a yes/no question and runs only if approved.';
  return [
    `Run shell commands on this worker machine, in ${cwd}, one after another.`,
    'Put them in `constraints.commands` as an array of strings, e.g. {"commands": ["npm ci", "npm test"]};',
    'each runs with /bin/sh -c. Execution stops at the first command that fails (non-zero exit code or',
    `timeout, ${formatDuration(timeoutMs)} per command); the result is then an error naming it.`,
    allowed,
    "Output lines stream as progress. Each command's full output is written to output_dir as",
    'command-N.log, with summary.json; these come back as artifacts. Commands see NFLTR_TASK_ID,',
    'NFLTR_TASK_INPUT_DIR (files sent with the task) and NFLTR_TASK_OUTPUT_DIR (write result files there).',
    '`objective` and `context` are recorded in summary.json but not interpreted.',
  ].join(' ');
}

/** Checks `constraints.commands`; returns the commands or a message saying what is wrong. */
function readCommands(constraints: Record<string, unknown> | undefined): string[] | string {
  const example = 'e.g. {"constraints": {"commands": ["npm test"]}}';
  const commands = constraints?.commands;
  if (commands === undefined)
    return `constraints.commands is missing: pass the shell commands to run, ${example}`;
  if (!Array.isArray(commands) || commands.length === 0) {
    return `constraints.commands must be a non-empty array of command strings, ${example}`;
  }
  const bad = commands.findIndex((c) => typeof c !== 'string' || c.trim() === '');
  if (bad !== -1) {
    return `constraints.commands[${bad}] must be a non-empty string, got ${JSON.stringify(commands[bad])}`;
  }
  return commands as string[];
}

const errorResult = (text: string): CallToolResult => ({ content: [{ type: 'text', text }], isError: true });

/** Creates the shell executor's MCP server (not yet connected to a transport). */
export function createShellMcpServer(opts: ShellMcpOptions): McpServer {
  const log = opts.logger ?? silentLogger;
  const rules = (opts.allow ?? []).map(compileAllowPattern);
  const timeoutMs = opts.timeoutMs ?? DEFAULT_COMMAND_TIMEOUT_MS;
  const server = new McpServer({ name: 'nfltr-shell-mcp', version: VERSION });

  server.registerTool(
    'run_task',
    {
      title: 'Run shell commands',
      description: describeTool(opts.cwd, rules, timeoutMs),
      inputSchema,
      outputSchema,
      annotations: { destructiveHint: true, openWorldHint: true },
    },
    async (args, extra): Promise<CallToolResult> => {
      const commands = readCommands(args.constraints);
      if (typeof commands === 'string') return errorResult(commands);
      if (!isAbsolute(args.output_dir) || !isAbsolute(args.input_dir)) {
        return errorResult('input_dir and output_dir must be absolute paths');
      }
      await mkdir(args.output_dir, { recursive: true });

      const signal = opts.signal ? AbortSignal.any([extra.signal, opts.signal]) : extra.signal;
      const progressToken = extra._meta?.progressToken;
      let progress = 0;
      // Every line counts in `progress`; a flood of lines is coalesced (ProgressPacer).
      const pacer = new ProgressPacer<{ progress: number; message: string }>({
        intervalMs: PROGRESS_INTERVAL_MS,
        burst: PROGRESS_BURST,
        emit: (params) =>
          extra
            .sendNotification({
              method: 'notifications/progress',
              params: { progressToken: progressToken!, ...params },
            })
            .catch(() => {}), // the client may be gone; the result path reports that
      });
      const report = (message: string) => {
        if (progressToken === undefined) return;
        progress += 1;
        pacer.push({ progress, message });
      };
      const env = {
        ...process.env,
        NFLTR_TASK_ID: args.task_id,
        NFLTR_TASK_INPUT_DIR: args.input_dir,
        NFLTR_TASK_OUTPUT_DIR: args.output_dir,
      };

      log.info('task started', { task: args.task_id, commands: commands.length });
      const results: CommandResult[] = [];
      const tails: string[][] = [];
      let error: string | undefined;

      for (const [i, command] of commands.entries()) {
        const tag = `[${i + 1}/${commands.length}] $ ${command}`;
        const verdict = checkAllowed(command, rules);
        if (!verdict.allowed) {
          const why =
            verdict.pattern !== undefined
              ? `it matches --allow ${JSON.stringify(verdict.pattern)}, but ${verdict.risk}`
              : 'it matches no --allow pattern of this worker';
          const refusal = await askApproval(server, command, why, signal, extra, {
            taskId: args.task_id,
            index: i,
            total: commands.length,
          });
          if (refusal !== undefined) {
            results.push({
              command,
              status: signal.aborted ? 'cancelled' : 'not_approved',
              exit_code: null,
              signal: null,
              duration_ms: 0,
              log: null,
            });
            tails.push([]);
            error = signal.aborted ? 'task cancelled' : refusal;
            break;
          }
        }

        report(tag);
        const logName = `command-${i + 1}.log`;
        const tail: string[] = [];
        tails.push(tail);
        const outcome = await runCommand({
          command,
          cwd: opts.cwd,
          env,
          groups: opts.groups,
          timeoutMs,
          signal,
          logPath: join(args.output_dir, logName),
          onLine: (line) => {
            tail.push(
              line.length > MAX_TAIL_LINE
                ? `${line.slice(0, MAX_TAIL_LINE)}… [${line.length - MAX_TAIL_LINE} more characters in ${logName}]`
                : line,
            );
            if (tail.length > TAIL_LINES) tail.shift();
            report(
              `${tag}: ${line.length > MAX_PROGRESS_LINE ? `${line.slice(0, MAX_PROGRESS_LINE)}…` : line}`,
            );
          },
        });
        pacer.flush(); // the command's last line
        const status: CommandStatus = commandStatus(outcome);
        results.push({
          command,
          status,
          exit_code: outcome.exitCode,
          signal: outcome.signal,
          duration_ms: outcome.durationMs,
          log: outcome.logError === undefined ? logName : null,
        });
        if (outcome.logError !== undefined)
          log.warn('could not write log', { file: logName, error: outcome.logError });
        if (status === 'succeeded') continue;
        error =
          status === 'cancelled'
            ? 'task cancelled'
            : status === 'timed_out'
              ? `command \`${command}\` timed out after ${formatDuration(timeoutMs)} (--timeout) and was killed`
              : outcome.spawnError !== undefined
                ? `command \`${command}\` could not be started: ${outcome.spawnError}`
                : outcome.exitCode === null
                  ? `command \`${command}\` was killed by ${outcome.signal}`
                  : `command \`${command}\` failed with exit code ${outcome.exitCode}`;
        break;
      }

      pacer.stop();
      const structured: ShellTaskResult = {
        task_id: args.task_id,
        cwd: opts.cwd,
        ok: error === undefined,
        results,
        ...(error !== undefined ? { error } : {}),
      };
      await writeFile(
        join(args.output_dir, 'summary.json'),
        `${JSON.stringify({ ...structured, objective: args.objective, context: args.context ?? null }, null, 2)}\n`,
      );
      log.info('task finished', { task: args.task_id, ok: structured.ok, error });
      return {
        content: [{ type: 'text', text: summarise(structured, commands.length, tails) }],
        structuredContent: structured,
        ...(error !== undefined ? { isError: true } : {}),
      };
    },
  );
  return server;
}

/**
 * Asks the planner (through MCP elicitation) whether `command` may run. Returns undefined when
 * approved, else the reason it will not run.
 */
async function askApproval(
  server: McpServer,
  command: string,
  why: string,
  signal: AbortSignal,
  extra: { requestId: string | number },
  at: { taskId: string; index: number; total: number },
): Promise<string | undefined> {
  const { taskId, index, total } = at;
  if (!server.server.getClientCapabilities()?.elicitation?.form) {
    return (
      `command \`${command}\` needs approval (${why}) and the MCP client cannot be asked to approve it ` +
      '(no elicitation support); restart shell-mcp with an --allow pattern that matches it literally'
    );
  }
  try {
    const answer = await server.server.elicitInput(
      {
        mode: 'form',
        message: `run \`${command}\`? yes/no (task ${taskId}, command ${index + 1} of ${total}; ${why})`,
        requestedSchema: {
          type: 'object',
          properties: {
            approve: {
              type: 'boolean',
              title: 'Run this command?',
              description: `true runs \`${command}\`; false refuses it and fails the task`,
            },
          },
          required: ['approve'],
        },
      },
      { signal, relatedRequestId: extra.requestId, timeout: APPROVAL_TIMEOUT_MS },
    );
    if (answer.action === 'accept' && answer.content?.approve === true) return undefined;
    return `command \`${command}\` was not approved`;
  } catch (err) {
    if (signal.aborted) return 'task cancelled';
    return `command \`${command}\` was not approved: asking failed (${err instanceof Error ? err.message : String(err)})`;
  }
}

/** The text result: one line per command, output tails, and the failure if any. */
function summarise(r: ShellTaskResult, total: number, tails: string[][]): string {
  const passed = r.results.filter((c) => c.status === 'succeeded').length;
  const lines = [r.ok ? `${passed}/${total} commands succeeded in ${r.cwd}` : `FAILED: ${r.error}`, ''];
  for (const [i, c] of r.results.entries()) {
    const code = c.exit_code !== null ? `exit ${c.exit_code}` : c.signal ? `killed by ${c.signal}` : c.status;
    lines.push(
      `[${i + 1}] \`${c.command}\`: ${c.status}, ${code}, ${c.duration_ms} ms${c.log ? `, log ${c.log}` : ''}`,
    );
    const tail = tails[i] ?? [];
    if (tail.length) lines.push(...tail.map((l) => `    ${l}`));
  }
  if (!r.ok && r.results.length < total)
    lines.push('', `${total - r.results.length} later command(s) not run.`);
  return lines.join('\n');
}
