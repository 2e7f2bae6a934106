/**
 * @module The relay's HTTP API: health, the calling account's peers, and `/browse` (./browse.ts). Every error is JSON with a
 * status and a specific message, produced at one boundary.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Logger } from '../util/log.js';
import { type Browse, type BrowseCaller, rawErrorResponse } from './browse.js';
import type { Cluster, PeerView } from './cluster.js';
import type { Accounting } from './limits.js';
import type { Store } from './store/store.js';

/** An error that knows its HTTP status; thrown by handlers, rendered by the boundary. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'HttpError';
  }
}

export interface PeerJson {
  agent_id: string;
  kind: string;
  labels: Record<string, string>;
  connected_since: string;
  last_seen: string;
  /** The relay replica holding the agent's stream. */
  relay_id: string;
}

export const peerJson = (p: PeerView): PeerJson => ({
  agent_id: p.agentId,
  kind: p.kind,
  labels: p.labels,
  connected_since: p.connectedSince.toISOString(),
  last_seen: p.lastSeen.toISOString(),
  relay_id: p.relayId,
});

/** Accepts `Authorization: ApiKey <key>`, `Authorization: Bearer <key>` or `X-Api-Key: <key>`. */
export function presentedKey(req: IncomingMessage): string | undefined {
  const auth = req.headers.authorization;
  if (auth) {
    const m = /^(?:ApiKey|Bearer)\s+(\S+)$/i.exec(auth.trim());
    return m?.[1];
  }
  const x = req.headers['x-api-key'];
  return typeof x === 'string' && x.trim() ? x.trim() : undefined;
}

/** A path segment decoded, or undefined when its %-escapes are malformed: a request error, never a throw. */
export function decodeSegment(segment: string): string | undefined {
  try {
    return decodeURIComponent(segment);
  } catch {
    return undefined;
  }
}

export interface HttpApiOptions {
  store: Store;
  cluster: Cluster;
  logger: Logger;
  relayId: string;
  storeKind?: string;
  busKind?: string;
  accounting: Accounting;
  /** Serves `/browse/<agent_id>/<path>` (see ./browse.ts). */
  browse?: Browse;
  /** Served without a key at {@link WELL_KNOWN_PATH}: how agents given only `--relay URL` dial gRPC. */
  discovery?: RelayDiscovery;
}

/** Where `nfltr --relay URL` asks the relay for its gRPC address. */
export const WELL_KNOWN_PATH = '/.well-known/nfltr';

/**
 * The answer at {@link WELL_KNOWN_PATH}: `grpc_addr` when the relay is told its public address
 * (`--advertise-grpc`, a proxy in front), else `grpc_port` on the host the client used for the URL.
 */
export interface RelayDiscovery {
  grpc_port: number;
  grpc_addr?: string;
  /** Whether the relay's own gRPC listener speaks TLS (omitted with `grpc_addr`: the URL's scheme says). */
  tls?: boolean;
}

/** Said with every peers list: what the relay vouches for and what it only passes on. */
export const PEER_CLAIMS =
  'agent_id is unique in the account and held by one authenticated stream; kind is checked to be worker, planner or tunnel; labels (coord.* included) are the agent’s own claims, passed on unchecked';

/** The caller the request's API key authenticates; an HttpError (401) without a valid one. */
async function callerOf(store: Store, req: IncomingMessage): Promise<BrowseCaller> {
  const key = presentedKey(req);
  if (!key) {
    throw new HttpError(
      401,
      'unauthenticated',
      'missing API key: send "Authorization: ApiKey <key>", "Authorization: Bearer <key>" or "X-Api-Key: <key>"',
    );
  }
  const auth = await store.authenticate(key);
  if (!auth.ok) throw new HttpError(401, 'unauthenticated', auth.message);
  const keyHeader = req.headers.authorization ? 'authorization' : 'x-api-key';
  return { account: auth.account, keyId: auth.keyId, keyHeader };
}

/**
 * Upgrade requests (WebSocket) to `/browse/…`, authenticated like any API call; false for any other
 * path. A refusal is JSON on the raw socket.
 */
export function createUpgradeHandler(opts: { store: Store; browse: Browse }) {
  return (req: IncomingMessage, socket: Duplex, head: Buffer): boolean => {
    if (!new URL(req.url ?? '/', 'http://relay').pathname.startsWith('/browse/')) return false;
    callerOf(opts.store, req).then(
      (caller) => opts.browse.upgrade(req, socket, head, caller),
      (err: HttpError) => socket.end(rawErrorResponse(err.status, err.code, err.message)),
    );
    return true;
  };
}

export function createHttpHandler(opts: HttpApiOptions) {
  const { store, cluster, logger } = opts;
  const account = async (req: IncomingMessage) => (await callerOf(store, req)).account;

  const routes: Record<string, (req: IncomingMessage) => Promise<unknown>> = {
    [`GET ${WELL_KNOWN_PATH}`]: async () => {
      if (!opts.discovery)
        throw new HttpError(404, 'not_found', 'this relay does not publish its gRPC address');
      return opts.discovery;
    },
    // Without a key, only liveness: who runs here and how many agents it holds is not for everyone.
    'GET /healthz': async (req) => {
      if (!presentedKey(req)) return { status: 'ok' };
      const acct = await account(req);
      const counts = cluster.counts(acct);
      return {
        status: 'ok',
        relay_id: opts.relayId,
        agents: counts.local,
        remote_agents: counts.remote,
        store: opts.storeKind,
        bus: opts.busKind,
        ...opts.accounting.stats(acct),
      };
    },
    'GET /api/v1/peers': async (req) => {
      const peers = cluster.peers(await account(req)).map(peerJson);
      peers.sort((a, b) => a.agent_id.localeCompare(b.agent_id));
      return { peers, claims: PEER_CLAIMS };
    },
  };

  return (req: IncomingMessage, res: ServerResponse): void => {
    const path = new URL(req.url ?? '/', 'http://relay').pathname;
    const route = routes[`${req.method} ${path}`];
    const send = (status: number, body: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(`${JSON.stringify(body)}\n`);
    };
    const { browse } = opts;
    if (browse && path.startsWith('/browse/')) {
      callerOf(store, req).then(
        (caller) => browse.handle(req, res, caller),
        (err: HttpError) => send(err.status, { error: { code: err.code, message: err.message } }),
      );
      return;
    }
    const handler =
      route ??
      (async () => {
        throw new HttpError(404, 'not_found', `no route ${req.method} ${path}`);
      });
    handler(req).then(
      (body) => send(200, body),
      (err: Error) => {
        if (err instanceof HttpError)
          return send(err.status, { error: { code: err.code, message: err.message } });
        logger.error('http handler failed', { path, error: err.stack });
        send(500, { error: { code: 'internal', message: 'internal relay error' } });
      },
    );
  };
}
