/**
 * @module Envelopes for an agent that is reconnecting are held for a short window instead of failing:
 * a relay restart or a network blip should not fail a dispatch or a resume. An agent counts as
 * reconnecting when it left less than a window ago, or when the relay itself started less than a
 * window ago (presence is still being rebuilt).
 */
import { type Envelope, envelopeWireSize } from '../protocol/control.js';
import { type Accounting, itemCost } from './limits.js';

interface Held {
  env: Envelope;
  cost: number;
  /** Reports the envelope undeliverable to its sender once the window passes. */
  expire: () => void;
}

/**
 * `held`: the envelope waits for its agent; `full`: it would be held, but the account's hold budget
 * (`--hold-bytes`) or the agent's count is spent, so it is dropped; undefined: not held, report it now.
 */
export type HoldOutcome = 'held' | 'full' | undefined;

const keyOf = (account: string, agentId: string) => `${account}\u0000${agentId}`;

export class HoldQueue {
  readonly #windowMs: number;
  readonly #maxEnvelopes: number;
  readonly #startedAt = Date.now();
  readonly #goneAt = new Map<string, number>();
  readonly #held = new Map<string, { items: Held[]; timer: NodeJS.Timeout }>();
  readonly #accounting: Accounting;

  constructor(opts: { windowMs: number; accounting: Accounting; maxEnvelopesPerAgent?: number }) {
    this.#windowMs = opts.windowMs;
    this.#accounting = opts.accounting;
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

  /** Holds the envelope if its destination is reconnecting. */
  hold(account: string, env: Envelope, expire: () => void): HoldOutcome {
    if (this.#windowMs <= 0) return undefined;
    const key = keyOf(account, env.to);
    const now = Date.now();
    const gone = this.#goneAt.get(key);
    const reconnecting =
      now - this.#startedAt < this.#windowMs || (gone !== undefined && now - gone < this.#windowMs);
    if (!reconnecting) return undefined;
    let entry = this.#held.get(key);
    if (!entry) {
      const timer = setTimeout(() => {
        this.#held.delete(key);
        for (const h of entry!.items) {
          this.#accounting.releaseHold(account, h.cost);
          this.#accounting.dropped(account, 'hold_expired');
          h.expire();
        }
      }, this.#windowMs);
      timer.unref();
      entry = { items: [], timer };
      this.#held.set(key, entry);
    }
    return this.#push(account, entry.items, env, expire);
  }

  /**
   * Adds to what is already held for the envelope's destination, so later envelopes stay behind
   * earlier ones; undefined when nothing is held for it.
   */
  append(account: string, env: Envelope, expire: () => void): HoldOutcome {
    if (this.#held.size === 0) return undefined;
    const entry = this.#held.get(keyOf(account, env.to));
    return entry && this.#push(account, entry.items, env, expire);
  }

  #push(account: string, items: Held[], env: Envelope, expire: () => void): HoldOutcome {
    const cost = itemCost(envelopeWireSize(env));
    if (items.length >= this.#maxEnvelopes || !this.#accounting.reserveHold(account, cost)) {
      this.#accounting.dropped(account, 'hold_full');
      return 'full';
    }
    items.push({ env, cost, expire });
    return 'held';
  }

  /** The agent is back: returns what was held for it, in order. */
  release(account: string, agentId: string): Envelope[] {
    const key = keyOf(account, agentId);
    this.#goneAt.delete(key);
    const entry = this.#held.get(key);
    if (!entry) return [];
    clearTimeout(entry.timer);
    this.#held.delete(key);
    for (const h of entry.items) this.#accounting.releaseHold(account, h.cost);
    return entry.items.map((h) => h.env);
  }
}
