/**
 * @module `nfltr ai` on the relay: the page (`/ai/<agent_id>`, static files bundled in the package), the
 * viewers' WebSocket (`/ai/<agent_id>/ws`), the link checks (token hash, expiry, revocation) and the
 * forwarding of sealed frames between viewers and the agent's control stream. Frames are carried, never
 * opened: the relay holds no key (see protocol/ai-session.ts). Sessions live on the replica that holds
 * the agent's stream; a viewer must reach that replica.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createRequire } from 'node:module';
import type { Duplex } from 'node:stream';
import { create } from '@bufbuild/protobuf';
import { type WebSocket, WebSocketServer } from 'ws';
import {
  AI_CHANNEL,
  AI_MAX_FRAME_BYTES,
  AI_RELAY_ADDRESS,
  AI_VIEWERS_ADDRESS,
  type AiEnvelopeKind,
  type AiRegistration,
  tokenHash,
} from '../protocol/ai-session.js';
import { type Envelope, EnvelopeSchema } from '../protocol/control.js';
import type { Logger } from '../util/log.js';
import type { Cluster } from './cluster.js';
import type { AgentConnection } from './connection.js';
import { decodeSegment, presentedKey } from './http-api.js';
import { assetFile, sendAsset } from './page-assets.js';
import type { Store } from './store/store.js';

/** Viewers of one session: enough for a few devices, bounded so one link cannot fan out without end. */
export const MAX_VIEWERS = 8;
/** A viewer this far behind is dropped; it reconnects and the agent replays its screen. */
export const MAX_VIEWER_BACKLOG_BYTES = 1024 * 1024;
/** Revoked token hashes are kept this long past their expiry, so a redialling agent cannot re-register. */
const SWEEP_MS = 2_000;

interface Session {
  account: string;
  agentId: string;
  conn: AgentConnection;
  reg: AiRegistration;
  viewers: Map<string, WebSocket>;
  nextViewer: number;
}

export interface AiSessionsOptions {
  cluster: Cluster;
  store: Store;
  logger: Logger;
  /** `--capture-envelopes`: what the relay sees of each frame it forwards. */
  capture?: (env: Envelope) => void;
}

const require = createRequire(import.meta.url);
const ASSETS: Record<string, { file: string; type: string }> = {
  'xterm.js': { file: require.resolve('@xterm/xterm/lib/xterm.js'), type: 'text/javascript' },
  'xterm.css': { file: require.resolve('@xterm/xterm/css/xterm.css'), type: 'text/css' },
  'addon-fit.js': { file: require.resolve('@xterm/addon-fit/lib/addon-fit.js'), type: 'text/javascript' },
  'page.js': { file: assetFile('ai/page.js'), type: 'text/javascript' },
  'page.css': { file: assetFile('ai/page.css'), type: 'text/css' },
  'link-crypto.js': { file: assetFile('common/link-crypto.js'), type: 'text/javascript' },
};
const PAGE_FILE = assetFile('ai/index.html');

const sessionKey = (account: string, agentId: string) => `${account}\u0000${agentId}`;

export class AiSessions {
  readonly #opts: AiSessionsOptions;
  readonly #log: Logger;
  readonly #byAgent = new Map<string, Session>();
  readonly #byToken = new Map<string, Session>();
  /** Token hash → when it may be forgotten (its expiry). */
  readonly #revoked = new Map<string, number>();
  readonly #wss = new WebSocketServer({ noServer: true, maxPayload: AI_MAX_FRAME_BYTES });
  readonly #sweep: NodeJS.Timeout;

  constructor(opts: AiSessionsOptions) {
    this.#opts = opts;
    this.#log = opts.logger;
    this.#sweep = setInterval(() => this.#sweepOnce(), SWEEP_MS);
    this.#sweep.unref();
  }

  /** An envelope on {@link AI_CHANNEL} from an agent held here. */
  fromAgent(conn: AgentConnection, env: Envelope): void {
    const { account, agentId } = conn.identity;
    const kind = env.kind as AiEnvelopeKind;
    this.#opts.capture?.({ ...env, from: agentId });
    if (kind === 'register' && env.to === AI_RELAY_ADDRESS) return this.#register(conn, env.payload);
    const s = this.#byAgent.get(sessionKey(account, agentId));
    if (!s || s.conn !== conn) return;
    if (kind === 'end') return this.#end(s, 1000, 'session ended');
    if (kind !== 'frame') return;
    if (env.to === AI_VIEWERS_ADDRESS) for (const ws of s.viewers.values()) this.#send(ws, env.payload);
    else {
      const ws = s.viewers.get(env.to);
      if (ws) this.#send(ws, env.payload);
    }
  }

  #register(conn: AgentConnection, payload: Uint8Array): void {
    const { account, agentId } = conn.identity;
    let reg: AiRegistration;
    try {
      reg = JSON.parse(Buffer.from(payload).toString('utf8')) as AiRegistration;
      if (!/^[0-9a-f]{64}$/.test(reg.token_sha256) || typeof reg.expires_at !== 'number')
        throw new Error('bad fields');
    } catch {
      this.#log.warn('ai: malformed register envelope', { agent: agentId });
      return;
    }
    if (this.#revoked.has(reg.token_sha256)) return this.#tellAgent(conn, 'revoked');
    const key = sessionKey(account, agentId);
    const old = this.#byAgent.get(key);
    // A redial of the same session keeps its viewers; a new session (new key) ends the old one's.
    if (old && old.reg.token_sha256 !== reg.token_sha256) this.#end(old, 4001, 'session replaced');
    const kept = old && old.reg.token_sha256 === reg.token_sha256 ? old : undefined;
    const s: Session = kept ?? { account, agentId, conn, reg, viewers: new Map(), nextViewer: 1 };
    s.conn = conn;
    s.reg = { token_sha256: reg.token_sha256, expires_at: reg.expires_at, read_only: !!reg.read_only };
    this.#byAgent.set(key, s);
    this.#byToken.set(reg.token_sha256, s);
  }

  /** Handles `/ai/…` and `/api/v1/ai/…`; false for any other path. */
  handle(req: IncomingMessage, res: ServerResponse): boolean {
    const path = new URL(req.url ?? '/', 'http://relay').pathname;
    if (req.method === 'GET' && path.startsWith('/ai/_assets/')) {
      const asset = ASSETS[path.slice('/ai/_assets/'.length)];
      if (!asset) return this.#json(res, 404, 'not_found', `no asset ${path}`);
      sendAsset(res, asset.file, asset.type, 3600);
      return true;
    }
    if (req.method === 'GET' && /^\/ai\/[^/]+\/?$/.test(path)) {
      sendAsset(res, PAGE_FILE, 'text/html; charset=utf-8');
      return true;
    }
    const m = /^\/api\/v1\/ai(?:\/([^/]+))?\/revoke$/.exec(path);
    if (req.method === 'POST' && m) {
      const agentId = m[1] === undefined ? undefined : decodeSegment(m[1]);
      if (m[1] !== undefined && agentId === undefined)
        return this.#json(res, 400, 'invalid_argument', `malformed escape in ${path.slice(0, 200)}`);
      void this.#revoke(req, res, agentId);
      return true;
    }
    return false;
  }

  /** `nfltr ai revoke [ID]`: ends the account's link(s) now; the agent is told and ends its session. */
  async #revoke(req: IncomingMessage, res: ServerResponse, agentId: string | undefined): Promise<void> {
    const account = await this.#account(req);
    if (!account) return void this.#json(res, 401, 'unauthenticated', 'missing or unknown API key');
    const ended: string[] = [];
    for (const s of [...this.#byAgent.values()]) {
      if (s.account !== account || (agentId && s.agentId !== agentId)) continue;
      this.#revoked.set(s.reg.token_sha256, s.reg.expires_at);
      this.#tellAgent(s.conn, 'revoked');
      this.#end(s, 4403, 'link revoked');
      ended.push(s.agentId);
    }
    if (agentId && ended.length === 0)
      return void this.#json(res, 404, 'not_found', `no nfltr ai session ${agentId} in this account`);
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(`${JSON.stringify({ revoked: ended })}\n`);
  }

  /** The viewers' WebSocket; false for any other upgrade. */
  upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): boolean {
    const url = new URL(req.url ?? '/', 'http://relay');
    const m = /^\/ai\/([^/]+)\/ws$/.exec(url.pathname);
    if (!m) return false;
    const refuse = (status: number, message: string) => {
      socket.end(
        `HTTP/1.1 ${status} ${message}\r\ncontent-type: text/plain\r\nconnection: close\r\n\r\n${message}\n`,
      );
    };
    const agentId = decodeSegment(m[1]!);
    if (agentId === undefined) {
      refuse(400, 'malformed escape in the agent id');
      return true;
    }
    const token = url.searchParams.get('t');
    const found = async (): Promise<Session | string> => {
      if (token) {
        const h = tokenHash(token);
        if (this.#revoked.has(h)) return 'link revoked';
        const s = this.#byToken.get(h);
        return s && s.agentId === agentId ? s : 'unknown or ended link';
      }
      const account = await this.#account(req, url.searchParams.get('key') ?? undefined);
      if (!account) return 'send the link token (?t=) or an API key of the account';
      return (
        this.#byAgent.get(sessionKey(account, agentId)) ?? `no nfltr ai session ${agentId} in this account`
      );
    };
    found().then(
      (s) => {
        if (typeof s === 'string') return refuse(403, s);
        if (Date.now() >= s.reg.expires_at) return refuse(410, 'link expired');
        if (s.conn.closed) return refuse(503, 'the nfltr ai process is not connected');
        if (s.viewers.size >= MAX_VIEWERS) return refuse(429, `session has ${MAX_VIEWERS} viewers already`);
        this.#wss.handleUpgrade(req, socket, head, (ws) => this.#join(s, ws));
      },
      () => refuse(500, 'internal relay error'),
    );
    return true;
  }

  #join(s: Session, ws: WebSocket): void {
    const id = `v${s.nextViewer++}`;
    s.viewers.set(id, ws);
    this.#toAgent(s, id, 'join');
    ws.on('message', (data, isBinary) => {
      if (!isBinary) return ws.close(1003, 'binary frames only');
      this.#toAgent(s, id, 'frame', data as Buffer);
    });
    ws.on('close', () => {
      if (s.viewers.get(id) !== ws) return;
      s.viewers.delete(id);
      this.#toAgent(s, id, 'leave');
    });
    ws.on('error', () => ws.terminate());
  }

  #toAgent(s: Session, from: string, kind: AiEnvelopeKind, payload: Uint8Array = new Uint8Array()): void {
    const env = create(EnvelopeSchema, { to: s.agentId, from, channel: AI_CHANNEL, kind, payload });
    this.#opts.capture?.(env);
    const dropped = s.conn.enqueue(env);
    if (dropped) s.viewers.get(from)?.close(1013, `agent not reading (${dropped})`);
  }

  #tellAgent(conn: AgentConnection, kind: AiEnvelopeKind): void {
    conn.enqueue(
      create(EnvelopeSchema, {
        to: conn.identity.agentId,
        from: AI_RELAY_ADDRESS,
        channel: AI_CHANNEL,
        kind,
      }),
    );
  }

  #send(ws: WebSocket, payload: Uint8Array): void {
    if (ws.bufferedAmount > MAX_VIEWER_BACKLOG_BYTES) return void ws.terminate();
    ws.send(payload, { binary: true });
  }

  #end(s: Session, code: number, reason: string): void {
    for (const ws of s.viewers.values()) ws.close(code, reason);
    s.viewers.clear();
    const key = sessionKey(s.account, s.agentId);
    if (this.#byAgent.get(key) === s) this.#byAgent.delete(key);
    if (this.#byToken.get(s.reg.token_sha256) === s) this.#byToken.delete(s.reg.token_sha256);
  }

  /** Expired links end; viewers of an agent gone for good are closed (a redial re-registers in time). */
  #sweepOnce(): void {
    const now = Date.now();
    for (const s of [...this.#byAgent.values()]) {
      if (now >= s.reg.expires_at) this.#end(s, 4410, 'link expired');
      else if (s.conn.closed && this.#opts.cluster.local.lookup(s.account, s.agentId) === undefined)
        for (const ws of s.viewers.values()) ws.close(4503, 'the nfltr ai process disconnected');
    }
    for (const [h, until] of this.#revoked) if (until <= now) this.#revoked.delete(h);
  }

  /** The account of the API key in the headers, or in `?key=` where a browser cannot set headers. */
  async #account(req: IncomingMessage, queryKey?: string): Promise<string | undefined> {
    const key = presentedKey(req) ?? queryKey;
    if (!key) return undefined;
    const auth = await this.#opts.store.authenticate(key);
    return auth.ok ? auth.account : undefined;
  }

  #json(res: ServerResponse, status: number, code: string, message: string): true {
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(`${JSON.stringify({ error: { code, message } })}\n`);
    return true;
  }

  close(): void {
    clearInterval(this.#sweep);
    for (const s of [...this.#byAgent.values()]) this.#end(s, 1001, 'relay shutting down');
    this.#wss.close();
  }
}
