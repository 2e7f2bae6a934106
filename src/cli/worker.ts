import { execFileSync } from 'node:child_process';
import { mkdirSync, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { type Command, InvalidArgumentError, Option } from 'commander';
import { DEFAULT_MAX_ARTIFACT_BYTES, parseChunkRef } from '../agent/artifacts/index.js';
import { type HttpRoute, httpLabels, parseTarget } from '../agent/index.js';
import { writableDir } from '../util/fs-check.js';
import { createLogger } from '../util/log.js';
import {
  DEFAULT_SLOT_LEASE_MS,
  DEFAULT_STALL_AFTER_MS,
  type ExecutorUser,
  runWorker,
  WorkerConfigError,
} from '../worker/index.js';
import {
  type AgentFlags,
  acceptPeerKey,
  addAgentOptions,
  addConnectOptions,
  addE2eeOptions,
  agentOptionsFrom,
  defaultAgentId,
  type E2eeFlags,
  pairingKeyFrom,
  peerKeysFrom,
} from './agent-options.js';
import {
  die,
  nfltrHome,
  p2pThresholdOption,
  parseDuration,
  parseLabels,
  parsePositiveInt,
} from './options.js';
import { PRINT_UNIT_FLAG, printSystemdUnit } from './systemd.js';

export interface WorkerCommandOptions extends AgentFlags, E2eeFlags {
  labels: Record<string, string>;
  maxTasks: number;
  mcpCommand?: string;
  mcpTool?: string;
  stateDir?: string;
  acceptPlannerKey?: string;
  heartbeatInterval: number;
  maxArtifactBytes: number;
  p2pThreshold: number;
  shutdownGrace: number;
  executorEnv: string[];
  stallAfter: number;
  slotLease: number;
  executorUser?: string;
  warmExecutors?: number;
  expose?: string;
  printSystemdUnit?: boolean;
}

const positiveDuration = (value: string): number => {
  const ms = parseDuration(value);
  if (ms <= 0) throw new InvalidArgumentError(`expected a duration above zero, got ${JSON.stringify(value)}`);
  return ms;
};

const HELP_AFTER = `
Automatic labels (a --labels key may not start with coord. or nfltr.worker.):
  coord.cpu_cores, coord.memory_mb (available memory class), coord.load_pct (utilisation hint),
  coord.transfer (p2p; a2a with --p2p-threshold off), nfltr.worker.protocol=a2a-mcp-v1, nfltr.worker.tool,
  nfltr.worker.max_tasks

The executor is started once at launch to list its tools, then once per task in
<state-dir>/tasks/<task_id>/ with input/ and output/; its stderr goes to executor.log there. With
--warm-executors N, N executors wait started (stderr in <state-dir>/executor-warm.log) and a task takes
one; it gets the task in its run_task arguments, not in NFLTR_TASK_* variables. The task
tool is --mcp-tool, else run_task, else the only tool. "claude mcp serve" (Claude Code's own server: Bash,
Read, Edit… but no task runner) is recognised and each task runs through "nfltr claude-mcp" instead, with
the same claude; any other executor without a task tool is refused, naming the alternatives. An
executor's check_ready tool (credentials and the like) is asked at start and on probes: probe_worker
reports executor_ready, with the reason and fix when false. Credentials in environment variables reach
the executor only through --executor-env (e.g. --executor-env ANTHROPIC_API_KEY). A task that reports
nothing for --stall-after gets a running event saying so and what its last sign of life was.
See docs/executor-contract.md and docs/executors.md.

The relay key stays with the worker: executors get no NFLTR_* variable (but NFLTR_LOG_LEVEL and the
task's own), and a key given with --api-key is blanked from the worker's command line at start. Pass it
in NFLTR_API_KEY or --api-key-file, never on the command line (ps shows it to every user until then).
A task runs as the worker's OS user and can still read what that user can (the key file,
/proc/<worker pid>/environ); --executor-user runs executors as another user (see docs/security.md).

The worker's static key (<state-dir>/static_key, fingerprint logged at start) is what planners pin on
first contact; the worker pins each planner's key in <state-dir>/known_planners and refuses a changed
one. --accept-planner-key PLANNER forgets that pin (docs/security.md).

--print-systemd-unit prints a unit running this worker as a service and exits: the flags typed here
(not those from environment variables or the saved login), the key loaded by systemd from the
--api-key-file path (default /etc/nfltr/api-key) as a credential, never written in the unit. See the
README, "Running as a service".

Examples:
  nfltr worker --server relay.example:443 --api-key-file ~/.nfltr/api-key --labels repo=payments \\
    --max-tasks 2 --mcp-command "claude mcp serve"
  nfltr worker --server 127.0.0.1:9090 --api-key-file ~/.nfltr/key \\
    --mcp-command "nfltr shell-mcp --cwd . --allow 'npm test'"
  sudo nfltr worker --api-key-file /etc/nfltr/key --executor-user builder --state-dir /var/lib/nfltr \\
    --mcp-command "nfltr shell-mcp --cwd /srv/app --allow 'make test'"
`;

export function register(program: Command): void {
  const cmd = program
    .command('worker')
    .description('Run tasks from planners through a local MCP executor, advertising labels and capacity');
  addConnectOptions(addE2eeOptions(addAgentOptions(cmd)))
    .addOption(
      new Option('--labels <k=v,...>', 'labels planners select workers by')
        .argParser(parseLabels)
        .default({}, ''),
    )
    .addOption(
      new Option('--max-tasks <n>', 'tasks run at once; one more is refused')
        .argParser(parsePositiveInt)
        .default(1),
    )
    .addOption(
      new Option('--mcp-command <command>', 'command that starts the MCP executor (required)').env(
        'NFLTR_MCP_COMMAND',
      ),
    )
    .option('--mcp-tool <name>', 'executor tool that runs a task (default: run_task, else the only tool)')
    .option('--state-dir <dir>', 'task folders and session state (default: ~/.nfltr/worker/<name>)')
    .addOption(
      new Option('--heartbeat-interval <duration>', 'how often load and memory labels are refreshed')
        .argParser(positiveDuration)
        .default(15_000, '15s'),
    )
    .addOption(
      new Option('--max-artifact-bytes <n>', 'per task: largest file and total of files received or returned')
        .argParser(parsePositiveInt)
        .default(DEFAULT_MAX_ARTIFACT_BYTES, '1 GiB'),
    )
    .addOption(p2pThresholdOption('result files sent to the planner'))
    .addOption(
      new Option('--shutdown-grace <duration>', 'on SIGTERM, how long running tasks may still finish')
        .argParser(parseDuration)
        .default(30_000, '30s'),
    )
    .addOption(
      new Option(
        '--executor-env <NAMES>',
        "environment variables passed through to executors besides PATH, HOME, locale and NFLTR_LOG_LEVEL (e.g. ANTHROPIC_API_KEY,GH_TOKEN); never the worker's own secrets",
      )
        .argParser((v: string) =>
          v
            .split(',')
            .map((n) => n.trim())
            .filter(Boolean),
        )
        .default([], ''),
    )
    .addOption(
      new Option(
        '--stall-after <duration>',
        'a task silent this long gets a running event naming its last sign of life (0: never)',
      )
        .argParser(parseDuration)
        .env('NFLTR_STALL_AFTER')
        .default(DEFAULT_STALL_AFTER_MS, '60s'),
    )
    .addOption(
      new Option(
        '--slot-lease <duration>',
        'a task whose files make no progress for this long (result files unacknowledged, input files not arriving) fails as lease_expired and frees its slot (0: never)',
      )
        .argParser(parseDuration)
        .env('NFLTR_SLOT_LEASE')
        .default(DEFAULT_SLOT_LEASE_MS, '60s'),
    )
    .addOption(
      new Option(
        '--executor-user <user>',
        "run executors as this OS user (name or uid[:gid]; the worker must run as root), so tasks cannot read the worker's key",
      ).env('NFLTR_EXECUTOR_USER'),
    )
    .addOption(
      new Option(
        '--warm-executors <n>',
        'keep n executors started and initialised ahead of tasks, so a task starts with its tool call (each runs one task unless the executor declares reuse; see docs/executor-contract.md)',
      )
        .argParser(parsePositiveInt)
        .env('NFLTR_WARM_EXECUTORS'),
    )
    .option(
      '--expose <PORT|URL>',
      'also offer this local HTTP service to /browse and proxy_request, like `nfltr http` (label nfltr.http.routes)',
    )
    .option(
      '--accept-planner-key <planner>',
      'forget the key pinned for this planner in <state dir>/known_planners (it changed on purpose), then exit; ' +
        'the key it presents next is pinned',
    )
    .option(
      PRINT_UNIT_FLAG,
      'print a systemd unit running this command line (key from a credential file, never in the unit) and exit',
    )
    .addHelpText('after', HELP_AFTER)
    .action(async (o: WorkerCommandOptions) => {
      if (o.printSystemdUnit) printSystemdUnit('worker');
      process.exit(await workerCommand(o));
    });
}

/** Runs the command; returns the exit code. */
export async function workerCommand(o: WorkerCommandOptions): Promise<number> {
  const logger = createLogger('worker');
  if (o.acceptPlannerKey) {
    acceptPeerKey(
      resolve(o.stateDir ?? nfltrHome('worker', o.name ?? defaultAgentId('worker'))),
      'worker',
      o.acceptPlannerKey,
    );
  }
  let agent: ReturnType<typeof agentOptionsFrom>;
  try {
    agent = agentOptionsFrom(o, 'worker');
  } catch (err) {
    return die((err as Error).message, 2);
  }
  if (!o.mcpCommand) return die('--mcp-command is required: the command that starts the MCP executor', 2);
  hideApiKeyInArgv();
  // Children the worker starts other than executors (the watchdog) inherit process.env.
  delete process.env.NFLTR_API_KEY;
  let pairingKey: Uint8Array | undefined;
  let executorUser: ExecutorUser | undefined;
  const stateDir = resolve(o.stateDir ?? nfltrHome('worker', agent.agentId));
  let expose: HttpRoute[] | undefined;
  let keys: ReturnType<typeof peerKeysFrom>;
  try {
    pairingKey = pairingKeyFrom(o);
    writableDir(stateDir, '--state-dir'); // its mode is the user's: --executor-user needs to enter it
    keys = peerKeysFrom(stateDir, 'worker', (fp) => logger.info('static key', { fingerprint: fp }));
    if (o.executorUser) executorUser = resolveExecutorUser(o.executorUser, stateDir);
    expose =
      o.expose === undefined ? undefined : [{ prefix: '/', target: parseTarget(o.expose, '--expose') }];
  } catch (err) {
    return die((err as Error).message, 2);
  }
  try {
    return await runWorker({
      agent,
      labels: { ...o.labels, ...(expose ? httpLabels(expose) : {}) },
      expose,
      maxTasks: o.maxTasks,
      mcpCommand: o.mcpCommand,
      mcpTool: o.mcpTool,
      stateDir,
      heartbeatIntervalMs: o.heartbeatInterval,
      e2ee: o.a2aE2ee,
      pairingKey,
      ...keys,
      maxArtifactBytes: o.maxArtifactBytes,
      p2pThreshold: o.p2pThreshold,
      testCorruptChunk: parseChunkRef(process.env.NFLTR_TEST_CORRUPT_CHUNK),
      shutdownGraceMs: o.shutdownGrace,
      executorEnv: o.executorEnv,
      stallAfterMs: o.stallAfter,
      slotLeaseMs: o.slotLease,
      ...(executorUser ? { executorUser } : {}),
      warmExecutors: o.warmExecutors ?? 0,
      self: { execPath: process.execPath, script: process.argv[1] ?? '' },
      logger,
    });
  } catch (err) {
    if (err instanceof WorkerConfigError) return die(err.message, 2);
    return die((err as Error).message, 1);
  }
}

/**
 * Blanks the value of `--api-key` in the worker's command line as other processes see it
 * (/proc/<pid>/cmdline, ps): Node rewrites the argv area when the process title is set.
 */
export function hideApiKeyInArgv(argv: string[] = process.argv): void {
  const shown = argv.map((a, i) => {
    if (argv[i - 1] === '--api-key') return '[hidden]';
    return a.startsWith('--api-key=') ? '--api-key=[hidden]' : a;
  });
  if (shown.every((a, i) => a === argv[i])) return;
  process.title = shown.join(' ');
  process.stderr.write(
    'nfltr worker: warning: --api-key on the command line was visible to every local user until now; pass it in NFLTR_API_KEY or --api-key-file\n',
  );
}

/**
 * `--executor-user`: a user name (looked up with getent) or `uid[:gid]`. The worker must be root, and
 * the state dir reachable by that user (task folders live there). Throws naming the flag.
 */
export function resolveExecutorUser(spec: string, stateDir: string): ExecutorUser {
  const flag = `--executor-user ${spec}`;
  if (process.getuid?.() !== 0) {
    throw new Error(`${flag}: the worker must run as root to start executors as another user`);
  }
  let user: ExecutorUser;
  const numeric = /^(\d+)(?::(\d+))?$/.exec(spec);
  if (numeric) {
    const uid = Number(numeric[1]);
    user = { name: spec, uid, gid: Number(numeric[2] ?? uid), home: '/' };
  } else {
    let line = '';
    try {
      line = execFileSync('getent', ['passwd', spec], { encoding: 'utf8' }).trim();
    } catch {}
    const f = line.split(':');
    if (f.length < 7) throw new Error(`${flag}: no such user (getent passwd ${spec} found nothing)`);
    user = { name: spec, uid: Number(f[2]), gid: Number(f[3]), home: f[5] || '/' };
  }
  if (user.uid === 0) throw new Error(`${flag}: that is root; name an unprivileged user`);
  mkdirSync(stateDir, { recursive: true });
  for (let d = stateDir; ; d = dirname(d)) {
    const st = statSync(d);
    const x = st.uid === user.uid ? 0o100 : st.gid === user.gid ? 0o010 : 0o001;
    if (!(st.mode & x)) {
      throw new Error(
        `${flag}: ${d} cannot be entered by that user, so it could not reach its task folders under ${stateDir}; choose --state-dir elsewhere (e.g. /var/lib/nfltr) or open ${d} (chmod o+x)`,
      );
    }
    if (d === dirname(d)) break;
  }
  return user;
}
