/**
 * @module Who is connected to this replica, per account. An agent id is unique within its account;
 * the store decides which stream holds it (see `claimPresence`).
 */
import type { AgentConnection } from './connection.js';

export type RegisterResult =
  | { ok: true; replaced?: AgentConnection }
  | { ok: false; holder: AgentConnection };

export class Presence {
  readonly #byAccount = new Map<string, Map<string, AgentConnection>>();

  /**
   * Adds a connection whose claim the store granted. A holder with a later claim (larger epoch) wins;
   * otherwise the newcomer replaces it and the caller closes the one returned.
   */
  register(conn: AgentConnection): RegisterResult {
    const { account, agentId } = conn.identity;
    let agents = this.#byAccount.get(account);
    if (!agents) {
      agents = new Map();
      this.#byAccount.set(account, agents);
    }
    const holder = agents.get(agentId);
    if (holder && holder !== conn && !holder.closed && holder.epoch > conn.epoch)
      return { ok: false, holder };
    agents.set(agentId, conn);
    return holder && holder !== conn && !holder.closed ? { ok: true, replaced: holder } : { ok: true };
  }

  /** Removes a connection if it is still the one registered under its id. */
  remove(conn: AgentConnection): boolean {
    const agents = this.#byAccount.get(conn.identity.account);
    if (agents?.get(conn.identity.agentId) !== conn) return false;
    agents.delete(conn.identity.agentId);
    if (agents.size === 0) this.#byAccount.delete(conn.identity.account);
    return true;
  }

  lookup(account: string, agentId: string): AgentConnection | undefined {
    return this.#byAccount.get(account)?.get(agentId);
  }

  list(account: string): AgentConnection[] {
    return [...(this.#byAccount.get(account)?.values() ?? [])];
  }

  /** How many agents of the account are held here, without copying them. */
  count(account: string): number {
    return this.#byAccount.get(account)?.size ?? 0;
  }

  all(): AgentConnection[] {
    return [...this.#byAccount.values()].flatMap((m) => [...m.values()]);
  }

  get size(): number {
    let n = 0;
    for (const m of this.#byAccount.values()) n += m.size;
    return n;
  }
}
