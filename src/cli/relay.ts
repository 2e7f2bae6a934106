/**
 * @module `nfltr relay`: the rendezvous every agent dials outbound.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { type Command, InvalidArgumentError, Option } from 'commander';
import { DEFAULT_MAX_FRAME_BYTES } from '../protocol/control.js';
import {
  type Bus,
  DEFAULT_HOLD_WINDOW_MS,
  DEFAULT_KEEPALIVE_INTERVAL_MS,
  DEFAULT_KEEPALIVE_TIMEOUT_MS,
  DEFAULT_LIMITS,
  openBus,
  openStoreFrom,
  redactUrl,
  type Store,
  startRelay,
} from '../relay/index.js';
import { createLogger } from '../util/log.js';
import { die, nfltrHome, parseBytes, parseDuration, parsePositiveInt } from './options.js';
import { PRINT_UNIT_FLAG, printSystemdUnit } from './systemd.js';

export interface RelayCommandOptions {
  grpcAddr: string;
  httpAddr: string;
  advertiseGrpc?: string;
  dataDir: string;
  store?: string;
  bus?: string;
  presenceHeartbeat: number;
  presenceTtl: number;
  tlsCert?: string;
  tlsKey?: string;
  dev?: boolean;
  maxFrameBytes: number;
  keepaliveInterval: number;
  keepaliveTimeout: number;
  captureEnvelopes?: string;
  holdWindow: number;
  agentBuffer: number;
  accountBuffer: number;
  controlBacklog: number;
  holdBytes: number;
  httpHeadersTimeout: number;
  httpRequestTimeout: number;
  httpIdleTimeout: number;
  httpMaxConnsPerIp: number;
  printSystemdUnit?: boolean;
}

const mib = (n: number) => `${n / (1024 * 1024)}MiB`;
const sec = (ms: number) => `${ms / 1000}s`;

const storeFlag = [
  '--store <url>',
  'shared store for several replicas: postgres://user@host:5432/db (default: SQLite in --data-dir)',
] as const;

export function register(program: Command): void {
  const relay = program
    .command('relay')
    .description(
      'Run the relay: agents (planners, workers) connect to it outbound; it routes their envelopes',
    )
    .option('--grpc-addr <host:port>', 'control-plane (gRPC) listen address', '127.0.0.1:9090')
    .option('--http-addr <host:port>', 'HTTP API listen address', '127.0.0.1:8080')
    .addOption(
      new Option(
        '--advertise-grpc <host:port>',
        'the gRPC address agents given --relay URL dial, when a proxy stands in front (default: the URL host, the --grpc-addr port)',
      ).argParser((v) => {
        if (!/^[^\s:/]+:\d{1,5}$|^\[[^\]]+\]:\d{1,5}$/.test(v))
          throw new InvalidArgumentError(`expected host:port, got ${JSON.stringify(v)}`);
        return v;
      }),
    )
    .option('--data-dir <dir>', 'state directory (SQLite store, dev key)', nfltrHome('relay'))
    .option(...storeFlag)
    .option(
      '--bus <url>',
      'bus between relay replicas: nats://host:4222[?prefix=p] (default: in-process, a relay alone)',
    )
    .addOption(
      new Option('--presence-heartbeat <duration>', 'how often this replica refreshes its presence rows')
        .argParser(parseDuration)
        .default(5_000, '5s'),
    )
    .addOption(
      new Option(
        '--presence-ttl <duration>',
        'a replica silent this long is dead and its agents leave presence (at least twice the heartbeat)',
      )
        .argParser(parseDuration)
        .default(20_000, '20s'),
    )
    .option('--tls-cert <file>', 'PEM certificate; serves TLS on both listeners (with --tls-key)')
    .option('--tls-key <file>', 'PEM private key for --tls-cert')
    .option('--dev', 'create or reuse account "dev" and print its API key and the commands to start agents')
    .addOption(
      new Option('--max-frame-bytes <n>', 'largest control frame accepted')
        .argParser(parsePositiveInt)
        .default(DEFAULT_MAX_FRAME_BYTES),
    )
    .addOption(
      new Option(
        '--keepalive-interval <duration>',
        'how often the relay pings each agent connection (HTTP/2 PING)',
      )
        .argParser(parseDuration)
        .default(DEFAULT_KEEPALIVE_INTERVAL_MS, `${DEFAULT_KEEPALIVE_INTERVAL_MS / 1000}s`),
    )
    .addOption(
      new Option(
        '--keepalive-timeout <duration>',
        'drop an agent whose ping has gone unanswered this long (above --keepalive-interval)',
      )
        .argParser(parseDuration)
        .default(DEFAULT_KEEPALIVE_TIMEOUT_MS, `${DEFAULT_KEEPALIVE_TIMEOUT_MS / 1000}s`),
    )
    .addOption(
      new Option(
        '--hold-window <duration>',
        'hold envelopes for an agent that is reconnecting this long before reporting it not found (0 = never)',
      )
        .argParser(parseDuration)
        .default(DEFAULT_HOLD_WINDOW_MS, `${DEFAULT_HOLD_WINDOW_MS / 1000}s`),
    )
    .addOption(
      new Option(
        '--hold-bytes <size>',
        'bytes held for one account’s reconnecting agents; past it envelopes are dropped (PEER_BUSY)',
      )
        .argParser(parseBytes)
        .default(DEFAULT_LIMITS.holdBytes, mib(DEFAULT_LIMITS.holdBytes)),
    )
    .addOption(
      new Option(
        '--agent-buffer <size>',
        'bytes buffered for one agent that reads slowly; past it envelopes to it are dropped and senders get PEER_BUSY',
      )
        .argParser(parseBytes)
        .default(DEFAULT_LIMITS.agentBufferBytes, mib(DEFAULT_LIMITS.agentBufferBytes)),
    )
    .addOption(
      new Option(
        '--account-buffer <size>',
        'bytes buffered for all agents of one account on this relay; past it envelopes are dropped (PEER_BUSY)',
      )
        .argParser(parseBytes)
        .default(DEFAULT_LIMITS.accountBufferBytes, mib(DEFAULT_LIMITS.accountBufferBytes)),
    )
    .addOption(
      new Option(
        '--control-backlog <size>',
        'bytes of delivery and frame errors an agent may leave unread; past it its stream ends (RESOURCE_EXHAUSTED)',
      )
        .argParser(parseBytes)
        .default(DEFAULT_LIMITS.controlBacklogBytes, mib(DEFAULT_LIMITS.controlBacklogBytes)),
    )
    .addOption(
      new Option(
        '--http-headers-timeout <duration>',
        'HTTP API: close a connection whose request headers take longer',
      )
        .argParser(parseDuration)
        .default(DEFAULT_LIMITS.httpHeadersTimeoutMs, sec(DEFAULT_LIMITS.httpHeadersTimeoutMs)),
    )
    .addOption(
      new Option(
        '--http-request-timeout <duration>',
        'HTTP API: close a connection whose request (headers and body) takes longer, or that stalls this long',
      )
        .argParser(parseDuration)
        .default(DEFAULT_LIMITS.httpRequestTimeoutMs, sec(DEFAULT_LIMITS.httpRequestTimeoutMs)),
    )
    .addOption(
      new Option('--http-idle-timeout <duration>', 'HTTP API: close a keep-alive connection idle this long')
        .argParser(parseDuration)
        .default(DEFAULT_LIMITS.httpIdleTimeoutMs, sec(DEFAULT_LIMITS.httpIdleTimeoutMs)),
    )
    .addOption(
      new Option('--http-max-conns-per-ip <n>', 'HTTP API: open connections allowed from one client address')
        .argParser(parsePositiveInt)
        .default(DEFAULT_LIMITS.httpConnsPerIp),
    )
    .option(
      '--capture-envelopes <file>',
      'append every routed envelope (header and payload, base64) to FILE: an audit of what the relay sees',
    )
    .addHelpText(
      'after',
      '\nThe bounds, timeouts and what a client is told past them: docs/security.md, "The relay under abuse".' +
        '\n--print-systemd-unit: the flags typed here, state in /var/lib/nfltr/relay unless --data-dir is given;' +
        '\nsee the README, "Running as a service".',
    )
    .option(PRINT_UNIT_FLAG, 'print a systemd unit running this command line and exit')
    .action((opts: RelayCommandOptions) => {
      if (opts.printSystemdUnit) printSystemdUnit('relay');
      return runRelay(opts);
    });

  relay
    .command('migrate')
    .description('Create or migrate the relay store schema, then exit (the relay also does this on start)')
    .option(...storeFlag)
    .option('--data-dir <dir>', `state directory of the SQLite store (default: ${nfltrHome('relay')})`)
    // `relay` knows the same flags and may have taken them (`nfltr relay migrate --store …`).
    .action((local: { store?: string; dataDir?: string }, cmd: Command) => {
      const parent = cmd.parent!.opts() as RelayCommandOptions;
      return runMigrate({ store: local.store ?? parent.store, dataDir: local.dataDir ?? parent.dataDir });
    });
}

export async function runMigrate(opts: { store?: string; dataDir: string }): Promise<void> {
  let store: Store;
  try {
    store = await openStoreFrom(opts);
  } catch (err) {
    die((err as Error).message);
  }
  // Both stores say what opening them applied.
  const schema = (store as Partial<{ schema: { version: number; applied: number[] } }>).schema;
  const where = opts.store ? redactUrl(opts.store) : opts.dataDir;
  await store.close();
  process.stderr.write(
    schema && schema.applied.length > 0
      ? `migrated ${store.kind} store ${where} to schema version ${schema.version} (applied ${schema.applied.join(', ')})\n`
      : `${store.kind} store ${where} is at schema version ${schema?.version ?? '?'}; nothing to do\n`,
  );
}

export async function runRelay(opts: RelayCommandOptions): Promise<void> {
  const logger = createLogger('relay');
  if (!!opts.tlsCert !== !!opts.tlsKey) die('--tls-cert and --tls-key must be given together', 2);
  let store: Store;
  let bus: Bus;
  try {
    store = await openStoreFrom(opts);
  } catch (err) {
    die((err as Error).message);
  }
  try {
    bus = await openBus(opts.bus, { logger: logger.child('bus') });
  } catch (err) {
    await store.close();
    die((err as Error).message);
  }
  try {
    const relay = await startRelay({
      store,
      bus,
      logger,
      grpcAddr: opts.grpcAddr,
      httpAddr: opts.httpAddr,
      advertiseGrpc: opts.advertiseGrpc,
      tls: opts.tlsCert && opts.tlsKey ? { certFile: opts.tlsCert, keyFile: opts.tlsKey } : undefined,
      maxFrameBytes: opts.maxFrameBytes,
      keepaliveIntervalMs: opts.keepaliveInterval,
      keepaliveTimeoutMs: opts.keepaliveTimeout,
      captureFile: opts.captureEnvelopes,
      holdWindowMs: opts.holdWindow,
      limits: {
        agentBufferBytes: opts.agentBuffer,
        accountBufferBytes: opts.accountBuffer,
        controlBacklogBytes: opts.controlBacklog,
        holdBytes: opts.holdBytes,
        httpHeadersTimeoutMs: opts.httpHeadersTimeout,
        httpRequestTimeoutMs: opts.httpRequestTimeout,
        httpIdleTimeoutMs: opts.httpIdleTimeout,
        httpConnsPerIp: opts.httpMaxConnsPerIp,
      },
      presenceHeartbeatMs: opts.presenceHeartbeat,
      presenceTtlMs: opts.presenceTtl,
    });
    // Tests and scripts that pass port 0 read the bound ports from this line.
    process.stderr.write(`nfltr relay ready grpc_port=${relay.grpcPort} http_port=${relay.httpPort}\n`);
    if (opts.dev) await announceDev(store, opts, relay.grpcPort, relay.httpPort);
    const stop = (signal: string) => {
      logger.info('signal received; draining', { signal });
      relay
        .drain(`relay received ${signal}`)
        .then(() => bus.close())
        .then(() => store.close())
        .then(() => process.exit(0));
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  } catch (err) {
    await bus.close().catch(() => {});
    await store.close();
    die((err as Error).message);
  }
}

/** Reuses the dev key on file while it still authenticates; otherwise makes a new one. */
async function announceDev(
  store: Store,
  opts: RelayCommandOptions,
  grpcPort: number,
  httpPort: number,
): Promise<void> {
  const tls = !!opts.tlsCert;
  // A dev relay's certificate is usually self-signed: the clients trust it through --tls-ca.
  const tlsFlags = tls ? ` --tls --tls-ca ${resolve(opts.tlsCert!)}` : '';
  const file = join(opts.dataDir, 'dev-api-key');
  let key = existsSync(file) ? readFileSync(file, 'utf8').trim() : '';
  if (!key || !(await store.authenticate(key)).ok) {
    key = (await store.createKey('dev')).key;
    writeFileSync(file, `${key}\n`, { mode: 0o600 });
  }
  const host = opts.grpcAddr.replace(/:\d+$/, '').replace(/^$|^0\.0\.0\.0$/, '127.0.0.1');
  const server = `${host}:${grpcPort}`;
  const proxy = `${tls ? 'https' : 'http'}://${opts.httpAddr.replace(/:\d+$/, '').replace(/^$|^0\.0\.0\.0$/, '127.0.0.1')}:${httpPort}`;
  process.stderr.write(
    [
      '',
      `dev account ready; API key (also in ${file}):`,
      `  ${key}`,
      '',
      'start a worker:',
      `  NFLTR_API_KEY=$(cat ${file}) nfltr worker --server ${server}${tlsFlags} --name worker-1 --labels zone=dev --max-tasks 2 --mcp-command "nfltr shell-mcp --allow 'echo *'"`,
      'start a planner (an MCP server over stdio, for your MCP client):',
      `  NFLTR_API_KEY=$(cat ${file}) nfltr mcp --proxy-url ${proxy} --server ${server}${tlsFlags}`,
      `(--relay ${proxy}${tls ? ` --tls-ca ${resolve(opts.tlsCert!)}` : ''} can replace --server, --proxy-url and --tls)`,
      '',
    ].join('\n'),
  );
}
