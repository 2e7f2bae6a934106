import { resolve } from 'node:path';
import { type Command, InvalidArgumentError, Option } from 'commander';
import { DEFAULT_MAX_ARTIFACT_BYTES, parseChunkRef } from '../agent/artifacts/index.js';
import { createLogger } from '../util/log.js';
import { DEFAULT_STALL_AFTER_MS, runWorker, WorkerConfigError } from '../worker/index.js';
import {
  type AgentFlags,
  addAgentOptions,
  addConnectOptions,
  addE2eeOptions,
  agentOptionsFrom,
  type E2eeFlags,
  pairingKeyFrom,
} from './agent-options.js';
import { die, nfltrHome, parseDuration, parseLabels, parsePositiveInt } from './options.js';

export interface WorkerCommandOptions extends AgentFlags, E2eeFlags {
  labels: Record<string, string>;
  maxTasks: number;
  mcpCommand?: string;
  mcpTool?: string;
  stateDir?: string;
  heartbeatInterval: number;
  maxArtifactBytes: number;
  shutdownGrace: number;
  executorEnv: string[];
  stallAfter: number;
}

const positiveDuration = (value: string): number => {
  const ms = parseDuration(value);
  if (ms <= 0) throw new InvalidArgumentError(`expected a duration above zero, got ${JSON.stringify(value)}`);
  return ms;
};

const HELP_AFTER = `
Automatic labels (a --labels key may not start with coord. or nfltr.worker.):
  coord.cpu_cores, coord.memory_mb (available memory class), coord.load_pct (utilisation hint),
  coord.transfer=a2a, nfltr.worker.protocol=a2a-mcp-v1, nfltr.worker.tool, nfltr.worker.max_tasks

The executor is started once at launch to list its tools, then once per task in
<state-dir>/tasks/<task_id>/ with input/ and output/; its stderr goes to executor.log there. The task
tool is --mcp-tool, else run_task, else the only tool. "claude mcp serve" (Claude Code's own server: Bash,
Read, Edit… but no task runner) is recognised and each task runs through "nfltr claude-mcp" instead, with
the same claude; any other executor without a task tool is refused, naming the alternatives. An
executor's check_ready tool (credentials and the like) is asked at start and on probes: probe_worker
reports executor_ready, with the reason and fix when false. Credentials in environment variables reach
the executor only through --executor-env (e.g. --executor-env ANTHROPIC_API_KEY). A task that reports
nothing for --stall-after gets a running event saying so and what its last sign of life was.
See docs/executor-contract.md and docs/executors.md.

Examples:
  nfltr worker --server relay.example:443 --api-key-file ~/.nfltr/api-key --labels repo=payments \\
    --max-tasks 2 --mcp-command "claude mcp serve"
  nfltr worker --server 127.0.0.1:9090 --mcp-command "nfltr shell-mcp --cwd . --allow 'npm test'"
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
    .addOption(
      new Option('--shutdown-grace <duration>', 'on SIGTERM, how long running tasks may still finish')
        .argParser(parseDuration)
        .default(30_000, '30s'),
    )
    .addOption(
      new Option(
        '--executor-env <NAMES>',
        'environment variables passed through to executors besides PATH, HOME, locale and NFLTR_* (e.g. ANTHROPIC_API_KEY,GH_TOKEN)',
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
    .addHelpText('after', HELP_AFTER)
    .action(async (o: WorkerCommandOptions) => process.exit(await workerCommand(o)));
}

/** Runs the command; returns the exit code. */
export async function workerCommand(o: WorkerCommandOptions): Promise<number> {
  const logger = createLogger('worker');
  let agent: ReturnType<typeof agentOptionsFrom>;
  try {
    agent = agentOptionsFrom(o, 'worker');
  } catch (err) {
    return die((err as Error).message, 2);
  }
  if (!o.mcpCommand) return die('--mcp-command is required: the command that starts the MCP executor', 2);
  let pairingKey: Uint8Array | undefined;
  try {
    pairingKey = pairingKeyFrom(o);
  } catch (err) {
    return die((err as Error).message, 2);
  }
  try {
    return await runWorker({
      agent,
      labels: o.labels,
      maxTasks: o.maxTasks,
      mcpCommand: o.mcpCommand,
      mcpTool: o.mcpTool,
      stateDir: resolve(o.stateDir ?? nfltrHome('worker', agent.agentId)),
      heartbeatIntervalMs: o.heartbeatInterval,
      e2ee: o.a2aE2ee,
      pairingKey,
      maxArtifactBytes: o.maxArtifactBytes,
      testCorruptChunk: parseChunkRef(process.env.NFLTR_TEST_CORRUPT_CHUNK),
      shutdownGraceMs: o.shutdownGrace,
      executorEnv: o.executorEnv,
      stallAfterMs: o.stallAfter,
      self: { execPath: process.execPath, script: process.argv[1] ?? '' },
      logger,
    });
  } catch (err) {
    if (err instanceof WorkerConfigError) return die(err.message, 2);
    return die((err as Error).message, 1);
  }
}
