/**
 * @module Control Tower on the relay: the dashboard page (`/dashboard`, bundled assets) and the HTTP API
 * under `/api/v1/orchestration/` that carries sealed task digests from planners to pages and sealed
 * commands back (wire format: protocol/dashboard.ts). The relay stores ciphertext and the routing
 * metadata it has anyway (account, planner id, task id, when); it holds no key and opens nothing.
 *
 * Who may do what: a planner (API key of the account) registers its dashboard, pushes digests, pulls
 * and acks its commands. A page or `nfltr orch` reads digests, the fleet and the live feed, and queues
 * commands, with either an API key of the account (every planner of it) or a dashboard link's access
 * token (`X-Dashboard-Token`, or `?t=` where a browser cannot set headers: that planner only).
 */
import { EventEmitter } from 'node:events';
import type { IncomingMessage, ServerResponse } from 'node:http';
import {
  type FleetWorkerJson,
  MAX_COMMAND_CHARS,
  MAX_DIGEST_CHARS,
  MAX_DIGESTS_PER_PLANNER,
  MAX_DIGESTS_PER_PUSH,
  MAX_PENDING_COMMANDS,
  type SealedDigestJson,
} from '../protocol/dashboard.js';
import { tokenHash } from '../protocol/link-crypto.js';
import type { Logger } from '../util/log.js';
import type { Cluster } from './cluster.js';
import { decodeSegment, HttpError, presentedKey } from './http-api.js';
import { assetFile, sendAsset } from './page-assets.js';
import type { DigestRecord, Store } from './store/store.js';

/** Bytes of one request body: a full push of the largest digests, plus the JSON around them. */
export const MAX_BODY_BYTES = MAX_DIGESTS_PER_PUSH * (MAX_DIGEST_CHARS + 1024) + 4096;
/** Open live feeds per account on this replica. */
export const MAX_FEEDS_PER_ACCOUNT = 32;
/** A feed also looks for writes made through other replicas this often. */
const FEED_POLL_MS = 3_000;
/** A comment line keeps proxies from closing an idle feed. */
const FEED_PING_MS = 15_000;
const PAGE_SIZE = 500;
const ID_RE = /^[A-Za-z0-9._:@-]{1,128}$/;

const ASSETS: Record<string, { file: string; type: string }> = {
  'page.js': { file: assetFile('dashboard/page.js'), type: 'text/javascript' },
  'page.css': { file: assetFile('dashboard/page.css'), type: 'text/css' },
  'schema-form.js': { file: assetFile('dashboard/schema-form.js'), type: 'text/javascript' },
  'link-crypto.js': { file: assetFile('common/link-crypto.js'), type: 'text/javascript' },
};
const PAGE_FILE = assetFile('dashboard/index.html');

/** Who is asking: an account (API key), or one planner's dashboard (link token). */
interface Caller {
  account: string;
  /** Set for a link token: the one planner it opens. */
  plannerId?: string;
}

export const digestJson = (d: DigestRecord): SealedDigestJson => ({
  planner_id: d.plannerId,
  task_id: d.taskId,
  rev: d.rev,
  updated_at: d.updatedAt.toISOString(),
  sealed: d.sealed,
});

export interface OrchestrationOptions {
  store: Store;
  cluster: Cluster;
  logger: Logger;
}

export class Orchestration {
  readonly #o: OrchestrationOptions;
  /** `written` (account): digests were written through this replica. */
  readonly #changes = new EventEmitter().setMaxListeners(0);
  readonly #feeds = new Map<string, number>();
  readonly #open = new Set<ServerResponse>();

  constructor(o: OrchestrationOptions) {
    this.#o = o;
  }

  /** Handles `/dashboard…` and `/api/v1/orchestration/…`; false for any other path. */
  handle(req: IncomingMessage, res: ServerResponse): boolean {
    const url = new URL(req.url ?? '/', 'http://relay');
    const path = url.pathname;
    if (req.method === 'GET' && (path === '/dashboard' || path === '/dashboard/')) {
      sendAsset(res, PAGE_FILE, 'text/html; charset=utf-8');
      return true;
    }
    if (req.method === 'GET' && path.startsWith('/dashboard/_assets/')) {
      const asset = ASSETS[path.slice('/dashboard/_assets/'.length)];
      if (!asset) return this.#fail(res, new HttpError(404, 'not_found', `no asset ${path}`));
      sendAsset(res, asset.file, asset.type, 3600);
      return true;
    }
    if (!path.startsWith('/api/v1/orchestration/')) return false;
    const rest = path.slice('/api/v1/orchestration/'.length).split('/').map(decodeSegment);
    if (rest.includes(undefined)) {
      const bad = new HttpError(400, 'invalid_argument', `malformed escape in ${path.slice(0, 200)}`);
      return this.#fail(res, bad);
    }
    this.#route(req, res, url, rest as string[]).then(
      (body) => {
        if (body === undefined) return; // the feed answers on its own
        res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' });
        res.end(`${JSON.stringify(body)}\n`);
      },
      (err: Error) => this.#fail(res, err),
    );
    return true;
  }

  async #route(req: IncomingMessage, res: ServerResponse, url: URL, rest: string[]): Promise<unknown> {
    const route = `${req.method} ${rest[0] === 'planners' ? `planners/*/${rest.slice(2).join('/')}` : rest.join('/')}`;
    const plannerId = rest[0] === 'planners' ? checkId(rest[1] ?? '', 'planner id') : undefined;
    switch (route) {
      case 'GET tasks': {
        const who = await this.#caller(req, url);
        const after = nonNegative(url.searchParams.get('after') ?? '0', 'after');
        const planner = this.#scope(who, url.searchParams.get('planner'));
        const digests = await this.#o.store.listDigests(who.account, {
          plannerId: planner,
          afterRev: after,
          limit: PAGE_SIZE,
        });
        return {
          tasks: digests.map(digestJson),
          rev: digests.at(-1)?.rev ?? after,
          more: digests.length === PAGE_SIZE,
          planner_id: planner ?? null,
        };
      }
      case 'GET fleet':
        return { workers: this.#fleet((await this.#caller(req, url)).account) };
      case 'GET events':
        return this.#feed(req, res, url);
      case 'PUT planners/*/': {
        const account = await this.#accountOnly(req);
        const body = await readJson(req, 4096);
        const hash = body.token_sha256;
        if (typeof hash !== 'string' || !/^[0-9a-f]{64}$/.test(hash))
          throw new HttpError(400, 'invalid_argument', 'token_sha256: expected 64 hex characters');
        await this.#o.store.registerDashboard(account, plannerId!, hash);
        return { planner_id: plannerId };
      }
      case 'POST planners/*/digests':
        return this.#push(req, plannerId!);
      case 'POST planners/*/commands': {
        const who = await this.#caller(req, url);
        this.#scope(who, plannerId!);
        const body = await readJson(req, MAX_COMMAND_CHARS + 1024);
        const sealed = sealedText(body.sealed, MAX_COMMAND_CHARS, 'sealed');
        const q = await this.#o.store.queueCommand(who.account, plannerId!, sealed, MAX_PENDING_COMMANDS);
        if (!q.ok)
          throw new HttpError(
            429,
            'queue_full',
            `planner ${plannerId} has ${q.pending} commands not yet taken (at most ${MAX_PENDING_COMMANDS}); is it running with --dashboard-commands?`,
          );
        return { id: q.id };
      }
      case 'GET planners/*/commands': {
        const account = await this.#accountOnly(req);
        const commands = await this.#o.store.pendingCommands(account, plannerId!, MAX_PENDING_COMMANDS);
        return {
          commands: commands.map((c) => ({
            id: c.id,
            created_at: c.createdAt.toISOString(),
            sealed: c.sealed,
          })),
        };
      }
      case 'POST planners/*/commands/ack': {
        const account = await this.#accountOnly(req);
        const body = await readJson(req, 16 * 1024);
        const ids = body.ids;
        if (
          !Array.isArray(ids) ||
          ids.length > MAX_PENDING_COMMANDS ||
          !ids.every((i) => Number.isSafeInteger(i))
        )
          throw new HttpError(
            400,
            'invalid_argument',
            `ids: expected at most ${MAX_PENDING_COMMANDS} command ids`,
          );
        return { acked: await this.#o.store.ackCommands(account, plannerId!, ids as number[]) };
      }
    }
    throw new HttpError(404, 'not_found', `no route ${req.method} ${url.pathname}`);
  }

  async #push(req: IncomingMessage, plannerId: string): Promise<unknown> {
    const account = await this.#accountOnly(req);
    const body = await readJson(req, MAX_BODY_BYTES);
    const list = body.digests;
    if (!Array.isArray(list) || list.length === 0 || list.length > MAX_DIGESTS_PER_PUSH)
      throw new HttpError(400, 'invalid_argument', `digests: expected 1 to ${MAX_DIGESTS_PER_PUSH} digests`);
    // One row per task: the last digest of a task in the push wins.
    const byTask = new Map<string, string>();
    list.forEach((d: { task_id?: unknown; sealed?: unknown }, i) => {
      const taskId = checkId(String(d?.task_id ?? ''), `digests[${i}].task_id`);
      byTask.set(taskId, sealedText(d?.sealed, MAX_DIGEST_CHARS, `digests[${i}].sealed`));
    });
    const digests = [...byTask].map(([taskId, sealed]) => ({ taskId, sealed }));
    const rev = await this.#o.store.putDigests(account, plannerId, digests, MAX_DIGESTS_PER_PLANNER);
    this.#changes.emit('written', account);
    return { rev, stored: digests.length };
  }

  /** Server-Sent Events: `digest` per written digest (the same JSON as the list), `fleet` when it changes. */
  async #feed(req: IncomingMessage, res: ServerResponse, url: URL): Promise<undefined> {
    const who = await this.#caller(req, url);
    const planner = this.#scope(who, url.searchParams.get('planner'));
    // A browser reconnecting sends the URL it first used and the last id it got: the later one wins.
    let rev = Math.max(
      nonNegative(url.searchParams.get('after') ?? '0', 'after'),
      nonNegative(req.headers['last-event-id']?.toString() || '0', 'Last-Event-ID'),
    );
    const open = this.#feeds.get(who.account) ?? 0;
    if (open >= MAX_FEEDS_PER_ACCOUNT)
      throw new HttpError(
        429,
        'too_many_feeds',
        `this account has ${open} live feeds open on this relay (at most ${MAX_FEEDS_PER_ACCOUNT})`,
      );
    this.#feeds.set(who.account, open + 1);
    this.#open.add(res);
    res.writeHead(200, {
      'content-type': 'text/event-stream',
      'cache-control': 'no-store',
      connection: 'keep-alive',
      'x-accel-buffering': 'no',
    });
    // The relay's request timeout would cut a feed: it is long-lived by design.
    req.socket.setTimeout(0);
    res.write('retry: 2000\n\n');
    let fleet = '';
    let busy = false;
    let again = false;
    const pump = async () => {
      if (busy) {
        again = true;
        return;
      }
      busy = true;
      try {
        do {
          again = false;
          const digests = await this.#o.store.listDigests(who.account, {
            plannerId: planner,
            afterRev: rev,
            limit: PAGE_SIZE,
          });
          for (const d of digests) {
            res.write(`id: ${d.rev}\nevent: digest\ndata: ${JSON.stringify(digestJson(d))}\n\n`);
            rev = d.rev;
          }
          if (digests.length === PAGE_SIZE) again = true;
          const f = JSON.stringify({ workers: this.#fleet(who.account) });
          if (f !== fleet) {
            fleet = f;
            res.write(`event: fleet\ndata: ${f}\n\n`);
          }
        } while (again && !res.destroyed);
      } catch (err) {
        this.#o.logger.warn('dashboard feed failed', { error: (err as Error).message });
      } finally {
        busy = false;
      }
    };
    const onWrite = (account: string) => {
      if (account === who.account) void pump();
    };
    this.#changes.on('written', onWrite);
    const poll = setInterval(() => void pump(), FEED_POLL_MS);
    const ping = setInterval(() => res.write(': ping\n\n'), FEED_PING_MS);
    res.on('close', () => {
      this.#changes.off('written', onWrite);
      clearInterval(poll);
      clearInterval(ping);
      this.#open.delete(res);
      const n = (this.#feeds.get(who.account) ?? 1) - 1;
      if (n > 0) this.#feeds.set(who.account, n);
      else this.#feeds.delete(who.account);
    });
    await pump();
    return undefined;
  }

  #fleet(account: string): FleetWorkerJson[] {
    const num = (v: string | undefined) => (v !== undefined && Number.isFinite(Number(v)) ? Number(v) : null);
    return this.#o.cluster
      .peers(account)
      .filter((p) => p.kind === 'worker')
      .map((p) => ({
        agent_id: p.agentId,
        labels: p.labels,
        connected_since: p.connectedSince.toISOString(),
        last_seen: p.lastSeen.toISOString(),
        max_tasks: num(p.labels['nfltr.worker.max_tasks']),
        load_pct: num(p.labels['coord.load_pct']),
      }))
      .sort((a, b) => a.agent_id.localeCompare(b.agent_id));
  }

  /** An API key, or a dashboard link's access token (header, or `?t=` / `?key=` for EventSource). */
  async #caller(req: IncomingMessage, url: URL): Promise<Caller> {
    const token = headerOf(req, 'x-dashboard-token') ?? url.searchParams.get('t') ?? undefined;
    if (token) {
      const d = await this.#o.store.dashboardOfToken(tokenHash(token));
      if (!d)
        throw new HttpError(
          403,
          'unknown_link',
          'this dashboard link is not known to the relay: its planner has not registered it (is nfltr mcp running with --dashboard-digest?)',
        );
      return d;
    }
    return { account: await this.#accountOnly(req, url.searchParams.get('key') ?? undefined) };
  }

  async #accountOnly(req: IncomingMessage, queryKey?: string): Promise<string> {
    const key = presentedKey(req) ?? queryKey;
    if (!key)
      throw new HttpError(
        401,
        'unauthenticated',
        'missing API key: send "Authorization: ApiKey <key>" (or a dashboard link token in X-Dashboard-Token)',
      );
    const auth = await this.#o.store.authenticate(key);
    if (!auth.ok) throw new HttpError(401, 'unauthenticated', auth.message);
    return auth.account;
  }

  /** The planner a request is about: a link token's own, or the one asked for (any, with an API key). */
  #scope(who: Caller, asked: string | null): string | undefined {
    const planner = asked ? checkId(asked, 'planner') : undefined;
    if (!who.plannerId) return planner;
    if (planner && planner !== who.plannerId)
      throw new HttpError(
        403,
        'forbidden',
        `this dashboard link opens planner ${who.plannerId}, not ${planner}`,
      );
    return who.plannerId;
  }

  #fail(res: ServerResponse, err: Error): true {
    const e = err instanceof HttpError ? err : new HttpError(500, 'internal', 'internal relay error');
    if (!(err instanceof HttpError))
      this.#o.logger.error('orchestration handler failed', { error: err.stack });
    if (res.headersSent) {
      res.end();
      return true;
    }
    res.writeHead(e.status, { 'content-type': 'application/json' });
    res.end(`${JSON.stringify({ error: { code: e.code, message: e.message } })}\n`);
    return true;
  }

  close(): void {
    for (const res of this.#open) res.end();
  }
}

const headerOf = (req: IncomingMessage, name: string): string | undefined => {
  const v = req.headers[name];
  return typeof v === 'string' && v.trim() ? v.trim() : undefined;
};

function checkId(value: string, what: string): string {
  if (!ID_RE.test(value))
    throw new HttpError(
      400,
      'invalid_argument',
      `${what}: expected 1-128 letters, digits or . _ : @ -, got ${JSON.stringify(value.slice(0, 140))}`,
    );
  return value;
}

function nonNegative(value: string, what: string): number {
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < 0)
    throw new HttpError(
      400,
      'invalid_argument',
      `${what}: expected a whole number ≥ 0, got ${JSON.stringify(value.slice(0, 40))}`,
    );
  return n;
}

function sealedText(value: unknown, max: number, what: string): string {
  if (typeof value !== 'string' || !/^[A-Za-z0-9_-]+$/.test(value))
    throw new HttpError(400, 'invalid_argument', `${what}: expected base64url ciphertext`);
  if (value.length > max)
    throw new HttpError(413, 'too_large', `${what}: ${value.length} characters, at most ${max}`);
  return value;
}

/** The request body as a JSON object, refused past `max` bytes without reading the rest. */
function readJson(req: IncomingMessage, max: number): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers['content-length'] ?? 0);
    if (declared > max) {
      req.resume();
      return reject(new HttpError(413, 'too_large', `request body of ${declared} bytes, at most ${max}`));
    }
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.byteLength;
      if (size > max) {
        req.removeAllListeners('data');
        req.resume();
        reject(new HttpError(413, 'too_large', `request body over ${max} bytes`));
        return;
      }
      chunks.push(c);
    });
    req.on('error', reject);
    req.on('end', () => {
      try {
        const v = JSON.parse(Buffer.concat(chunks).toString('utf8')) as unknown;
        if (!v || typeof v !== 'object' || Array.isArray(v)) throw new Error('not an object');
        resolve(v as Record<string, unknown>);
      } catch {
        reject(new HttpError(400, 'invalid_json', 'request body: expected a JSON object'));
      }
    });
  });
}
