/**
 * @module `nfltr p2p send|recv|list`: files from one machine to another, over a direct connection when
 * the two can reach each other, else through the relay (said plainly). Signalling rides the sealed A2A
 * channel; the bytes are the artifact stream's chunks, checked the same way (chunk and whole-file
 * SHA-256, fail closed) and resumed from what the receiver has. See docs/artifacts.md.
 */
import { createHash } from 'node:crypto';
import { resolve } from 'node:path';
import { create } from '@bufbuild/protobuf';
import { type Command, Option } from 'commander';
import {
  describeFiles,
  ProgressThrottle,
  parseChunkRef,
  progressText,
  resolveLocalPaths,
} from '../agent/artifacts/index.js';
import { A2aEndpoint, AgentClient, fingerprint, KnownPeers, loadStaticKey } from '../agent/index.js';
import {
  a2aTransferChannel,
  advertisedHosts,
  DEFAULT_DIRECT_TIMEOUT_MS,
  InboundFiles,
  IncomingTransfer,
  type PathChange,
  sendFiles,
} from '../agent/p2p/index.js';
import type { Peer } from '../planner/peers.js';
import { P2pAnswerSchema, type P2pOffer } from '../protocol/a2a.js';
import type { X25519KeyPair } from '../protocol/e2ee-noise.js';
import { createLogger, type Logger } from '../util/log.js';
import { type AgentFlags, addAgentOptions, agentOptionsFrom, defaultAgentId } from './agent-options.js';
import { die, formatTable, nfltrHome, parseBytes, parseDuration, parseUrl } from './options.js';
import { addRelayApiOptions, type RelayApiFlags, relayApiFrom } from './peers.js';

/** The label a peer that takes direct transfers advertises (`coord.transfer` on workers, too). */
export const TRANSFER_LABEL = 'coord.transfer';
/** `nfltr p2p recv` agents also say so here: they take files from anyone of the account. */
const RECV_LABEL = 'nfltr.p2p';

interface CommonFlags extends AgentFlags {
  stateDir?: string;
  directTimeout: number;
  addr: string[];
  json?: boolean;
}

interface SendFlags extends CommonFlags {
  relayOnly?: boolean;
  proxyUrl?: string;
}

interface RecvFlags extends CommonFlags {
  output: string;
  once?: boolean;
  from?: string;
  maxBytes: number;
}

/** Peers that take direct transfers: `coord.transfer` lists `p2p`. */
export const takesP2p = (p: Peer): boolean =>
  (p.labels[TRANSFER_LABEL] ?? '').split(/[,\s]+/).includes('p2p');

/** A peer's alias: its id without the `-<kind>` that default ids end with (`laptop-p2p` → `laptop`). */
export const aliasOf = (agentId: string): string => agentId.replace(/-(p2p|worker|planner|tunnel)$/, '');

/**
 * The agent a `<peer>` argument names: an exact id, or a bare alias when exactly one p2p peer carries
 * it. Throws a message listing the candidates otherwise.
 */
export function resolvePeer(peers: Peer[], name: string): string {
  if (peers.some((p) => p.agent_id === name)) return name;
  const matches = peers.filter((p) => takesP2p(p) && aliasOf(p.agent_id) === name);
  if (matches.length === 1) return matches[0]!.agent_id;
  const p2p = peers.filter(takesP2p).map((p) => p.agent_id);
  if (matches.length > 1) {
    throw new Error(
      `peer ${JSON.stringify(name)} is ambiguous: ${matches.map((p) => p.agent_id).join(', ')}; give the full agent id`,
    );
  }
  throw new Error(
    `no peer ${JSON.stringify(name)} under this key; peers that take direct transfers: ${p2p.join(', ') || 'none (start `nfltr p2p recv` there)'}`,
  );
}

/** `12.3 MB/s` (decimal megabytes, as network tools print). */
export const rate = (bytes: number, ms: number): string =>
  `${(bytes / 1e6 / Math.max(ms / 1000, 1e-3)).toFixed(1)} MB/s`;

function addCommonOptions(cmd: Command): Command {
  return addAgentOptions(cmd)
    .addOption(
      new Option(
        '--state-dir <dir>',
        'where the static key and pinned peer keys live (default ~/.nfltr/p2p/<name>)',
      ),
    )
    .addOption(
      new Option('--direct-timeout <duration>', 'how long to try a direct connection before using the relay')
        .argParser(parseDuration)
        .default(DEFAULT_DIRECT_TIMEOUT_MS, '3s'),
    )
    .addOption(
      new Option(
        '--addr <host>',
        'address to offer for direct connections (repeatable; default: the local interfaces and the address the relay saw)',
      )
        .argParser((v: string, prev: string[]) => [...prev, v])
        .default([], ''),
    )
    .addOption(
      new Option('--json', 'print the result as one JSON object per transfer on stdout').env('NFLTR_JSON'),
    );
}

export function register(program: Command): void {
  const p2p = program
    .command('p2p')
    .description(
      'Send files machine to machine: directly when the two can reach each other, else through the relay',
    );

  addCommonOptions(
    p2p
      .command('send')
      .argument('<path>', 'a file or a folder (sent recursively)')
      .argument('<peer>', 'the receiving agent: its id, or a bare alias when exactly one p2p peer has it')
      .description('Send a file or folder to a peer running `nfltr p2p recv`'),
  )
    .addOption(new Option('--relay-only', 'skip the direct attempt: send through the relay'))
    .addOption(
      new Option(
        '--proxy-url <url>',
        'relay HTTP API, to resolve an alias (without it, <peer> is taken as an agent id)',
      )
        .argParser(parseUrl)
        .env('NFLTR_PROXY_URL'),
    )
    .addHelpText(
      'after',
      `
Prints on stderr which path carries the bytes (a fallback to the relay says why), and progress with
the throughput; on stdout one line when done (--json: an object). A transfer sent again after an
interruption resumes from what the receiver already has. Exit 1 when it fails.

Example:
  nfltr p2p send ./dataset laptop --server relay.example:443 --proxy-url https://relay.example
`,
    )
    .action(async (path: string, peer: string, o: SendFlags) => sendCommand(path, peer, o));

  addCommonOptions(p2p.command('recv').description('Receive files sent with `nfltr p2p send` into a folder'))
    .requiredOption('--output <dir>', 'folder the files land in (created if missing)')
    .addOption(new Option('--once', 'exit after the first transfer (code 1 when it failed)'))
    .addOption(new Option('--from <peer>', 'take files from this agent only'))
    .addOption(
      new Option('--max-artifact-bytes <size>', 'largest file and largest transfer taken')
        .argParser(parseBytes)
        .default(64 * 1024 ** 3, '64GiB'),
    )
    .addHelpText(
      'after',
      `
Files are verified (each chunk and the whole file, SHA-256) before they are placed under --output;
partial files wait in --output/.nfltr-partial/ and a transfer sent again resumes from them, also after
this command restarts. Advertises ${TRANSFER_LABEL}=p2p, so \`nfltr p2p list\` shows it.
`,
    )
    .action(async (o: RecvFlags & { maxArtifactBytes: number }) =>
      recvCommand({ ...o, maxBytes: o.maxArtifactBytes }),
    );

  addRelayApiOptions(
    p2p.command('list').description('List the peers under this key that take direct transfers'),
  )
    .addOption(new Option('--json', 'print {"peers": [...]} as JSON').env('NFLTR_JSON'))
    .addOption(new Option('--all', 'list every peer, not only those that take direct transfers'))
    .action(async (o: RelayApiFlags & { json?: boolean; all?: boolean }) => {
      const directory = await relayApiFrom(o);
      let peers: Peer[];
      try {
        peers = await directory.list();
      } catch (err) {
        die((err as Error).message);
      }
      if (!o.all) peers = peers.filter(takesP2p);
      if (o.json) return void process.stdout.write(`${JSON.stringify({ peers })}\n`);
      const rows = [['AGENT', 'ALIAS', 'KIND', 'TRANSFER', 'CONNECTED SINCE']].concat(
        peers.map((p) => [
          p.agent_id,
          uniqueAlias(peers, p),
          p.kind,
          p.labels[TRANSFER_LABEL] ?? '-',
          p.connected_since,
        ]),
      );
      process.stdout.write(formatTable(rows));
    });
}

/** The alias a peer answers to, or `-` when another p2p peer shares it (then only the id works). */
function uniqueAlias(peers: Peer[], p: Peer): string {
  const alias = aliasOf(p.agent_id);
  const shared = peers.filter((q) => takesP2p(q) && aliasOf(q.agent_id) === alias).length;
  return takesP2p(p) && shared === 1 ? alias : '-';
}

interface Started {
  agent: AgentClient;
  a2a: A2aEndpoint;
  staticKey: X25519KeyPair;
  addresses: () => string[];
  logger: Logger;
}

/** Connects as a p2p agent (kind tunnel) with its static key and pins; exits 2 on a bad flag. */
async function start(
  o: CommonFlags,
  role: 'initiator' | 'responder',
  name: string,
  labels: Record<string, string>,
): Promise<Started> {
  const logger = createLogger('p2p');
  let options: ReturnType<typeof agentOptionsFrom>;
  let staticKey: X25519KeyPair;
  let stateDir: string;
  try {
    options = agentOptionsFrom(
      { ...o, name: o.name ?? `${defaultAgentId('tunnel').replace(/-tunnel$/, '')}-${name}` },
      'tunnel',
    );
    stateDir = o.stateDir ?? nfltrHome('p2p', options.agentId);
    staticKey = loadStaticKey(stateDir);
  } catch (err) {
    return die((err as Error).message, 2);
  }
  logger.info('static key', { fingerprint: fingerprint(staticKey.publicKey) });
  const pins = new KnownPeers({
    file: `${stateDir}/known_peers`,
    peerKind: 'peer',
    acceptCommand: `sed -i '/^PEER /d' ${stateDir}/known_peers`,
  });
  const agent = new AgentClient({ ...options, labels, logger: logger.child('agent') });
  agent.on('status', (s) => {
    if (s.type === 'fatal') die(s.message, 1);
  });
  const a2a = new A2aEndpoint({ agent, role, e2ee: true, staticKey, pins, logger: logger.child('a2a') });
  try {
    await agent.start().waitConnected();
  } catch (err) {
    die((err as Error).message, 1);
  }
  const addresses = () => {
    if (o.addr.length > 0) return o.addr;
    return advertisedHosts(agent.observedAddr);
  };
  return { agent, a2a, staticKey, addresses, logger };
}

const pathLine = (who: string, c: PathChange): string =>
  c.path === 'direct'
    ? `direct connection with ${who} (${c.remote})`
    : `${c.why ?? 'no direct connection'}: using the relay path`;

async function sendCommand(path: string, peerArg: string, o: SendFlags): Promise<void> {
  let files: Awaited<ReturnType<typeof resolveLocalPaths>>;
  try {
    files = await resolveLocalPaths([resolve(path)]);
  } catch (err) {
    return die((err as Error).message, 2);
  }
  let peer = peerArg;
  if (o.proxyUrl) {
    const directory = await relayApiFrom(o);
    try {
      peer = resolvePeer(await directory.list(), peerArg);
    } catch (err) {
      return die((err as Error).message, /ambiguous/.test((err as Error).message) ? 2 : 1);
    }
  }
  const infos = await describeFiles(files);
  const s = await start(o, 'initiator', 'p2p-send', {});
  const transferId = createHash('sha256')
    .update(JSON.stringify([s.agent.agentId, peer, infos.map((f) => [f.name, String(f.size), f.sha256])]))
    .digest('hex')
    .slice(0, 24);
  const total = infos.reduce((n, f) => n + Number(f.size), 0);
  const began = Date.now();
  const stop = new AbortController();
  process.once('SIGINT', () => stop.abort('interrupted'));
  process.once('SIGTERM', () => stop.abort('terminated'));
  let path_: PathChange | undefined;
  /** Acknowledged before a path was taken: what the receiver had already (a resumed transfer). */
  let base = 0;
  const progress = new ProgressThrottle(
    total,
    (done) => {
      s.logger.info(`sent ${progressText(done, total)}`, {
        path: path_?.path,
        rate: rate(done - base, Date.now() - began),
      });
    },
    { minBytes: 0 },
  );
  try {
    const report = await sendFiles({
      channel: a2aTransferChannel(s.a2a, s.agent, peer, `p2p-${transferId}`),
      identity: { localId: s.agent.agentId, remoteId: peer, staticKey: s.staticKey },
      transferId,
      taskId: transferId,
      files,
      infos,
      addresses: s.addresses(),
      relayOnly: o.relayOnly,
      directTimeoutMs: o.directTimeout,
      corruptChunk: parseChunkRef(process.env.NFLTR_TEST_CORRUPT_CHUNK),
      signal: stop.signal,
      onPath: (c) => {
        path_ = c;
        process.stderr.write(`nfltr p2p: ${pathLine(peer, c)}\n`);
      },
      onProgress: (acked) => {
        if (!path_) base = acked;
        progress.update(acked);
      },
      logger: s.logger,
    });
    const sent = report.bytesSent;
    const out = {
      transfer_id: transferId,
      to: peer,
      files: infos.length,
      bytes: total,
      bytes_sent: sent,
      bytes_resumed: report.resumedBytes,
      path: report.path,
      paths: report.paths.map((c) => ({ path: c.path, remote: c.remote, why: c.why })),
      ms: report.ms,
      rate_mb_s: Number((sent / 1e6 / Math.max(report.ms / 1000, 1e-3)).toFixed(1)),
      failed: report.failed,
    };
    if (o.json) process.stdout.write(`${JSON.stringify(out)}\n`);
    else {
      const via =
        report.path === 'direct' ? `directly (${report.paths.at(-1)?.remote})` : 'through the relay';
      const resumed =
        report.resumedBytes > 0 ? `, resumed: ${report.resumedBytes} bytes were already there` : '';
      process.stdout.write(
        `sent ${infos.length} file${infos.length === 1 ? '' : 's'} (${total} bytes) to ${peer} ${via} in ${(report.ms / 1000).toFixed(1)} s, ${rate(sent, report.ms)}${resumed}\n`,
      );
      for (const f of report.failed) process.stderr.write(`nfltr p2p: ${f.name}: ${f.error}\n`);
    }
    await s.agent.close();
    process.exit(report.failed.length > 0 ? 1 : 0);
  } catch (err) {
    await s.agent.close().catch(() => {});
    die((err as Error).message, 1);
  }
}

async function recvCommand(o: RecvFlags): Promise<void> {
  const output = resolve(o.output);
  const s = await start(o, 'responder', 'p2p', { [TRANSFER_LABEL]: 'p2p', [RECV_LABEL]: 'recv' });
  s.logger.info('receiving', { agent: s.agent.agentId, output });
  /** Transfers under way, by id: a sender run again resumes into the same one. */
  const slots = new Map<string, InboundFiles>();
  const stop = async (code: number) => {
    await s.agent.close().catch(() => {});
    process.exit(code);
  };
  process.once('SIGINT', () => void stop(0));
  process.once('SIGTERM', () => void stop(0));
  s.a2a.on('message', (m) => {
    if (m.msg.case !== 'p2pOffer') return;
    void onOffer(m.peer, m.channel, m.msg.value).catch((err) => {
      s.logger.error('transfer failed', { from: m.peer, error: (err as Error).message });
      if (o.once) void stop(1);
    });
  });

  async function onOffer(peer: string, channel: string, offer: P2pOffer): Promise<void> {
    const id = offer.transferId;
    const transfer = a2aTransferChannel(s.a2a, s.agent, peer, channel);
    if (o.from && peer !== o.from) {
      s.logger.warn('offer refused: not from --from', { from: peer });
      const error = `${s.agent.agentId} takes files from ${o.from} only (--from)`;
      await transfer.send({ case: 'p2pAnswer', value: create(P2pAnswerSchema, { transferId: id, error }) });
      return;
    }
    if (!/^[0-9a-f]{1,64}$/.test(id)) throw new Error(`offer from ${peer} has a bad transfer id`);
    let slot = slots.get(id);
    if (!slot) {
      slot = new InboundFiles({
        taskId: id,
        dir: output,
        partialDir: resolve(output, '.nfltr-partial', id),
        maxBytes: o.maxBytes,
        limitFlag: '--max-artifact-bytes of nfltr p2p recv',
        logger: s.logger,
      });
      slots.set(id, slot);
    }
    const total = offer.files.reduce((n, f) => n + Number(f.size), 0);
    process.stderr.write(`nfltr p2p: ${peer} offers ${offer.files.length} file(s), ${total} bytes\n`);
    const began = Date.now();
    let path: PathChange = { path: 'relay' };
    /** Bytes there before this offer (a resumed transfer): not part of its rate. */
    let base: number | undefined;
    const progress = new ProgressThrottle(
      total,
      (done) => {
        s.logger.info(`received ${progressText(done, total)}`, {
          path: path.path,
          rate: rate(done - (base ?? 0), Date.now() - began),
        });
      },
      { minBytes: 0 },
    );
    slot.onProgress = (got) => {
      base ??= got;
      progress.update(got);
    };
    const paths: PathChange[] = [];
    const current = await IncomingTransfer.start({
      offer,
      inbound: slot,
      channel: transfer,
      identity: { localId: s.agent.agentId, remoteId: peer, staticKey: s.staticKey },
      addresses: s.addresses(),
      directTimeoutMs: o.directTimeout,
      onPath: (c) => {
        path = c;
        paths.push(c);
        process.stderr.write(`nfltr p2p: ${pathLine(peer, c)}\n`);
      },
      logger: s.logger,
    });
    let files: Awaited<typeof current.done>;
    try {
      files = await current.done;
    } catch (err) {
      // A discarded file fails the transfer; one sent again starts afresh.
      if (slots.get(id) === slot) slots.delete(id);
      current.close();
      await slot.receiver.abort();
      throw err;
    }
    if (slot.current !== current) return;
    current.close();
    slots.delete(id);
    await slot.receiver.abort();
    const ms = Date.now() - began;
    const out = {
      transfer_id: id,
      from: peer,
      files: files.map((f) => ({ name: f.name, size: f.size, sha256: f.sha256, path: f.path })),
      bytes: total,
      path: path.path,
      paths: paths.map((c) => ({ path: c.path, remote: c.remote, why: c.why })),
      ms,
    };
    if (o.json) process.stdout.write(`${JSON.stringify(out)}\n`);
    else
      process.stdout.write(
        `received ${files.length} file(s) (${total} bytes) from ${peer} ${path.path === 'direct' ? 'directly' : 'through the relay'} in ${(ms / 1000).toFixed(1)} s into ${output}\n`,
      );
    if (o.once) await stop(0);
  }
}
