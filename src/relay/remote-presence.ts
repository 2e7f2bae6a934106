/**
 * @module This replica's view of the agents other replicas hold, kept current by the bus's change
 * feed and reloaded from the store at start and after a bus outage. Every change carries the store's
 * claim epoch, so events arriving out of order never resurrect an agent or undo a takeover. A replica
 * not heard from (heartbeat or any event) for the presence TTL is presumed dead and its agents dropped.
 */
import type { PresenceRecord } from './store/store.js';

export interface RemotePeer {
  account: string;
  agentId: string;
  kind: string;
  labels: Record<string, string>;
  connectedSince: Date;
  relayId: string;
  epoch: number;
  /** Local time of the last change to this entry, to tell a reload which entries it may drop. */
  changedAt: number;
}

export class RemotePresence {
  readonly #byAccount = new Map<string, Map<string, RemotePeer>>();
  /** Local time each replica was last heard from. */
  readonly #heard = new Map<string, number>();

  heard(relayId: string, at = Date.now()): void {
    if ((this.#heard.get(relayId) ?? 0) < at) this.#heard.set(relayId, at);
  }

  /** When the holder of `peer` was last heard from: the remote peer's "last seen". */
  lastHeard(relayId: string): number {
    return this.#heard.get(relayId) ?? 0;
  }

  /** Adds or replaces an entry unless the view knows a later claim; true when applied. */
  upsert(peer: Omit<RemotePeer, 'changedAt'>): boolean {
    let agents = this.#byAccount.get(peer.account);
    const current = agents?.get(peer.agentId);
    if (current && current.epoch > peer.epoch) return false;
    if (!agents) {
      agents = new Map();
      this.#byAccount.set(peer.account, agents);
    }
    agents.set(peer.agentId, { ...peer, changedAt: Date.now() });
    return true;
  }

  setLabels(account: string, agentId: string, epoch: number, labels: Record<string, string>): boolean {
    const current = this.#byAccount.get(account)?.get(agentId);
    if (!current || current.epoch !== epoch) return false;
    current.labels = labels;
    current.changedAt = Date.now();
    return true;
  }

  /** Removes the entry if it is the claim `epoch` or an older one (any claim when epoch is omitted). */
  remove(account: string, agentId: string, epoch = Number.POSITIVE_INFINITY): RemotePeer | undefined {
    const agents = this.#byAccount.get(account);
    const current = agents?.get(agentId);
    if (!agents || !current || current.epoch > epoch) return undefined;
    agents.delete(agentId);
    if (agents.size === 0) this.#byAccount.delete(account);
    return current;
  }

  lookup(account: string, agentId: string): RemotePeer | undefined {
    return this.#byAccount.get(account)?.get(agentId);
  }

  list(account: string): RemotePeer[] {
    return [...(this.#byAccount.get(account)?.values() ?? [])];
  }

  get size(): number {
    let n = 0;
    for (const m of this.#byAccount.values()) n += m.size;
    return n;
  }

  /** Drops every agent of a replica (it said goodbye, or went silent). */
  dropRelay(relayId: string): RemotePeer[] {
    const dropped: RemotePeer[] = [];
    for (const [account, agents] of this.#byAccount) {
      for (const [id, p] of agents) {
        if (p.relayId !== relayId) continue;
        agents.delete(id);
        dropped.push(p);
      }
      if (agents.size === 0) this.#byAccount.delete(account);
    }
    this.#heard.delete(relayId);
    return dropped;
  }

  /** Drops the agents of every replica not heard from within `ttlMs`. */
  expireSilent(ttlMs: number, now = Date.now()): RemotePeer[] {
    const silent = new Set<string>();
    for (const agents of this.#byAccount.values())
      for (const p of agents.values()) if (now - this.lastHeard(p.relayId) > ttlMs) silent.add(p.relayId);
    return [...silent].flatMap((r) => this.dropRelay(r));
  }

  /**
   * Reloads from the store's rows (other replicas' only). Entries missing from the rows are dropped,
   * unless they changed after `startedAt`, when the query began: the bus may have told us first.
   */
  reload(rows: PresenceRecord[], startedAt: number): void {
    const now = Date.now();
    const seen = new Set<string>();
    for (const r of rows) {
      this.heard(r.relayId, now - r.ageMs);
      seen.add(`${r.account}\u0000${r.agentId}\u0000${r.epoch}`);
      const current = this.lookup(r.account, r.agentId);
      if (current && current.epoch >= r.epoch) continue;
      this.upsert({
        account: r.account,
        agentId: r.agentId,
        kind: r.kind,
        labels: r.labels,
        connectedSince: r.connectedSince,
        relayId: r.relayId,
        epoch: r.epoch,
      });
    }
    for (const [account, agents] of this.#byAccount) {
      for (const [id, p] of agents) {
        if (p.changedAt < startedAt && !seen.has(`${account}\u0000${id}\u0000${p.epoch}`)) agents.delete(id);
      }
      if (agents.size === 0) this.#byAccount.delete(account);
    }
  }
}
