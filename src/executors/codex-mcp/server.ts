/**
 * @module The `nfltr codex-mcp` executor: an MCP server whose `run_task` tool runs one OpenAI Codex CLI
 * thread per task through Codex's app-server,
 *
 *   codex app-server    (thread/start {cwd, sandbox, approvalPolicy, model}, turn/start {effort})
 *
 * so that Codex's item events stream as progress, its approval requests go to the planner, and
 * cancellation interrupts the turn. `check_ready` answers whether Codex has credentials, without a model
 * call.
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
  formatArgv,
  registerAgentRunTask,
  spawnAgentProcess,
} from '../common/index.js';
import { type Readiness, registerCheckReady } from '../common/ready.js';
import { openTranscript } from '../common/transcript.js';
import { type JsonRpcPeer, RpcError } from '../copilot-mcp/index.js';
import { withRpcProcess } from '../rpc-process.js';
import { formatDuration } from '../shell-mcp/index.js';
import { type CodexSettings, initialize, runCodexTurn, threadSettings } from './app-server.js';

/** Default time limit of one task (`--timeout`). */
export const DEFAULT_CODEX_TIMEOUT_MS = 30 * 60_000;

/** Default of `--unreachable-after`. */
export const DEFAULT_UNREACHABLE_AFTER_MS = 2 * 60_000;

/** After a cancellation, how long Codex gets to interrupt its turn before its group is killed. */
const CANCEL_GRACE_MS = 1500;

/** After the turn ended and stdin closed, how long codex may take to exit. */
const EXIT_GRACE_MS = 3000;

/** Colour codes in codex's log lines. */
const ANSI_COLOUR = new RegExp(`${String.fromCharCode(27)}\\[[0-9;]*m`, 'g');

/** How long a start-up or readiness check may take (it makes no model call). */
const CHECK_TIMEOUT_MS = 30_000;

export interface CodexMcpOptions {
  cwd: string;
  /** `--codex-command`, split into argv. */
  codexArgv: readonly string[];
  settings: CodexSettings;
  timeoutMs?: number;
  /** Stop a turn whose model API has failed for this long (Codex itself retries for ever). */
  unreachableAfterMs?: number;
  gitCodeResult?: boolean;
  /** Aborting stops every running task (shutdown). */
  signal?: AbortSignal;
  /** The command's registry of process groups: every CLI started for a task or a check is counted there. */
  groups: ProcessGroups;
  /** The command's tasks in progress and their pending cleanups. */
  tasks: AgentTasks;
  logger?: Logger;
}

/** The app-server command line. The pinned settings travel with each thread and turn instead. */
export function codexAppServerArgv(codexArgv: readonly string[]): string[] {
  return [...codexArgv, 'app-server'];
}

function exitText(exit: AgentExit, stderr: string): string {
  const how = exit.spawnError
    ? `could not be started: ${exit.spawnError}`
    : exit.code !== null
      ? `exited with code ${exit.code}`
      : `was killed by ${exit.signal}`;
  return `codex ${how}${stderr ? `: ${codexError(stderr)}` : ''}`;
}

/**
 * What codex said went wrong, from its stderr: the `Error: …` paragraph when there is one (a config it
 * refused), else the last lines; never its stack backtrace.
 */
export function codexError(stderr: string): string {
  const plain = stderr.replace(ANSI_COLOUR, '');
  const at = plain.search(/^Error: /m);
  if (at !== -1) {
    return plain
      .slice(at)
      .split(/\n\s*\n|\nStack backtrace:/)[0]!
      .replace(/\s*\n\s*/g, ' ')
      .trim();
  }
  const lines = plain
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !/^WARNING: proceeding/.test(l) && !/bubblewrap/.test(l));
  return lines.slice(-5).join(' | ');
}

/**
 * Starts `codex app-server` in `cwd`, initialises it and hands the peer to `fn`; stops the process after.
 * Used by the start-up and readiness checks. Rejects with codex's own words when it cannot start.
 */
async function withAppServer<T>(
  argv: readonly string[],
  cwd: string,
  env: NodeJS.ProcessEnv,
  groups: ProcessGroups,
  fn: (peer: JsonRpcPeer) => Promise<T>,
): Promise<T> {
  try {
    return await withRpcProcess(
      { argv, cwd, env, groups, timeoutMs: CHECK_TIMEOUT_MS, exitText },
      async (peer) => {
        await initialize(peer);
        return fn(peer);
      },
    );
  } catch (err) {
    throw err instanceof RpcError ? new Error(`codex answered with an error: ${err.describe()}`) : err;
  }
}

interface ModelInfo {
  id: string;
  model: string;
  isDefault?: boolean;
  supportedReasoningEfforts?: { reasoningEffort: string }[];
}

/**
 * Checks the pinned settings against the installed Codex at start: its app-server must start a thread
 * with them (Codex itself refuses an unknown sandbox mode or approval policy), and a
 * reasoning effort must be one its model catalogue offers for the model (every model's, when the model
 * is not in the catalogue, as with a custom provider). Returns notes for the log; throws with a clear
 * message.
 */
export async function checkCodexCli(
  opts: Pick<CodexMcpOptions, 'codexArgv' | 'settings' | 'cwd' | 'groups'>,
): Promise<string[]> {
  const s = opts.settings;
  const argv = codexAppServerArgv(opts.codexArgv);
  const shown = formatArgv(opts.codexArgv);
  let models: ModelInfo[];
  try {
    models = await withAppServer(argv, opts.cwd, process.env, opts.groups, async (peer) => {
      // An ephemeral thread (no rollout file, no model call) with the pinned settings, as tasks will start
      // theirs: codex refuses a sandbox mode or approval policy it does not know.
      await peer.request('thread/start', { ...threadSettings(opts.cwd, s), ephemeral: true });
      const r = await peer.request<{ data?: ModelInfo[] }>('model/list', { includeHidden: true, limit: 200 });
      return r?.data ?? [];
    });
  } catch (err) {
    const why = err instanceof Error ? err.message : String(err);
    if (/could not be started/.test(why)) {
      throw new Error(
        `could not run \`${shown}\` (${why}); install OpenAI Codex CLI (npm i -g @openai/codex) or point --codex-command at it`,
      );
    }
    throw new Error(
      `\`${shown} app-server\` refused the settings (--sandbox ${s.sandbox}, --ask-for-approval ${s.approvalPolicy}${s.model ? `, --model ${s.model}` : ''}${s.reasoningEffort ? `, --reasoning-effort ${s.reasoningEffort}` : ''}): ${why}`,
    );
  }
  const notes: string[] = [];
  const listed = s.model
    ? models.find((m) => m.id === s.model || m.model === s.model)
    : models.find((m) => m.isDefault);
  if (s.model && !listed) {
    notes.push(
      `--model ${s.model} is not in this Codex's model catalogue (fine for a custom model provider)`,
    );
  }
  if (s.reasoningEffort) {
    const pool = listed ? [listed] : models;
    const efforts = [
      ...new Set(pool.flatMap((m) => (m.supportedReasoningEfforts ?? []).map((e) => e.reasoningEffort))),
    ];
    if (efforts.length > 0 && !efforts.includes(s.reasoningEffort)) {
      throw new Error(
        `--reasoning-effort ${JSON.stringify(s.reasoningEffort)} is not offered by \`${shown}\`${listed ? ` for model ${listed.model}` : ''}; it offers: ${efforts.join(', ')}`,
      );
    }
  }
  return notes;
}

interface ProviderInfo {
  name?: string;
  env_key?: string | null;
  requires_openai_auth?: boolean | null;
}

/**
 * Whether Codex could run a task now, without a model call: the configured model provider's key is in
 * the environment (a provider with `env_key`), or, for OpenAI itself, a login in CODEX_HOME or
 * OPENAI_API_KEY / CODEX_API_KEY.
 */
export async function checkCodexReady(
  opts: Pick<CodexMcpOptions, 'codexArgv' | 'settings' | 'cwd' | 'groups'>,
  env: NodeJS.ProcessEnv = process.env,
): Promise<Readiness> {
  const envFix = (name: string) =>
    `set ${name} in the worker's environment and pass it to the executor with \`nfltr worker --executor-env ${name}\` (the worker passes only PATH, HOME, locale and NFLTR_* unless told)`;
  try {
    return await withAppServer(
      codexAppServerArgv(opts.codexArgv),
      opts.cwd,
      env,
      opts.groups,
      async (peer) => {
        const config = await peer.request<{
          config?: { model_provider?: string | null; model_providers?: Record<string, ProviderInfo> };
        }>('config/read', {});
        const account = await peer.request<{ account?: unknown; requiresOpenaiAuth?: boolean }>(
          'account/read',
          {},
        );
        const providerId = config?.config?.model_provider ?? 'openai';
        const provider = config?.config?.model_providers?.[providerId];
        const key = provider?.env_key;
        if (key && !env[key]) {
          return {
            ready: false,
            reason: `Codex's model provider "${providerId}" reads its API key from ${key}, which is not set for this executor`,
            fix: envFix(key),
          };
        }
        if (account?.requiresOpenaiAuth && !account.account && !env.OPENAI_API_KEY && !env.CODEX_API_KEY) {
          const home = env.CODEX_HOME ?? '~/.codex';
          return {
            ready: false,
            reason: `Codex has no OpenAI credentials: no login in ${home}/auth.json and no OPENAI_API_KEY`,
            fix: `run \`codex login\` (or \`codex login --with-api-key\`) as the worker's user${env.CODEX_HOME ? '' : ' (a CODEX_HOME elsewhere needs `nfltr worker --executor-env CODEX_HOME`)'}, or ${envFix('OPENAI_API_KEY')}`,
          };
        }
        return { ready: true };
      },
    );
  } catch (err) {
    return {
      ready: false,
      reason: err instanceof Error ? err.message : String(err),
      fix: 'install OpenAI Codex CLI (npm i -g @openai/codex) or point --codex-command at it, and check CODEX_HOME/config.toml',
    };
  }
}

/** One task: one app-server process, one thread, one turn. */
async function runCodex(opts: CodexMcpOptions, ctx: AgentRunContext): Promise<AgentRunResult> {
  const started = Date.now();
  const transcript = openTranscript(join(ctx.args.output_dir, 'codex-app-server.jsonl'));
  const record = transcript.record;
  let peer: JsonRpcPeer | undefined;
  const early: string[] = [];
  const argv = codexAppServerArgv(opts.codexArgv);
  ctx.log.info('starting codex', { argv: formatArgv(argv), cwd: ctx.cwd });
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
  const exited = proc.exited.then((exit) => {
    exitInfo = exitText(exit, proc.stderrTail());
    peer?.close(new Error(exitInfo));
    return exitInfo;
  });
  let killTimer: NodeJS.Timeout | undefined;
  const onAbort = () => {
    killTimer = setTimeout(() => proc.kill(), CANCEL_GRACE_MS);
  };
  ctx.signal.addEventListener('abort', onAbort, { once: true });
  if (ctx.signal.aborted) onAbort();
  try {
    return await runCodexTurn(
      ctx,
      {
        write: (line) => {
          record('sent', line.trimEnd());
          if (!proc.child.stdin.destroyed) proc.child.stdin.write(line);
        },
        settings: opts.settings,
        unreachableAfterMs: opts.unreachableAfterMs ?? DEFAULT_UNREACHABLE_AFTER_MS,
        exited,
        attach: (p) => {
          peer = p;
          if (exitInfo) p.close(new Error(exitInfo));
          for (const line of early.splice(0)) p.line(line);
        },
      },
      started,
    );
  } catch (err) {
    if (!(err instanceof RpcError))
      await Promise.race([proc.exited, new Promise((r) => setTimeout(r, 1000))]);
    const text =
      err instanceof RpcError
        ? `codex answered with an error: ${err.describe()}`
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

function describeTool(opts: CodexMcpOptions, timeoutMs: number): string {
  const s = opts.settings;
  return [
    `Runs the task with OpenAI Codex CLI (app-server) on this worker machine, in ${opts.cwd}.`,
    '`objective` is the prompt; `context` and `constraints` are passed along as JSON. Codex reads and edits files and runs commands there.',
    `Pinned when this executor started: model ${s.model ?? "(Codex's default)"}, reasoning effort ${s.reasoningEffort ?? "(Codex's default)"}, sandbox ${s.sandbox}, approval policy ${s.approvalPolicy}. A task cannot change them.`,
    "Codex's messages, commands and file changes stream as progress. When Codex asks approval (a command or file change outside its sandbox), you are asked (approve: true/false); a refusal fails the task even if Codex carried on without it.",
    `Time limit ${formatDuration(timeoutMs)} per task (constraints.max_minutes may shorten it).`,
    opts.gitCodeResult
      ? 'The task runs in its own git worktree, from context.base_ref (a branch, tag or commit) or HEAD. Its changes come back as changes.patch in the artifacts, with the changed paths; constraints.allowed_paths, constraints.require_changed_paths and constraints.verification_commands are enforced.'
      : '',
    "The result is Codex's final answer, with model, tokens and model responses (turns) in structuredContent.usage and the thread id as session_id. Files Codex writes to output_dir come back as artifacts.",
  ]
    .filter(Boolean)
    .join(' ');
}

/** Creates the Codex executor's MCP server (not yet connected to a transport). */
export function createCodexMcpServer(opts: CodexMcpOptions): McpServer {
  const log = opts.logger ?? silentLogger;
  const timeoutMs = opts.timeoutMs ?? DEFAULT_CODEX_TIMEOUT_MS;
  const server = new McpServer({ name: 'nfltr-codex-mcp', version: VERSION });
  registerAgentRunTask(
    server,
    { title: 'Run a task with OpenAI Codex CLI', description: describeTool(opts, timeoutMs) },
    {
      executor: 'codex-mcp',
      cliName: 'codex',
      cwd: opts.cwd,
      gitCodeResult: opts.gitCodeResult ?? false,
      timeoutMs,
      settings: {
        model: opts.settings.model,
        reasoning_effort: opts.settings.reasoningEffort,
        sandbox: opts.settings.sandbox,
        approval_policy: opts.settings.approvalPolicy,
      },
      ...(opts.signal ? { signal: opts.signal } : {}),
      groups: opts.groups,
      tasks: opts.tasks,
      log,
      run: (ctx) => runCodex(opts, ctx),
    },
  );
  registerCheckReady(server, 'Codex', () => checkCodexReady(opts));
  return server;
}
