/**
 * @module Envelopes for an agent that is reconnecting are held for a short window instead of failing:
 * a relay restart or a network blip should not fail a dispatch or a resume. An agent counts as
 * reconnecting when it left less than a window ago, or when the relay itself started less than a
 * window ago (presence is still being rebuilt).
 */
import type { Envelope } from '../protocol/control.js';

interface Held {
  env: Envelope;
  /** Reports the envelope undeliverable to its sender once the window passes. */
  expire: () => void;
}

const keyOf = (account: string, agentId: string) => `${account}\u0000${agentId}`;

export class HoldQueue {
  readonly #windowMs: number;
  readonly #maxEnvelopes: number;
  readonly #startedAt = Date.now();
  readonly #goneAt = new Map<string, number>();
  readonly #held = new Map<string, { items: Held[]; timer: NodeJS.Timeout }>();

  constructor(opts: { windowMs: number; maxEnvelopesPerAgent?: number }) {
    this.#windowMs = opts.windowMs;
    this.#maxEnvelopes = opts.maxEnvelopesPerAgent ?? 10_000;
  }

  /** The agent left; with `ifUnknown`, only when it was not already known to be gone. */
  markGone(account: string, agentId: string, ifUnknown = false): void {
    const now = Date.now();
    const key = keyOf(account, agentId);
    if (ifUnknown && this.#goneAt.has(key)) return;
    this.#goneAt.set(key, now);
    if (this.#goneAt.size > 100_000) {
      for (const [k, t] of this.#goneAt) if (now - t > this.#windowMs) this.#goneAt.delete(k);
    }
  }

  /** Holds the envelope if its destination is reconnecting; false means "report it now". */
  hold(account: string, env: Envelope, expire: () => void): boolean {
    if (this.#windowMs <= 0) return false;
    const key = keyOf(account, env.to);
    const now = Date.now();
    const gone = this.#goneAt.get(key);
    const reconnecting =
      now - this.#startedAt < this.#windowMs || (gone !== undefined && now - gone < this.#windowMs);
    if (!reconnecting) return false;
    let entry = this.#held.get(key);
    if (!entry) {
      const timer = setTimeout(() => {
        this.#held.delete(key);
        for (const h of entry!.items) h.expire();
      }, this.#windowMs);
      timer.unref();
      entry = { items: [], timer };
      this.#held.set(key, entry);
    }
    if (entry.items.length >= this.#maxEnvelopes) return false;
    entry.items.push({ env, expire });
    return true;
  }

  /**
   * Adds to what is already held for the envelope's destination, so later envelopes stay behind
   * earlier ones; false when nothing is held for it.
   */
  append(account: string, env: Envelope, expire: () => void): boolean {
    if (this.#held.size === 0) return false;
    const entry = this.#held.get(keyOf(account, env.to));
    if (!entry || entry.items.length >= this.#maxEnvelopes) return false;
    entry.items.push({ env, expire });
    return true;
  }

  /** The agent is back: returns what was held for it, in order. */
  release(account: string, agentId: string): Envelope[] {
    const key = keyOf(account, agentId);
    this.#goneAt.delete(key);
    const entry = this.#held.get(key);
    if (!entry) return [];
    clearTimeout(entry.timer);
    this.#held.delete(key);
    return entry.items.map((h) => h.env);
  }
}
