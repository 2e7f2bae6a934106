/**
 * @module `nfltr mcp`: the planner, an MCP server over stdio. stdout is the MCP channel; every log and
 * error goes to stderr.
 */
import { createHash, randomBytes } from 'node:crypto';
import { accessSync, constants, existsSync, readFileSync, realpathSync, writeFileSync } from 'node:fs';
import { delimiter, join, resolve, sep } from 'node:path';
import { type Command, InvalidArgumentError, Option } from 'commander';
import { DEFAULT_MAX_ARTIFACT_BYTES, parseChunkRef } from '../agent/artifacts/index.js';
import { A2aEndpoint, AgentClient } from '../agent/index.js';
import {
  acquireStateLock,
  CLIENT_FORMATS,
  type ClientFormat,
  ConfigFileError,
  DEFAULT_MCP_NAME,
  formatFromPath,
  LockError,
  PeerDirectory,
  type PlannerLaunch,
  type PlannerServer,
  servePlanner,
  TaskManager,
  TaskStore,
  vscodeKeyInputId,
  writeClientConfig,
} from '../planner/index.js';
import { writableDir } from '../util/fs-check.js';
import { createLogger } from '../util/log.js';
import {
  type AgentFlags,
  acceptPeerKey,
  addAgentOptions,
  addE2eeOptions,
  agentOptionsFrom,
  apiKeyFrom,
  defaultAgentId,
  type E2eeFlags,
  pairingKeyFrom,
  parseBoolean,
  peerKeysFrom,
  tlsCaFrom,
} from './agent-options.js';
import { serveRefusal } from './mcp-refusal.js';
import { die, nfltrHome, p2pThresholdOption, parseDuration, parsePositiveInt, parseUrl } from './options.js';

export interface McpCommandOptions extends AgentFlags, E2eeFlags {
  proxyUrl?: string;
  stateDir?: string;
  maxArtifactBytes: number;
  p2pThreshold: number;
  workerLostGrace: number;
  writeMcpJson?: string;
  format?: ClientFormat;
  mcpName?: string;
  mcpLaunch?: LaunchHow;
  acceptWorkerKey?: string;
  dashboardDigest: 'full' | 'status' | 'off';
  dashboardCommands: boolean;
}

/** How the written entry starts the planner (`--mcp-launch`). */
type LaunchHow = 'npx' | 'nfltr' | 'path';

function positiveDuration(value: string): number {
  const ms = parseDuration(value);
  if (ms <= 0) throw new InvalidArgumentError(`expected a duration above zero, got ${JSON.stringify(value)}`);
  return ms;
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
The planner's static key (static_key) and the keys of the workers it met (known_workers, pinned on first
contact, like SSH's known_hosts) are kept there too: a worker presenting another key is refused, naming
both fingerprints; --accept-worker-key WORKER forgets its pin (docs/security.md).

Control Tower (docs/dashboard.md): with --proxy-url the planner pushes a sealed digest of each task on
change (at most every 2 s) and pulls commands every 2 s; it logs the link http(s)://relay/dashboard#k=…,
whose fragment holds the key (kept in <state dir>/dashboard.json; \`nfltr orch dashboard\` prints it again).

Several planners on one machine (one per MCP client or project): without --name the agent id is
<host>-planner-<6 hex of the working folder>, and without --state-dir the state is kept in
~/.nfltr/planner/<name>/<12 hex of the working folder>, so clients started in different folders never
share either. A planner whose state dir is held by another answers its client's initialize with an error
naming the holder (pid, folder) and the flags to change.

--write-mcp-json FILE writes the entry that starts this planner (with the flags given here) into the MCP
config of one client, keeping every other byte of the file (comments included), then exits. The client
is told by the file name, or by --format:
  vscode          mcp.json (.vscode/ or the user profile): "servers"; the key is an input VS Code asks
                  for once (a password field) and keeps in its secret storage
  claude-code     .mcp.json (project root): "mcpServers"; the key is \${NFLTR_API_KEY}, which Claude
                  Code expands from its environment; the equivalent \`claude mcp add\` line is printed
  claude-desktop  claude_desktop_config.json: "mcpServers"; Claude Desktop passes no shell environment
                  and expands no variables, so give the key with --api-key-file FILE
The key itself is never written. The entry runs \`npx -y nfltr mcp …\` when this nfltr is an installed
package, \`nfltr mcp …\` (the nfltr on PATH) when it runs from a clone; --mcp-launch path writes this
node and the absolute path of this nfltr instead.

Examples:
  nfltr mcp --proxy-url https://nfltr.xyz --server grpc.nfltr.xyz:443 --api-key-file ~/.nfltr/api-key
  nfltr mcp --proxy-url https://nfltr.xyz --server grpc.nfltr.xyz:443 --write-mcp-json .vscode/mcp.json
  nfltr mcp --proxy-url https://nfltr.xyz --server grpc.nfltr.xyz:443 --write-mcp-json .mcp.json \\
    --mcp-name nfltr-eu
`;

/** Flags whose values are paths: written absolute into mcp.json, which the client runs from anywhere. */
const PATH_FLAGS = new Set(['--state-dir', '--e2ee-key-file', '--tls-ca', '--api-key-file']);
/** Flags about writing the config, and the key itself: never part of the entry. */
const NOT_WRITTEN = new Set([
  '--write-mcp-json',
  '--format',
  '--mcp-name',
  '--mcp-launch',
  '--api-key',
  '--accept-worker-key',
]);
const MCP_NAME_RE = /^[A-Za-z][A-Za-z0-9_-]{0,63}$/;
// biome-ignore lint/suspicious/noTemplateCurlyInString: Claude Code's variable syntax, written literally
const CLAUDE_KEY_REF = '${NFLTR_API_KEY}';

function parseMcpName(value: string): string {
  if (!MCP_NAME_RE.test(value)) {
    throw new InvalidArgumentError(
      `expected 1-64 letters, digits, '-' or '_', starting with a letter (the clients' rule for server names), got ${JSON.stringify(value)}`,
    );
  }
  return value;
}

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
    .option(
      '--state-dir <dir>',
      'task store and artifacts (default ~/.nfltr/planner/<name>/<hash of the working folder>)',
    )
    .addOption(
      new Option('--max-artifact-bytes <n>', 'per task: largest file and total of files sent or received')
        .argParser(parsePositiveInt)
        .default(DEFAULT_MAX_ARTIFACT_BYTES, '1 GiB'),
    )
    .addOption(p2pThresholdOption('input and answer files sent to a worker'))
    .addOption(
      new Option(
        '--worker-lost-grace <duration>',
        'a worker not connected to the relay for this long has its open tasks failed (reason worker_lost)',
      )
        .argParser(positiveDuration)
        .default(30_000, '30s'),
    )
    .option(
      '--write-mcp-json <file>',
      'add this planner to the MCP config of VS Code (mcp.json), Claude Code (.mcp.json) or Claude Desktop ' +
        '(claude_desktop_config.json), keeping the rest of the file, then exit',
    )
    .addOption(
      new Option('--format <client>', 'client of --write-mcp-json (default: from the file name)').choices(
        Object.keys(CLIENT_FORMATS),
      ),
    )
    .addOption(
      new Option('--mcp-name <name>', 'name of the entry --write-mcp-json writes')
        .argParser(parseMcpName)
        .default(DEFAULT_MCP_NAME),
    )
    .addOption(
      new Option(
        '--mcp-launch <how>',
        'how the entry starts nfltr: npx (npx -y nfltr), nfltr (the nfltr on PATH), path (this node and nfltr.js)',
      ).choices(['npx', 'nfltr', 'path']),
    )
    .addOption(
      new Option(
        '--dashboard-digest <level>',
        'what the dashboard shows, sealed with a key the relay never sees: full, status (state, worker, timing, counts) or off',
      )
        .choices(['full', 'status', 'off'])
        .default('full'),
    )
    .addOption(
      new Option(
        '--dashboard-commands [bool]',
        'run answers, cancels and dispatches sent from the dashboard or nfltr orch; =false refuses (and logs) them',
      )
        .argParser(parseBoolean)
        .preset('true')
        .default(true),
    )
    .option(
      '--accept-worker-key <worker>',
      'forget the key pinned for this worker in <state dir>/known_workers (it changed on purpose), then exit; ' +
        'the key it presents next is pinned',
    )
    .addHelpText('after', HELP_AFTER)
    .action((opts: McpCommandOptions, command: Command) => {
      if (opts.writeMcpJson) return writeConfig(opts.writeMcpJson, opts, command);
      if (opts.acceptWorkerKey) {
        const stateDir = resolve(opts.stateDir ?? defaultPlannerStateDir(opts.name ?? defaultPlannerName()));
        acceptPeerKey(stateDir, 'planner', opts.acceptWorkerKey);
      }
      const stray = ['--format', '--mcp-name', '--mcp-launch'].find(
        (f) =>
          command.getOptionValueSource(f.slice(2).replace(/-(.)/g, (_, c: string) => c.toUpperCase())) ===
          'cli',
      );
      if (stray) die(`${stray} only applies with --write-mcp-json FILE`, 2);
      return runMcp(opts);
    });
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

/** This nfltr's entry script, through any symlink (npx and global installs link bin/ to it). */
function selfScript(): string | undefined {
  try {
    return process.argv[1] ? realpathSync(process.argv[1]) : undefined;
  } catch {
    return undefined;
  }
}

/** An installed package (npx, `npm i -g`, a dependency) lives in a node_modules folder; a clone does not. */
const installedAsPackage = (script: string | undefined) => !!script?.split(sep).includes('node_modules');

function onPath(name: string): boolean {
  return (process.env.PATH ?? '').split(delimiter).some((dir) => {
    try {
      accessSync(join(dir, name), constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
}

export function plannerLaunch(how: LaunchHow, args: string[], script = selfScript()): PlannerLaunch {
  switch (how) {
    case 'npx':
      return { command: 'npx', args: ['-y', 'nfltr', 'mcp', ...args] };
    case 'nfltr':
      return { command: 'nfltr', args: ['mcp', ...args] };
    case 'path':
      if (!script) die('--mcp-launch path: cannot tell where this nfltr is installed');
      return { command: process.execPath, args: [script, 'mcp', ...args] };
  }
}

function strictJson(text: string): boolean {
  try {
    JSON.parse(text);
    return true;
  } catch {
    return false;
  }
}

/** One argument for a POSIX shell: bare when safe, else in single quotes. */
const shellWord = (a: string) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`);

function writeConfig(file: string, o: McpCommandOptions, command: Command): void {
  const path = resolve(file);
  const format = o.format ?? formatFromPath(path);
  if (!format) {
    die(
      `--write-mcp-json ${file}: cannot tell which client the file is for from its name; pass --format ` +
        'vscode (VS Code, mcp.json), --format claude-code (Claude Code, .mcp.json) or --format claude-desktop ' +
        '(Claude Desktop, claude_desktop_config.json)',
      2,
    );
  }
  const script = selfScript();
  const how: LaunchHow = o.mcpLaunch ?? (installedAsPackage(script) ? 'npx' : 'nfltr');
  const launch = plannerLaunch(how, mcpArgsFrom(command), script);
  const name = o.mcpName ?? DEFAULT_MCP_NAME;
  const spec = CLIENT_FORMATS[format];
  let r: ReturnType<typeof writeClientConfig>;
  try {
    r = writeClientConfig(path, format, name, launch);
  } catch (err) {
    if (err instanceof ConfigFileError) die(`--write-mcp-json: ${err.message}`);
    die(`--write-mcp-json ${file}: ${(err as Error).message}`);
  }
  const lines = [
    `nfltr: ${r.replaced ? 'replaced' : 'added'} server "${name}" (${spec.serversKey}.${name}) in ${r.path}, ` +
      `${spec.client} format${r.created ? ' (new file)' : ''}`,
    `  runs: ${[launch.command, ...launch.args].map(shellWord).join(' ')}`,
  ];
  if (how === 'nfltr' && !onPath('nfltr')) {
    lines.push(
      '  note: nfltr is not on PATH here: install it (npm i -g nfltr, or npm link in this clone), or write ' +
        'the entry again with --mcp-launch npx or --mcp-launch path',
    );
  }
  switch (format) {
    case 'vscode':
      lines.push(
        `  key: VS Code asks for it once (input "${vscodeKeyInputId(name)}", a password field` +
          `${r.inputAdded ? ', added to "inputs"' : ', already in "inputs"'}) and keeps it in its secret storage`,
      );
      break;
    case 'claude-code': {
      const add = [
        'claude',
        'mcp',
        'add',
        '--scope',
        'project',
        name,
        '-e',
        `NFLTR_API_KEY=${CLAUDE_KEY_REF}`,
      ];
      lines.push(
        `  key: Claude Code passes NFLTR_API_KEY from its own environment (${CLAUDE_KEY_REF} in the file)`,
        '  the same with the claude CLI, from the project folder:',
        `    ${[...add, '--', launch.command, ...launch.args].map(shellWord).join(' ')}`,
      );
      break;
    }
    case 'claude-desktop':
      lines.push(
        o.apiKeyFile
          ? `  key: read from ${resolve(o.apiKeyFile)} (--api-key-file); restart Claude Desktop to load the entry`
          : `  note: Claude Desktop passes no shell environment and expands no \${…}: unless NFLTR_API_KEY is set ` +
              'for it, write the entry again with --api-key-file FILE (the key alone in a file only you can read)',
      );
      break;
  }
  if (format !== 'vscode' && !strictJson(r.text)) {
    // Checked with Claude Code 2.1.197: a comment makes it reject the whole .mcp.json.
    lines.push(
      `  note: ${spec.client} reads this file as plain JSON, and it holds comments or trailing commas ` +
        `(kept as they were): ${spec.client} will refuse the file until they are removed`,
    );
  }
  lines.push('  the API key itself is not in the file');
  process.stderr.write(`${lines.join('\n')}\n`);
  process.exit(0);
}

/** The default planner id: the host's, plus the working folder, so two clients' planners never clash. */
export function defaultPlannerName(cwd = process.cwd()): string {
  return `${defaultAgentId('planner').slice(0, 120)}-${folderHash(cwd).slice(0, 6)}`;
}

/** The default state dir: per planner name and working folder. */
export function defaultPlannerStateDir(name: string, cwd = process.cwd()): string {
  return nfltrHome('planner', name, folderHash(cwd).slice(0, 12));
}

const folderHash = (cwd: string) => createHash('sha256').update(resolve(cwd)).digest('hex');

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
      'no API key: pass --api-key, set NFLTR_API_KEY or pass --api-key-file (in an MCP client configuration, in the env of ' +
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
  let keyProblem: string | undefined;
  try {
    o.apiKey = apiKeyFrom(o);
    keyProblem = apiKeyProblem(o.apiKey);
  } catch (err) {
    keyProblem = `${(err as Error).message}, then restart nfltr mcp`;
  }
  if (keyProblem) log.error(`every tool will answer: ${keyProblem}`);
  if (o.relayProblem) log.error(`the A2A tools will answer: ${o.relayProblem}`);
  if (!o.server && !o.proxyUrl && !o.relayProblem) {
    log.warn(
      'nothing to connect to: pass --proxy-url (the relay HTTP API, for discovery) and --server (the relay ' +
        'control address, for tasks); every tool will say so',
    );
  }
  let ca: Buffer | undefined;
  try {
    ca = tlsCaFrom(o);
  } catch (err) {
    die((err as Error).message, 2);
  }
  const directory = new PeerDirectory({ proxyUrl: o.proxyUrl, apiKey: o.apiKey ?? '', ca });
  let agent: AgentClient | undefined;
  let manager: TaskManager | undefined;
  let store: TaskStore | undefined;
  let dashboard: { close(): Promise<void> } | undefined;
  let release = () => {};

  if (o.server && !keyProblem) {
    let agentOpts: ReturnType<typeof agentOptionsFrom>;
    try {
      agentOpts = agentOptionsFrom({ ...o, name: o.name ?? defaultPlannerName() }, 'planner');
    } catch (err) {
      die((err as Error).message, 2);
    }
    let pairingKey: Uint8Array | undefined;
    try {
      pairingKey = pairingKeyFrom(o);
    } catch (err) {
      die((err as Error).message, 2);
    }
    const stateDir = resolve(o.stateDir ?? defaultPlannerStateDir(agentOpts.agentId));
    try {
      writableDir(stateDir, '--state-dir', 0o700);
      release = acquireStateLock(stateDir);
    } catch (err) {
      if (!(err instanceof LockError)) die((err as Error).message);
      // The client sees why (its initialize is refused with this), not "Connection closed".
      return serveRefusal(`nfltr mcp cannot start: ${err.message}`, {
        state_dir: stateDir,
        holder_pid: err.holderPid,
        fix: ['--state-dir', '--name'],
      });
    }
    process.on('exit', () => release());
    let keys: ReturnType<typeof peerKeysFrom>;
    try {
      keys = peerKeysFrom(stateDir, 'planner', (fp) => log.info('static key', { fingerprint: fp }));
    } catch (err) {
      die((err as Error).message);
    }
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
      ...keys,
      logger: log.child('a2a'),
    });
    manager = new TaskManager({
      agent,
      a2a,
      store,
      stateDir,
      servers: agentOpts.servers,
      maxArtifactBytes: o.maxArtifactBytes,
      testCorruptChunk: parseChunkRef(process.env.NFLTR_TEST_CORRUPT_CHUNK),
      p2p: { staticKey: keys.staticKey, threshold: o.p2pThreshold },
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
    if (o.dashboardDigest !== 'off' && o.proxyUrl && o.apiKey) {
      const { startDashboard } = await import('../planner/dashboard/index.js');
      dashboard = startDashboard({
        stateDir,
        plannerId: agentOpts.agentId,
        proxyUrl: o.proxyUrl,
        apiKey: o.apiKey,
        ca,
        store,
        manager,
        level: o.dashboardDigest,
        commands: o.dashboardCommands,
        logger: log.child('dashboard'),
      });
    } else if (o.dashboardDigest !== 'off')
      log.info('no dashboard: it needs --proxy-url (the relay HTTP API)');
  }

  let server: PlannerServer | undefined;
  let stopping = false;
  const shutdown = async (why: string) => {
    if (stopping) return;
    stopping = true;
    log.info('shutting down', { why });
    await dashboard?.close();
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
  server = await servePlanner({
    directory,
    agent,
    manager,
    keyProblem,
    linkProblem: o.relayProblem,
    logger: log,
  });
}
