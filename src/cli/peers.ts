/**
 * @module `nfltr peers`: the agents of this key's account, from the relay's HTTP API, so an operator
 * sees the fleet without an MCP client.
 */
import { type Command, Option } from 'commander';
import type { Peer } from '../planner/peers.js';
import { apiKeyFrom, tlsCaFrom } from './agent-options.js';
import { die, formatTable, parseDuration, parseUrl } from './options.js';
import { applyRelaySources, relayOption } from './relay-url.js';

export interface RelayApiFlags {
  proxyUrl?: string;
  apiKey?: string;
  apiKeyFile?: string;
  tlsCa?: string;
}

interface PeersFlags extends RelayApiFlags {
  json?: boolean;
  watch?: number;
}

/** The flags that reach the relay's HTTP API (`peers`, `status`), filled from the saved login. */
export function addRelayApiOptions(cmd: Command): Command {
  return cmd
    .addOption(relayOption())
    .addOption(
      new Option('--proxy-url <url>', 'relay HTTP API address').argParser(parseUrl).env('NFLTR_PROXY_URL'),
    )
    .addOption(new Option('--api-key <key>', 'API key of your relay account').env('NFLTR_API_KEY'))
    .addOption(
      new Option('--api-key-file <file>', 'read the API key from this file').env('NFLTR_API_KEY_FILE'),
    )
    .addOption(new Option('--tls-ca <file>', 'PEM CA certificate to trust for the relay').env('NFLTR_TLS_CA'))
    .addHelpText('after', '\nWithout flags, the relay and key saved by `nfltr login` are used.\n')
    .hook('preAction', (c) => applyRelaySources(c));
}

/** The API key and CA from those flags; exits 2 naming what is missing. */
export function relayCredentials(o: RelayApiFlags): { apiKey: string; ca: Buffer | undefined } {
  let apiKey: string | undefined;
  let ca: Buffer | undefined;
  try {
    apiKey = apiKeyFrom(o);
    ca = tlsCaFrom(o);
  } catch (err) {
    die((err as Error).message, 2);
  }
  if (!apiKey) die('no API key: pass --api-key-file FILE, set NFLTR_API_KEY, or run nfltr login', 2);
  return { apiKey, ca };
}

/** A client of the relay's HTTP API from those flags; exits 2 naming what is missing. */
export async function relayApiFrom(o: RelayApiFlags) {
  if (!o.proxyUrl) die('no relay HTTP address: pass --relay URL or --proxy-url URL, or run nfltr login', 2);
  const { apiKey, ca } = relayCredentials(o);
  const { PeerDirectory } = await import('../planner/peers.js');
  return new PeerDirectory({ proxyUrl: o.proxyUrl, apiKey, ca });
}

/** The agents as `nfltr peers` prints them. */
export function peersTable(peers: Peer[]): string {
  const rows = [['AGENT', 'KIND', 'CONNECTED SINCE', 'LABELS']].concat(
    peers.map((p) => [
      p.agent_id,
      p.kind,
      p.connected_since,
      Object.entries(p.labels)
        .map(([k, v]) => `${k}=${v}`)
        .join(','),
    ]),
  );
  return formatTable(rows);
}

export function register(program: Command): void {
  addRelayApiOptions(
    program
      .command('peers')
      .description(
        "List this account's agents (workers and planners) with their labels, from the relay's HTTP API",
      ),
  )
    .addOption(new Option('--json', 'print {"peers": [...]} as JSON').env('NFLTR_JSON'))
    .addOption(
      new Option('--watch [interval]', 'print the list again every interval until interrupted')
        .argParser(parseDuration)
        .preset('2s'),
    )
    .action(async (o: PeersFlags) => {
      const directory = await relayApiFrom(o);
      for (;;) {
        let peers: Awaited<ReturnType<typeof directory.list>>;
        try {
          peers = await directory.list();
        } catch (err) {
          die((err as Error).message);
        }
        if (o.json) process.stdout.write(`${JSON.stringify({ peers })}\n`);
        else process.stdout.write(peersTable(peers));
        if (o.watch === undefined) return;
        await new Promise((r) => setTimeout(r, o.watch));
        if (!o.json) process.stdout.write('\n');
      }
    });
}
