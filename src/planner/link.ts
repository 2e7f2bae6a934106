/**
 * @module The planner's link to the relay as its tools see it: wait a moment for a link that is
 * (re)dialling, then fail naming the address; and send errors turned into the planner's own.
 */
import type { AgentClient } from '../agent/index.js';
import { A2aError, AgentError } from '../agent/index.js';
import { PlannerError } from './errors.js';
import { failureError } from './task/index.js';

export class RelayLink {
  readonly #agent: AgentClient;
  readonly #servers: string[];
  readonly #waitMs: number;
  #closed = false;

  /** `servers` are named in errors; a call waits `waitMs` for a link that is dialling. */
  constructor(agent: AgentClient, servers: string[], waitMs = 3_000) {
    this.#agent = agent;
    this.#servers = servers;
    this.#waitMs = waitMs;
  }

  close(): void {
    this.#closed = true;
  }

  get closed(): boolean {
    return this.#closed;
  }

  problem(): string {
    const last = this.#agent.lastError;
    return `not connected to the relay at ${this.#servers.join(', ')}${last ? `: ${last}` : ''}`;
  }

  /**
   * A call that needs the relay while the link is (re)dialling waits for it a moment: an MCP client
   * calls right after the handshake, which is usually before the first dial is through. Then it fails,
   * naming the address redialled.
   */
  async require(): Promise<void> {
    if (this.#closed) throw new PlannerError('relay_unreachable', 'the planner is shutting down');
    if (!this.#agent.connected) await this.#within(this.#waitMs);
    if (!this.#agent.connected) {
      throw new PlannerError(
        'relay_unreachable',
        `relay unreachable: ${this.problem()}. nfltr mcp keeps redialling; retry in a few seconds`,
      );
    }
  }

  #within(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.#agent.off('status', onStatus);
        resolve();
      };
      const onStatus = (s: { type: string }) => {
        if (s.type === 'connected' || s.type === 'fatal' || s.type === 'closed') done();
      };
      const timer = setTimeout(done, ms);
      this.#agent.on('status', onStatus);
    });
  }

  /** A failed send to `agentId` as the planner's error. */
  sendError(err: Error, agentId: string): Error {
    if (err instanceof PlannerError) return err;
    if (err instanceof A2aError) {
      const f = failureError(agentId, err.code, err.message);
      return new PlannerError(f.code, f.message);
    }
    if (err instanceof AgentError) {
      return new PlannerError('relay_unreachable', `could not send to the relay: ${err.message}`);
    }
    return err;
  }
}
