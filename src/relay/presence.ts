/**
 * @module Who is connected, per account. An agent id is unique within its account.
 */
import type { AgentConnection } from './connection.js';

export type RegisterResult =
  | { ok: true; replaced?: AgentConnection }
  | { ok: false; holder: AgentConnection };

export class Presence {
  readonly #byAccount = new Map<string, Map<string, AgentConnection>>();

  /** Adds a connection; a live id is refused unless the newcomer presents the holder's session token. */
  register(conn: AgentConnection): RegisterResult {
    const { account, agentId, sessionToken } = conn.identity;
    let agents = this.#byAccount.get(account);
    if (!agents) {
      agents = new Map();
      this.#byAccount.set(account, agents);
    }
    const holder = agents.get(agentId);
    if (holder && !holder.closed && holder.identity.sessionToken !== sessionToken)
      return { ok: false, holder };
    agents.set(agentId, conn);
    return holder && !holder.closed ? { ok: true, replaced: holder } : { ok: true };
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

  all(): AgentConnection[] {
    return [...this.#byAccount.values()].flatMap((m) => [...m.values()]);
  }

  get size(): number {
    let n = 0;
    for (const m of this.#byAccount.values()) n += m.size;
    return n;
  }
}
