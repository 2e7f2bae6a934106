/**
 * @module This replica's part of the relay: the agents it holds (local presence), its view of the
 * agents other replicas hold, routing between them over the bus, and presence in the store. A relay
 * alone is a cluster of one on the in-process bus, with the same code path, except that it keeps
 * presence in memory only: nobody else could read the rows, and connects stay free of store writes.
 *
 * Routing reads local presence first: an envelope for an agent held here is queued on its stream with
 * no bus involved. Anything else goes to the bus, which answers "nobody holds it" (NATS: no
 * responders). That answer becomes the hold window when the agent is known to be redialling, or
 * PEER_NOT_FOUND, exactly as on one relay.
 *
 * Agent ids are claimed in the store, atomically across replicas: a live holder with another session
 * token or API key is refused (ALREADY_EXISTS); the same token under the same key takes over, wherever
 * the old stream is. A live agent is never displaced by another key. The
 * claim's epoch orders everything after: the replica holding an older claim closes its stream when
 * it hears of a newer one.
 */
import { createHash } from 'node:crypto';
import { create } from '@bufbuild/protobuf';
import * as grpc from '@grpc/grpc-js';
import { agentKindName, DeliveryErrorSchema, type Envelope, ErrorCode } from '../protocol/control.js';
import type { HttpFrame } from '../protocol/http-proxy.js';
import type { Logger } from '../util/log.js';
import { type Bus, type BusHandlers, notFoundMessage, type PresenceEvent, type Refusal } from './bus/bus.js';
import type { AgentConnection } from './connection.js';
import type { HoldQueue } from './hold.js';
import type { Accounting, DropReason } from './limits.js';
import { Presence } from './presence.js';
import { RemotePresence } from './remote-presence.js';
import type { Store } from './store/store.js';

export interface ClusterOptions {
  relayId: string;
  store: Store;
  bus: Bus;
  hold: HoldQueue;
  accounting: Accounting;
  logger: Logger;
  /** A presence row (or a replica) not refreshed for this long is dead. */
  presenceTtlMs: number;
  /** Called with every envelope this replica routes, for `--capture-envelopes`. */
  onRouted?: (env: Envelope) => void;
}

/** One agent as `GET /api/v1/peers` shows it, wherever it is held. */
export interface PeerView {
  agentId: string;
  kind: string;
  labels: Record<string, string>;
  connectedSince: Date;
  lastSeen: Date;
  relayId: string;
}

export type AdmitResult =
  | { ok: true; replaced?: AgentConnection }
  | { ok: false; code: grpc.status; message: string };

/** What the sender of an envelope dropped for `reason` is told. */
function refusalFor(reason: DropReason, to: string, accounting: Accounting): Refusal {
  switch (reason) {
    case 'agent_buffer_full':
      return {
        code: ErrorCode.PEER_BUSY,
        message: `agent ${to} is not reading fast enough; envelope dropped`,
      };
    case 'account_buffer_full':
      return {
        code: ErrorCode.PEER_BUSY,
        message: `this account has ${accounting.limits.bufferBytes} bytes buffered on the relay for agents that read slowly (limit --account-buffer); envelope for ${to} dropped`,
      };
    case 'hold_full':
      return {
        code: ErrorCode.PEER_BUSY,
        message: `the relay already holds what it may for this account's reconnecting agents (limit --hold-bytes); envelope for ${to} dropped`,
      };
    default:
      return { code: ErrorCode.PEER_NOT_FOUND, message: notFoundMessage(to) };
  }
}

const alreadyConnected = (agentId: string, since: Date, relayId: string) =>
  `agent id ${agentId} is already connected under this account (since ${since.toISOString()}, on relay ${relayId}); give this agent another --name or stop the other one`;

export class Cluster {
  readonly relayId: string;
  readonly local = new Presence();
  readonly remote = new RemotePresence();
  readonly #opts: ClusterOptions;
  readonly #log: Logger;
  readonly #store: Store;
  readonly #bus: Bus;
  readonly #hold: HoldQueue;
  readonly #accounting: Accounting;
  /** Connections whose labels changed since the last heartbeat wrote them to the store. */
  readonly #dirty = new Set<AgentConnection>();
  #beats = 0;
  /** Claim numbers when alone, where the store keeps no presence. */
  #localEpoch = 0;
  /** Where `/browse` frames from other replicas go (the relay's Browse). */
  http: Pick<BusHandlers, 'httpIn' | 'httpBack'> | undefined;

  constructor(opts: ClusterOptions) {
    this.#opts = opts;
    this.relayId = opts.relayId;
    this.#log = opts.logger;
    this.#store = opts.store;
    this.#bus = opts.bus;
    this.#hold = opts.hold;
    this.#accounting = opts.accounting;
  }

  /** Connects the bus and loads presence: of nobody when alone (leftovers are dead), else the store's. */
  async start(): Promise<void> {
    await this.#bus.start(this.relayId, {
      envelope: (account, agentId, env) => this.#fromBus(account, agentId, env),
      undeliverable: (account, env, refusal) => this.#undeliverable(account, env, refusal),
      presence: (ev) => this.#onPresence(ev),
      resync: () => void this.resync(),
      httpIn: (account, agentId, origin, frame) => this.http?.httpIn(account, agentId, origin, frame),
      httpBack: (frame) => this.http?.httpBack(frame),
    });
    if (this.#bus.shared) await this.resync();
    else await this.#store.expirePresence(0);
  }

  /** A `/browse` frame for an agent another replica holds (see {@link Bus.forwardHttp}). */
  forwardHttp(account: string, agentId: string, frame: HttpFrame): void {
    this.#bus.forwardHttp(account, agentId, frame);
  }

  /** Answers a `/browse` frame another replica forwarded. */
  answerHttp(origin: string, frame: HttpFrame): void {
    this.#bus.answerHttp(origin, frame);
  }

  /** Reloads the view of other replicas' agents from the store. */
  async resync(): Promise<void> {
    const startedAt = Date.now();
    try {
      const rows = await this.#store.listPresence({ ttlMs: this.#opts.presenceTtlMs });
      this.remote.reload(
        rows.filter((r) => r.relayId !== this.relayId && !this.local.lookup(r.account, r.agentId)),
        startedAt,
      );
    } catch (err) {
      this.#log.warn('presence reload failed', { error: (err as Error).message });
    }
  }

  /**
   * Claims the agent id in the store, registers the stream here and subscribes to its envelopes.
   * `ended` says whether the stream went away meanwhile; the claim is then given back.
   */
  async admit(conn: AgentConnection, ended: () => boolean): Promise<AdmitResult> {
    const { account, agentId, sessionToken, keyId } = conn.identity;
    const live = this.local.lookup(account, agentId);
    // Only the holder itself (its session, under its key) takes over a live id; anyone else waits.
    if (
      live &&
      !live.closed &&
      (live.identity.sessionToken !== sessionToken || live.identity.keyId !== keyId)
    ) {
      return {
        ok: false,
        code: grpc.status.ALREADY_EXISTS,
        message: alreadyConnected(agentId, live.connectedAt, this.relayId),
      };
    }
    // Alone (in-process bus), no other replica can read presence rows: the check above is the whole
    // claim, and a relay alone pays no store round trip per connect.
    const claim = !this.#bus.shared
      ? { ok: true as const, epoch: ++this.#localEpoch }
      : await this.#store.claimPresence(
          {
            account,
            agentId,
            kind: agentKindName(conn.identity.kind) ?? 'unknown',
            labels: conn.labels,
            connectedSince: conn.connectedAt,
            relayId: this.relayId,
            // The key is in the hash: a session token seen under another key takes nothing over.
            sessionHash: createHash('sha256').update(`${keyId}\u0000${sessionToken}`).digest(),
          },
          this.#opts.presenceTtlMs,
        );
    if (!claim.ok) {
      const h = claim.holder;
      return {
        ok: false,
        code: grpc.status.ALREADY_EXISTS,
        message: alreadyConnected(agentId, h.connectedSince, h.relayId),
      };
    }
    conn.epoch = claim.epoch;
    const giveBack = (): AdmitResult => {
      this.#releaseRow(conn);
      return { ok: false, code: grpc.status.CANCELLED, message: 'stream ended while connecting' };
    };
    if (ended()) return giveBack();
    const reg = this.local.register(conn);
    if (!reg.ok) return giveBack();
    this.remote.remove(account, agentId);
    try {
      await this.#bus.subscribeAgent(account, agentId);
    } catch (err) {
      this.leave(conn);
      this.#log.error('bus subscription failed', { agent: agentId, error: (err as Error).message });
      return { ok: false, code: grpc.status.UNAVAILABLE, message: 'relay bus unavailable; redial' };
    }
    if (ended()) {
      this.leave(conn);
      return { ok: false, code: grpc.status.CANCELLED, message: 'stream ended while connecting' };
    }
    this.#bus.publish({
      type: 'connected',
      from: this.relayId,
      relayId: this.relayId,
      account,
      agentId,
      epoch: conn.epoch,
      kind: agentKindName(conn.identity.kind) ?? 'unknown',
      labels: conn.labels,
      connectedSince: conn.connectedAt.getTime(),
    });
    return reg.replaced ? { ok: true, replaced: reg.replaced } : { ok: true };
  }

  /**
   * The stream is going away: drops it from presence everywhere. False when it was no longer the
   * registered one (replaced by a newer stream of the same agent, here or on another replica).
   */
  leave(conn: AgentConnection): boolean {
    this.#dirty.delete(conn);
    if (!this.local.remove(conn)) return false;
    const { account, agentId } = conn.identity;
    this.#hold.markGone(account, agentId);
    this.#bus.unsubscribeAgent(account, agentId);
    this.#releaseRow(conn);
    this.#bus.publish({
      type: 'gone',
      from: this.relayId,
      relayId: this.relayId,
      account,
      agentId,
      epoch: conn.epoch,
    });
    return true;
  }

  #releaseRow(conn: AgentConnection): void {
    if (!this.#bus.shared) return;
    const { account, agentId } = conn.identity;
    this.#store.releasePresence(account, agentId, conn.epoch).catch((err: Error) => {
      this.#log.warn('presence release failed; the row expires instead', {
        agent: agentId,
        error: err.message,
      });
    });
  }

  labelsChanged(conn: AgentConnection): void {
    if (!this.#bus.shared || this.local.lookup(conn.identity.account, conn.identity.agentId) !== conn) return;
    this.#dirty.add(conn);
    this.#bus.publish({
      type: 'labels',
      from: this.relayId,
      relayId: this.relayId,
      account: conn.identity.account,
      agentId: conn.identity.agentId,
      epoch: conn.epoch,
      labels: conn.labels,
    });
  }

  /** Routes an envelope from an agent held here. The hot path: a map lookup and a queue push. */
  route(from: AgentConnection, env: Envelope): void {
    env.from = from.identity.agentId;
    const account = from.identity.account;
    const dest = this.local.lookup(account, env.to);
    if (dest !== undefined && !dest.closed) {
      this.#opts.onRouted?.(env);
      const dropped = dest.enqueue(env);
      if (dropped) this.#refuseTo(account, env, dropped);
      return;
    }
    this.#elsewhere(account, env);
  }

  /** An envelope for an agent not held here: behind what is held for it, or onto the bus. */
  #elsewhere(account: string, env: Envelope): void {
    const held = this.#hold.append(account, env, () => this.#refuseTo(account, env, 'hold_expired'));
    if (held === 'full') return this.#refuseTo(account, env, 'hold_full');
    if (held) return;
    if (this.#bus.shared) this.#opts.onRouted?.(env);
    this.#bus.deliver(account, env);
  }

  /** An envelope from another replica for an agent held here. */
  #fromBus(account: string, agentId: string, env: Envelope): Refusal | undefined {
    const dest = this.local.lookup(account, agentId);
    if (dest === undefined || dest.closed)
      return { code: ErrorCode.PEER_NOT_FOUND, message: notFoundMessage(agentId) };
    this.#opts.onRouted?.(env);
    const dropped = dest.enqueue(env);
    if (!dropped) return undefined;
    this.#accounting.dropped(account, dropped);
    return refusalFor(dropped, env.to, this.#accounting);
  }

  #undeliverable(account: string, env: Envelope, refusal: Refusal): void {
    if (refusal.code === ErrorCode.PEER_NOT_FOUND) {
      // The view still lists it: its replica died or it is moving. Treat it as redialling.
      if (this.remote.lookup(account, env.to)) this.#hold.markGone(account, env.to, true);
      const held = this.#hold.hold(account, env, () => this.#refuseTo(account, env, 'hold_expired'));
      if (held === 'full') return this.#refuseTo(account, env, 'hold_full');
      if (held) return;
      this.#accounting.dropped(account, 'peer_not_found');
    }
    this.#tell(account, env, refusal);
  }

  /** Tells the sender, if held here, why its envelope was dropped here; counts the drop. */
  #refuseTo(account: string, env: Envelope, reason: DropReason): void {
    // Expired and full holds are counted by the hold queue.
    if (reason !== 'hold_expired' && reason !== 'hold_full') this.#accounting.dropped(account, reason);
    this.#tell(account, env, refusalFor(reason, env.to, this.#accounting));
  }

  #tell(account: string, env: Envelope, refusal: Refusal): void {
    const sender = this.local.lookup(account, env.from);
    if (!sender || sender.closed) return;
    sender.sendControl({
      case: 'deliveryError',
      value: create(DeliveryErrorSchema, {
        to: env.to,
        channel: env.channel,
        seq: env.seq,
        kind: env.kind,
        code: refusal.code,
        message: refusal.message,
      }),
    });
  }

  #onPresence(ev: PresenceEvent): void {
    this.remote.heard(ev.from);
    switch (ev.type) {
      case 'connected': {
        const local = this.local.lookup(ev.account, ev.agentId);
        if (local && local.epoch >= ev.epoch) return; // we hold a later claim
        if (local) this.#movedAway(local, ev.relayId);
        this.remote.heard(ev.relayId);
        this.remote.upsert({
          account: ev.account,
          agentId: ev.agentId,
          kind: ev.kind,
          labels: ev.labels,
          connectedSince: new Date(ev.connectedSince),
          relayId: ev.relayId,
          epoch: ev.epoch,
        });
        // Envelopes held while it redialled go to wherever it is now.
        for (const env of this.#hold.release(ev.account, ev.agentId)) this.#bus.deliver(ev.account, env);
        return;
      }
      case 'labels':
        this.remote.setLabels(ev.account, ev.agentId, ev.epoch, ev.labels);
        return;
      case 'gone':
        if (this.remote.remove(ev.account, ev.agentId, ev.epoch)) this.#hold.markGone(ev.account, ev.agentId);
        return;
      case 'heartbeat':
        return;
      case 'goodbye':
        for (const p of this.remote.dropRelay(ev.from)) this.#hold.markGone(p.account, p.agentId);
        return;
    }
  }

  /** A newer claim of an agent held here was made on another replica: its stream here is stale. */
  #movedAway(conn: AgentConnection, to: string): void {
    const { account, agentId } = conn.identity;
    this.#dirty.delete(conn);
    if (!this.local.remove(conn)) return;
    this.#bus.unsubscribeAgent(account, agentId);
    this.#log.info('agent reconnected to another replica; old stream closed', {
      agent: agentId,
      account,
      to,
    });
    conn.close({
      code: grpc.status.ABORTED,
      details: `replaced by a newer connection of the same agent (relay ${to})`,
    });
  }

  /**
   * Refreshes this replica's rows, closes streams whose rows are gone, expires dead replicas' rows and
   * agents, and tells the others this replica is alive. The relay runs it every heartbeat interval.
   */
  async heartbeat(): Promise<void> {
    if (!this.#bus.shared) return;
    const held = this.local.all();
    const labels = [...this.#dirty].map((c) => ({
      account: c.identity.account,
      agentId: c.identity.agentId,
      epoch: c.epoch,
      labels: c.labels,
    }));
    this.#dirty.clear();
    this.#bus.publish({ type: 'heartbeat', from: this.relayId });
    const rows = await this.#store.heartbeatPresence(this.relayId, labels);
    const ours = new Set(rows.map((r) => `${r.account}\u0000${r.agentId}\u0000${r.epoch}`));
    for (const conn of held) {
      const { account, agentId } = conn.identity;
      if (ours.has(`${account}\u0000${agentId}\u0000${conn.epoch}`) || conn.closed) continue;
      if (this.local.lookup(account, agentId) !== conn) continue;
      // Another replica expired our row (we stalled past the TTL) or took the id over: redial.
      this.#log.warn('presence row lost; closing stream so the agent redials', { agent: agentId, account });
      this.leave(conn);
      conn.close({ code: grpc.status.UNAVAILABLE, details: 'relay lost this agent’s presence; redial' });
    }
    for (const r of await this.#store.expirePresence(this.#opts.presenceTtlMs)) {
      if (this.remote.remove(r.account, r.agentId, r.epoch)) this.#hold.markGone(r.account, r.agentId);
      this.#log.info('presence expired', { agent: r.agentId, account: r.account, relay: r.relayId });
      this.#bus.publish({
        type: 'gone',
        from: this.relayId,
        relayId: r.relayId,
        account: r.account,
        agentId: r.agentId,
        epoch: r.epoch,
      });
    }
    for (const p of this.remote.expireSilent(this.#opts.presenceTtlMs)) {
      this.#log.info('replica silent; dropping its agent', { agent: p.agentId, relay: p.relayId });
    }
    // The feed is best effort: reload from the store now and then to repair anything missed.
    if (this.#bus.shared && ++this.#beats % 6 === 0) await this.resync();
  }

  /** Every agent of the account, each once, with the replica holding it. */
  peers(account: string): PeerView[] {
    // A stream held here is vouched for now, as a remote one is by its replica's heartbeat: transport
    // keepalive drops a silent one within the keepalive timeout.
    const now = new Date();
    const out: PeerView[] = this.local.list(account).map((c) => ({
      agentId: c.identity.agentId,
      kind: agentKindName(c.identity.kind) ?? 'unknown',
      labels: c.labels,
      connectedSince: c.connectedAt,
      lastSeen: now,
      relayId: this.relayId,
    }));
    for (const p of this.remote.list(account)) {
      if (this.local.lookup(account, p.agentId)) continue;
      out.push({
        agentId: p.agentId,
        kind: p.kind,
        labels: p.labels,
        connectedSince: p.connectedSince,
        lastSeen: new Date(Math.max(this.remote.lastHeard(p.relayId), p.changedAt)),
        relayId: p.relayId,
      });
    }
    return out;
  }

  /**
   * How many agents of the account are held here and by other replicas, as {@link peers} would list
   * them, without building the list: a health poll must not cost a fleet-sized copy.
   */
  counts(account: string): { local: number; remote: number } {
    let remote = 0;
    for (const p of this.remote.list(account)) if (!this.local.lookup(account, p.agentId)) remote++;
    return { local: this.local.count(account), remote };
  }

  /** Shutting down: tells the other replicas at once and gives back every row. */
  async goodbye(conns: AgentConnection[]): Promise<void> {
    if (!this.#bus.shared) return;
    this.#bus.publish({ type: 'goodbye', from: this.relayId });
    await Promise.allSettled(
      conns.map((c) => this.#store.releasePresence(c.identity.account, c.identity.agentId, c.epoch)),
    );
  }
}
