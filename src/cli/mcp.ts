/**
 * @module `nfltr mcp`: the planner, an MCP server over stdio. stdout is the MCP channel; every log and
 * error goes to stderr.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { type Command, InvalidArgumentError, Option } from 'commander';
import { DEFAULT_MAX_ARTIFACT_BYTES } from '../agent/artifacts.js';
import { A2aEndpoint, AgentClient } from '../agent/index.js';
import {
  acquireStateLock,
  MCP_JSON_SERVER_NAME,
  PeerDirectory,
  type PlannerServer,
  servePlanner,
  TaskManager,
  TaskStore,
  writeMcpJson,
} from '../planner/index.js';
import { createLogger } from '../util/log.js';
import {
  type AgentFlags,
  addAgentOptions,
  addE2eeOptions,
  agentOptionsFrom,
  type E2eeFlags,
  pairingKeyFrom,
} from './agent-options.js';
import { die, nfltrHome, parseDuration, parsePositiveInt } from './options.js';

export interface McpCommandOptions extends AgentFlags, E2eeFlags {
  proxyUrl?: string;
  stateDir?: string;
  maxArtifactBytes: number;
  workerLostGrace: number;
  writeMcpJson?: string;
}

function positiveDuration(value: string): number {
  const ms = parseDuration(value);
  if (ms <= 0) throw new InvalidArgumentError(`expected a duration above zero, got ${JSON.stringify(value)}`);
  return ms;
}

function parseUrl(value: string): string {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new InvalidArgumentError(
      `expected an http(s) URL like https://nfltr.xyz, got ${JSON.stringify(value)}`,
    );
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new InvalidArgumentError(`expected an http or https URL, got ${JSON.stringify(value)}`);
  }
  return value.replace(/\/+$/, '');
}

const HELP_AFTER = `
Tools, all listed from the start: list_my_peers, list_worker_peers (HTTP API, --proxy-url); probe_worker,
orchestrate_task, wait_for_tasks, get_task_status, respond_to_worker, cancel_task, list_active_tasks
(A2A link, --server). A tool that cannot run now (no --server or --proxy-url, an empty or unexpanded API
key, a key the relay refused, the relay unreachable) answers with an error saying why and what to fix.
MCP clients of protocol 2025-06-18/2025-11-25 (initialize) and 2026-07-28 (server/discover) are served;
orchestrate_task and wait_for_tasks accept task-augmented calls in both (docs/planner.md).
Tasks, their events and their artifacts are kept in --state-dir (tasks.db, artifacts/<task_id>/); a
planner restarted on the same --name and --state-dir resumes every open task (docs/durability.md).

Examples:
  nfltr mcp --proxy-url https://nfltr.xyz --server grpc.nfltr.xyz:443 --api-key "$NFLTR_API_KEY"
  nfltr mcp --proxy-url https://nfltr.xyz --server grpc.nfltr.xyz:443 --write-mcp-json .vscode/mcp.json
`;

/** Flags whose values are paths: written absolute into mcp.json, which the client runs from anywhere. */
const PATH_FLAGS = new Set(['--state-dir', '--e2ee-key-file', '--tls-ca']);
const NOT_WRITTEN = new Set(['--write-mcp-json', '--api-key']);

export function register(program: Command): void {
  const cmd = program
    .command('mcp')
    .description('Run the planner: an MCP server over stdio with discovery and orchestration tools')
    .addOption(
      new Option(
        '--proxy-url <url>',
        'relay HTTP API address, for discovery (list_my_peers, list_worker_peers)',
      )
        .argParser(parseUrl)
        .env('NFLTR_PROXY_URL'),
    );
  addE2eeOptions(addAgentOptions(cmd, { serverRequired: false }))
    .option('--state-dir <dir>', 'task store and artifacts (default ~/.nfltr/planner/<name>)')
    .addOption(
      new Option('--max-artifact-bytes <n>', 'per task: largest file and total of files sent or received')
        .argParser(parsePositiveInt)
        .default(DEFAULT_MAX_ARTIFACT_BYTES, '1 GiB'),
    )
    .addOption(
      new Option(
        '--worker-lost-grace <duration>',
        'a worker not connected to the relay for this long has its open tasks failed (reason worker_lost)',
      )
        .argParser(positiveDuration)
        .default(30_000, '30s'),
    )
    .option(
      '--write-mcp-json <path>',
      'write (or merge into) a VS Code mcp.json entry for this planner, then exit',
    )
    .addHelpText('after', HELP_AFTER)
    .action((opts: McpCommandOptions, command: Command) =>
      opts.writeMcpJson ? writeConfig(opts.writeMcpJson, command) : runMcp(opts),
    );
}

/** The flags given on the command line, minus --write-mcp-json and --api-key, paths made absolute. */
export function mcpArgsFrom(command: Command): string[] {
  const args: string[] = [];
  for (const opt of command.options) {
    const attr = opt.attributeName();
    const flag = opt.long;
    if (!flag || NOT_WRITTEN.has(flag) || command.getOptionValueSource(attr) !== 'cli') continue;
    const value: unknown = command.getOptionValue(attr);
    if (opt.negate) {
      if (value === false) args.push(flag);
    } else if (value === true && !opt.required) args.push(flag);
    else if (value === false) args.push(`${flag}=false`);
    else args.push(flag, PATH_FLAGS.has(flag) ? resolve(String(value)) : String(value));
  }
  return args;
}

function writeConfig(path: string, command: Command): void {
  const bin = process.argv[1] ? resolve(process.argv[1]) : undefined;
  const entry = {
    type: 'stdio' as const,
    command: bin ? process.execPath : 'nfltr',
    args: [...(bin ? [bin] : []), 'mcp', ...mcpArgsFrom(command)],
    // biome-ignore lint/suspicious/noTemplateCurlyInString: VS Code expands ${env:…} itself
    env: { NFLTR_API_KEY: '${env:NFLTR_API_KEY}' },
  };
  try {
    const { created } = writeMcpJson(resolve(path), entry);
    process.stderr.write(
      `nfltr: ${created ? 'wrote' : 'updated'} server "${MCP_JSON_SERVER_NAME}" in ${resolve(path)}; ` +
        'it reads the API key from NFLTR_API_KEY in your environment (never stored in the file)\n',
    );
    process.exit(0);
  } catch (err) {
    die((err as Error).message);
  }
}

function loadSessionToken(stateDir: string): string {
  const file = join(stateDir, 'session-token');
  if (existsSync(file)) {
    const t = readFileSync(file, 'utf8').trim();
    if (t) return t;
  }
  const token = randomBytes(16).toString('base64url');
  writeFileSync(file, `${token}\n`, { mode: 0o600 });
  return token;
}

/**
 * Why `key` cannot be used, or undefined. The planner still starts and answers the MCP handshake, so
 * the client shows this on every tool call instead of a closed connection.
 */
export function apiKeyProblem(key: string | undefined): string | undefined {
  if (!key?.trim()) {
    return (
      'no API key: pass --api-key or set NFLTR_API_KEY (in an MCP client configuration, in the env of ' +
      'the nfltr server entry), then restart nfltr mcp'
    );
  }
  if (/\$\{[^}]*\}/.test(key)) {
    return (
      `the API key is the literal text ${JSON.stringify(key)}: the MCP client did not expand that ` +
      'variable. Set NFLTR_API_KEY in the environment the client starts nfltr mcp from (or use the ' +
      "client's own secret prompt, such as a VS Code input), or pass --api-key; then restart nfltr mcp"
    );
  }
  return undefined;
}

export async function runMcp(o: McpCommandOptions): Promise<void> {
  const log = createLogger('planner');
  const keyProblem = apiKeyProblem(o.apiKey);
  if (keyProblem) log.error(`every tool will answer: ${keyProblem}`);
  if (!o.server && !o.proxyUrl) {
    log.warn(
      'nothing to connect to: pass --proxy-url (the relay HTTP API, for discovery) and --server (the relay ' +
        'control address, for tasks); every tool will say so',
    );
  }
  const directory = new PeerDirectory({ proxyUrl: o.proxyUrl, apiKey: o.apiKey ?? '' });
  let agent: AgentClient | undefined;
  let manager: TaskManager | undefined;
  let store: TaskStore | undefined;
  let release = () => {};

  if (o.server && !keyProblem) {
    let agentOpts: ReturnType<typeof agentOptionsFrom>;
    try {
      agentOpts = agentOptionsFrom(o, 'planner');
    } catch (err) {
      die((err as Error).message, 2);
    }
    let pairingKey: Uint8Array | undefined;
    try {
      pairingKey = pairingKeyFrom(o);
    } catch (err) {
      die((err as Error).message, 2);
    }
    const stateDir = resolve(o.stateDir ?? nfltrHome('planner', agentOpts.agentId));
    try {
      mkdirSync(stateDir, { recursive: true, mode: 0o700 });
      release = acquireStateLock(stateDir);
    } catch (err) {
      die((err as Error).message);
    }
    process.on('exit', () => release());
    store = new TaskStore(join(stateDir, 'tasks.db'));
    store.replay();
    agent = new AgentClient({
      ...agentOpts,
      sessionToken: loadSessionToken(stateDir),
      logger: log.child('agent'),
    });
    const a2a = new A2aEndpoint({
      agent,
      role: 'initiator',
      e2ee: o.a2aE2ee,
      pairingKey,
      logger: log.child('a2a'),
    });
    manager = new TaskManager({
      agent,
      a2a,
      store,
      stateDir,
      servers: agentOpts.servers,
      maxArtifactBytes: o.maxArtifactBytes,
      workerLostGraceMs: o.workerLostGrace,
      logger: log.child('tasks'),
    });
    agent.on('status', (s) => {
      if (s.type === 'fatal') {
        log.error('the relay refused this planner; its A2A tools say so until it is restarted', {
          error: s.message,
        });
      }
    });
    log.info('planner starting', { agent: agentOpts.agentId, state_dir: stateDir, e2ee: o.a2aE2ee });
  }

  let server: PlannerServer | undefined;
  let stopping = false;
  const shutdown = async (why: string) => {
    if (stopping) return;
    stopping = true;
    log.info('shutting down', { why });
    manager?.close();
    await Promise.race([agent?.close(), new Promise((r) => setTimeout(r, 2_000))]);
    await server?.close().catch(() => {});
    store?.close();
    release();
    process.exit(0);
  };
  process.stdin.on('end', () => void shutdown('stdin closed'));
  process.stdout.on('error', () => void shutdown('stdout closed'));
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.on('SIGINT', () => void shutdown('SIGINT'));

  // The link comes up while the client connects: no tool depends on it to be listed.
  agent?.start();
  server = await servePlanner({ directory, agent, manager, keyProblem, logger: log });
}
