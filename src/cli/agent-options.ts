/**
 * @module The flags every agent command shares (`--server`, `--api-key`, `--name`, TLS), with their
 * environment fallbacks, turned into {@link AgentOptions}.
 */
import { hostname } from 'node:os';
import { join } from 'node:path';
import { type Command, InvalidArgumentError, Option } from 'commander';
import type { AgentOptions } from '../agent/index.js';
import { fingerprint, KnownPeers, loadStaticKey } from '../agent/peer-keys.js';

import type { AgentKindName } from '../protocol/control.js';
import { agentIdProblem } from '../protocol/control.js';
import { parsePairingKey } from '../protocol/e2ee.js';
import type { X25519KeyPair } from '../protocol/e2ee-noise.js';
import { readFlagFile } from '../util/fs-check.js';
import { parseDuration } from './options.js';
import { applyRelaySources, relayOption } from './relay-url.js';

export interface AgentFlags {
  /** `--relay URL`; the hook has derived `server` (and `tls`) from it, or set `relayProblem`. */
  relay?: string;
  relayProblem?: string;
  server?: string;
  apiKey?: string;
  apiKeyFile?: string;
  name?: string;
  tls?: boolean;
  tlsCa?: string;
  /** From {@link addConnectOptions}; commands without them redial forever. */
  connectTimeout?: number;
  wait?: boolean;
}

export function addAgentOptions(cmd: Command, opts: { serverRequired?: boolean } = {}): Command {
  return cmd
    .addOption(relayOption())
    .addOption(
      new Option(
        '--server <host:port[,host:port…]>',
        `relay control address(es)${opts.serverRequired === false ? '' : ' (required without --relay)'}`,
      ).env('NFLTR_SERVER'),
    )
    .addOption(new Option('--api-key <key>', 'API key of your relay account').env('NFLTR_API_KEY'))
    .addOption(
      new Option(
        '--api-key-file <file>',
        'read the API key from this file instead (for clients that pass no environment, e.g. Claude Desktop)',
      ).env('NFLTR_API_KEY_FILE'),
    )
    .addOption(
      new Option('--name <id>', 'agent id, unique in the account (default: from the host name)').env(
        'NFLTR_AGENT_ID',
      ),
    )
    .addOption(new Option('--tls', 'dial the relay with TLS (default when the port is 443)').env('NFLTR_TLS'))
    .addOption(new Option('--tls-ca <file>', 'PEM CA certificate to trust for the relay').env('NFLTR_TLS_CA'))
    .hook('preAction', (c) => applyRelaySources(c, opts.serverRequired === false));
}

/** `--connect-timeout` and `--wait`: how long a command that needs the relay waits for its first connection. */
export function addConnectOptions(cmd: Command): Command {
  return cmd
    .addOption(
      new Option(
        '--connect-timeout <duration>',
        'exit (code 1, saying what is wrong) when the first connection to the relay is not up after this long',
      )
        .argParser(parseDuration)
        .env('NFLTR_CONNECT_TIMEOUT')
        .default(15_000, '15s'),
    )
    .addOption(
      new Option(
        '--wait',
        'redial until the relay answers, however long (once connected it always redials)',
      ).env('NFLTR_WAIT'),
    );
}

/** Default agent id: the host name, cleaned to the id alphabet, plus the kind. */
export function defaultAgentId(kind: AgentKindName): string {
  const host =
    hostname()
      .toLowerCase()
      .replace(/[^a-z0-9._-]+/g, '-')
      .replace(/^[^a-z0-9]+/, '') || 'host';
  return `${host}-${kind}`.slice(0, 128);
}

/**
 * The API key: `--api-key` (or NFLTR_API_KEY) when set, else the first line of `--api-key-file`.
 * Throws an error naming the flag when the file cannot be read or is empty.
 */
export function apiKeyFrom(flags: AgentFlags): string | undefined {
  if (flags.apiKey || !flags.apiKeyFile) return flags.apiKey;
  const text = readFlagFile(flags.apiKeyFile, '--api-key-file').toString('utf8');
  const key = text.split(/\r?\n/, 1)[0]!.trim();
  if (!key)
    throw new Error(
      `--api-key-file ${flags.apiKeyFile}: the file is empty; put the API key on its first line`,
    );
  return key;
}

/** The `--tls-ca` certificate, or undefined; throws a one-line error naming the flag when unreadable. */
export function tlsCaFrom(flags: AgentFlags): Buffer | undefined {
  if (!flags.tlsCa) return undefined;
  return readFlagFile(flags.tlsCa, '--tls-ca');
}

/** Validates the shared flags; returns options for the agent, or throws an error naming the flag. */
export function agentOptionsFrom(flags: AgentFlags, kind: AgentKindName): Omit<AgentOptions, 'logger'> {
  if (!flags.server)
    throw new Error('no relay address: pass --relay URL or --server host:port (or run nfltr login)');
  const apiKey = apiKeyFrom(flags);
  if (!apiKey) throw new Error('no API key: pass --api-key, set NFLTR_API_KEY, or pass --api-key-file');
  const servers = flags.server
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  for (const s of servers) {
    if (!/^[^\s:]+:\d{1,5}$|^\[[^\]]+\]:\d{1,5}$/.test(s)) {
      throw new Error(`--server: expected host:port, got ${JSON.stringify(s)}`);
    }
  }
  tlsCaFrom(flags);
  const agentId = flags.name ?? defaultAgentId(kind);
  const problem = agentIdProblem(agentId);
  if (problem) throw new Error(`--name: ${problem}`);
  const connectTimeoutMs = flags.wait ? undefined : flags.connectTimeout;
  return { servers, apiKey, agentId, kind, tls: flags.tls, tlsCaFile: flags.tlsCa, connectTimeoutMs };
}

/** `true`/`false` (and yes/no, on/off, 1/0), so `--flag=false` and `--flag false` both work. */
export function parseBoolean(value: string): boolean {
  const v = value.trim().toLowerCase();
  if (['true', 'yes', 'on', '1'].includes(v)) return true;
  if (['false', 'no', 'off', '0'].includes(v)) return false;
  throw new InvalidArgumentError(`expected true or false, got ${JSON.stringify(value)}`);
}

export interface E2eeFlags {
  a2aE2ee: boolean;
  e2eeKeyFile?: string;
}

/** `--a2a-e2ee` (on by default) and `--e2ee-key-file`, the same on planners and workers. */
export function addE2eeOptions(cmd: Command): Command {
  return cmd
    .addOption(
      new Option('--a2a-e2ee [bool]', 'end-to-end encrypt A2A task frames; --a2a-e2ee=false turns it off')
        .argParser(parseBoolean)
        .preset('true')
        .default(true)
        .env('NFLTR_A2A_E2EE'),
    )
    .addOption(
      new Option(
        '--e2ee-key-file <file>',
        'pairing key shared by the planner and its workers (`nfltr keys pairing > FILE`)',
      ).env('NFLTR_E2EE_KEY_FILE'),
    );
}

/** Reads the pairing key; throws an error naming the flag when it is unreadable or not a key. */
export function pairingKeyFrom(flags: E2eeFlags): Uint8Array | undefined {
  if (!flags.e2eeKeyFile) return undefined;
  if (!flags.a2aE2ee) throw new Error('--e2ee-key-file needs --a2a-e2ee (encryption is off)');
  const text = readFlagFile(flags.e2eeKeyFile, '--e2ee-key-file').toString('utf8');
  try {
    return parsePairingKey(text);
  } catch (err) {
    throw new Error(`--e2ee-key-file ${flags.e2eeKeyFile}: ${(err as Error).message}`);
  }
}

/** Which peers an agent pins, and the command that accepts a new key for one (`PEER` is replaced). */
const PIN_SIDES = {
  planner: {
    file: 'known_workers',
    peerKind: 'worker',
    accept: 'nfltr mcp --state-dir DIR --accept-worker-key PEER',
  },
  worker: {
    file: 'known_planners',
    peerKind: 'planner',
    accept: 'nfltr worker --state-dir DIR --accept-planner-key PEER',
  },
} as const;

/** The pins an agent of this kind keeps in its state dir. */
export function knownPeersIn(stateDir: string, kind: keyof typeof PIN_SIDES): KnownPeers {
  const side = PIN_SIDES[kind];
  return new KnownPeers({
    file: join(stateDir, side.file),
    peerKind: side.peerKind,
    acceptCommand: side.accept.replace('DIR', stateDir),
  });
}

/**
 * The agent's long-term key and its pins, from its state dir (the key is made on first run). Logs the
 * key's fingerprint, which a peer's refusal of a changed key asks to compare with.
 */
export function peerKeysFrom(
  stateDir: string,
  kind: keyof typeof PIN_SIDES,
  log: (fingerprint: string) => void,
): { staticKey: X25519KeyPair; pins: KnownPeers } {
  const staticKey = loadStaticKey(stateDir);
  log(fingerprint(staticKey.publicKey));
  return { staticKey, pins: knownPeersIn(stateDir, kind) };
}

/** `--accept-worker-key` / `--accept-planner-key`: forgets a pin, says so on stderr, and exits. */
export function acceptPeerKey(stateDir: string, kind: keyof typeof PIN_SIDES, peer: string): never {
  const pins = knownPeersIn(stateDir, kind);
  const had = pins.forget(peer);
  process.stderr.write(
    had
      ? `nfltr: forgot the pinned key of ${PIN_SIDES[kind].peerKind} ${peer} in ${pins.file}; the key it presents at its next handshake is pinned (a running ${kind} picks this up at once)\n`
      : `nfltr: no key pinned for ${PIN_SIDES[kind].peerKind} ${peer} in ${pins.file}; nothing to do (check --state-dir and the id)\n`,
  );
  process.exit(had ? 0 : 1);
}
