/**
 * @module `nfltr http [PORT|URL]`: exposes local HTTP services through the relay. An agent of kind
 * tunnel, connecting outbound only; reached at `/browse/<name>/…` on the relay and by planners'
 * `proxy_request` (end-to-end encrypted).
 */
import { type Command, Option } from 'commander';
import {
  A2aEndpoint,
  AgentClient,
  exposeHttp,
  fingerprint,
  type HttpRoute,
  HttpService,
  httpLabels,
  loadStaticKey,
  parseRoute,
  parseTarget,
} from '../agent/index.js';
import type { X25519KeyPair } from '../protocol/e2ee-noise.js';
import { createLogger } from '../util/log.js';
import {
  type AgentFlags,
  addAgentOptions,
  addE2eeOptions,
  agentOptionsFrom,
  type E2eeFlags,
  pairingKeyFrom,
} from './agent-options.js';
import { die, nfltrHome, parseLabels } from './options.js';

interface HttpCommandOptions extends AgentFlags, E2eeFlags {
  labels: Record<string, string>;
  route: string[];
}

const HELP_AFTER = `
Requests for /browse/<name>/<path> on the relay (with your API key) and proxy_request calls from
planners go to the service. With --route, the longest matching PREFIX picks the service and is
replaced by the URL's path (--route /api=http://localhost:3000 sends /api/users to
http://localhost:3000/users); the positional service, if given, serves every other path.
The agent advertises its routes in the label nfltr.http.routes (list_my_peers shows it).
/browse is terminated by the relay (it sees the traffic); proxy_request is end-to-end encrypted.

Examples:
  nfltr http 3000 --relay https://relay.example.com --api-key-file ~/.nfltr/api-key --name my-app
  nfltr http --route /api=http://localhost:3000 --route /=http://localhost:5173 --name dev-box
`;

export function register(program: Command): void {
  const cmd = program
    .command('http')
    .argument('[service]', 'local service: PORT, HOST:PORT or URL (default http://localhost:8080)')
    .description('Expose a local HTTP service through the relay (/browse and proxy_request)');
  addE2eeOptions(addAgentOptions(cmd))
    .addOption(
      new Option('--labels <k=v,...>', 'labels peers see this agent by')
        .argParser(parseLabels)
        .default({}, ''),
    )
    .addOption(
      new Option('--route <PREFIX=URL>', 'serve paths under PREFIX from URL (repeatable)')
        .argParser((v: string, prev: string[]) => [...prev, v])
        .default([], ''),
    )
    .addHelpText('after', HELP_AFTER)
    .action(async (service: string | undefined, o: HttpCommandOptions) => {
      await httpCommand(service, o);
    });
}

async function httpCommand(service: string | undefined, o: HttpCommandOptions): Promise<void> {
  const logger = createLogger('http');
  let routes: HttpRoute[];
  let options: ReturnType<typeof agentOptionsFrom>;
  let pairingKey: Uint8Array | undefined;
  try {
    options = agentOptionsFrom(o, 'tunnel');
    pairingKey = pairingKeyFrom(o);
    routes = o.route.map(parseRoute);
    if (service !== undefined || routes.length === 0)
      routes.push({
        prefix: '/',
        target: parseTarget(service ?? 'http://localhost:8080', 'nfltr http [PORT|URL]'),
      });
    if (o.labels['nfltr.http.routes'] !== undefined)
      throw new Error('--labels: nfltr.http.routes is set by nfltr http from the routes');
  } catch (err) {
    return die((err as Error).message, 2);
  }
  let staticKey: X25519KeyPair;
  try {
    // A key that outlives the process, so planners that pinned this agent keep accepting it. No pins of
    // planners: /browse, which the relay terminates, reaches the same service anyway.
    staticKey = loadStaticKey(nfltrHome('http', options.agentId));
  } catch (err) {
    return die((err as Error).message, 2);
  }
  logger.info('static key', { fingerprint: fingerprint(staticKey.publicKey) });
  const agent = new AgentClient({ ...options, labels: { ...o.labels, ...httpLabels(routes) }, logger });
  const endpoint = new A2aEndpoint({
    agent,
    role: 'responder',
    e2ee: o.a2aE2ee,
    pairingKey,
    staticKey,
    logger: logger.child('a2a'),
  });
  const detach = exposeHttp(agent, new HttpService(routes, logger), endpoint);
  agent.on('status', (s) => {
    if (s.type === 'fatal') die(s.message, 1);
    if (s.type === 'connected')
      logger.info('serving', {
        browse: `/browse/${agent.agentId}/`,
        routes: httpLabels(routes)['nfltr.http.routes'],
      });
  });
  agent.start();
  const stop = async () => {
    detach();
    await agent.close();
    process.exit(0);
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}
