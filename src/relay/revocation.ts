/**
 * @module Revocation that holds before `nfltr keys revoke` returns. Every authenticated stream is
 * registered under its API key. The replica polls the store's revocation count (one small query);
 * when it grows, it ends the streams of the revoked keys and only then confirms the new count in the
 * store. `keys revoke` waits until every live replica has confirmed, so once it returns no stream of
 * the key is open and no envelope of it is routed, on one relay or on many.
 */
import type { Logger } from '../util/log.js';
import type { Store } from './store/store.js';

/** Ends one stream with UNAUTHENTICATED and this message. */
type Closer = (details: string) => void;

export class Revocations {
  readonly #streams = new Map<string, Set<Closer>>();
  readonly #store: Store;
  readonly #relayId: string;
  readonly #log: Logger;
  readonly #liveMs: number;
  /** Revocations this replica has acted on; -1 before the first poll. */
  #seen = -1;
  #confirmedAt = 0;
  #confirmed = -1;
  /** Bumped whenever revocations were acted on: a stream authenticated across it re-checks its key. */
  generation = 0;

  constructor(opts: { store: Store; relayId: string; logger: Logger; pollMs: number }) {
    this.#store = opts.store;
    this.#relayId = opts.relayId;
    this.#log = opts.logger;
    // Long enough to ride out a slow poll, short enough that a dead replica delays `keys revoke` little.
    this.#liveMs = Math.max(5_000, 8 * opts.pollMs);
  }

  /** Registers an authenticated stream; returns its unregister function. */
  add(keyId: string, close: Closer): () => void {
    let set = this.#streams.get(keyId);
    if (!set) {
      set = new Set();
      this.#streams.set(keyId, set);
    }
    set.add(close);
    return () => {
      const s = this.#streams.get(keyId);
      if (!s?.delete(close)) return;
      if (s.size === 0) this.#streams.delete(keyId);
    };
  }

  /** True when `keyId` is revoked now (a stream authenticated while a revocation was being acted on). */
  async isRevoked(keyId: string): Promise<boolean> {
    return (await this.#store.revokedAmong([keyId])).length > 0;
  }

  /** One poll: act on new revocations, then confirm them (and that this replica is alive). */
  async poll(): Promise<void> {
    const count = await this.#store.revocationCount();
    if (count !== this.#seen) {
      // Asks about the few keys held, not every agent: an idle fleet's poll stays one small query.
      const revoked = await this.#store.revokedAmong([...this.#streams.keys()]);
      for (const keyId of revoked) {
        const closers = [...(this.#streams.get(keyId) ?? [])];
        this.#streams.delete(keyId);
        this.#log.info('closing streams of revoked key', { key: keyId, streams: closers.length });
        for (const close of closers) close(`API key ${keyId} was revoked`);
      }
      this.#seen = count;
      this.generation++;
    }
    const now = Date.now();
    if (this.#confirmed !== this.#seen || now - this.#confirmedAt > this.#liveMs / 4) {
      await this.#store.confirmRevocations(this.#relayId, this.#seen, this.#liveMs);
      this.#confirmed = this.#seen;
      this.#confirmedAt = now;
    }
  }
}

/**
 * Waits until every live replica has acted on `revocations` revocations; returns the replicas that
 * have not within `timeoutMs` (dead or stalled ones stop counting once their row goes stale).
 */
export async function awaitRevocation(
  store: Store,
  revocations: number,
  timeoutMs: number,
): Promise<string[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const pending = await store.unconfirmedReplicas(revocations);
    if (pending.length === 0 || Date.now() >= deadline) return pending;
    await new Promise((r) => setTimeout(r, 50));
  }
}
