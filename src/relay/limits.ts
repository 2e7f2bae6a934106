/**
 * @module The relay's memory, accounted: what one account may have buffered on this replica (envelopes
 * queued for its agents and frames written to their streams but not yet read, plus envelopes held for
 * its reconnecting agents), and why anything was dropped. A relay never buffers without a bound; when a
 * bound is reached the envelope or frame is dropped, the drop is counted under a typed reason, and the
 * party that caused it is told (a DeliveryError to the sender, or its own stream ended with a status).
 */

/**
 * Why the relay dropped something. Envelope drops are reported to the sender as a DeliveryError;
 * `control_backlog` ends the stream of the agent that is not reading.
 */
export type DropReason =
  /** The destination agent's buffer (`--agent-buffer`) is full: it reads slower than it is sent to. */
  | 'agent_buffer_full'
  /** The account's buffer on this replica (`--account-buffer`) is full. */
  | 'account_buffer_full'
  /** An agent did not read its own stream: delivery and frame errors piled up (`--control-backlog`). */
  | 'control_backlog'
  /** The hold queue for a reconnecting agent (`--hold-bytes`) is full. */
  | 'hold_full'
  /** A held envelope's agent did not come back within `--hold-window`. */
  | 'hold_expired'
  /** No agent with that id is connected under the account. */
  | 'peer_not_found'
  /** The sending stream was closed (revoked, replaced) while its frames were being read. */
  | 'sender_closed';

/**
 * What one buffered item costs at least, whatever its size: a queued frame or envelope is also a few
 * objects on the heap, so a flood of tiny frames is bounded too.
 */
export const MIN_ITEM_COST = 256;

export const itemCost = (bytes: number): number => Math.max(bytes, MIN_ITEM_COST);

export interface AccountLimits {
  /** Bytes one account may have buffered on this replica: queued envelopes and unread frames. */
  bufferBytes: number;
  /** Bytes one account may have held for its reconnecting agents. */
  holdBytes: number;
}

interface AccountUse {
  buffered: number;
  held: number;
  drops: Partial<Record<DropReason, number>>;
}

export interface AccountStats {
  buffered_bytes: number;
  held_bytes: number;
  drops: Partial<Record<DropReason, number>>;
}

/** A drain from at least this many buffered bytes (all accounts) counts as one for {@link Accounting}'s `onDrained`. */
const DRAINED_FROM_BYTES = 32 * 1024 * 1024;

/** Byte budgets and drop counters per account. The counters live as long as the relay. */
export class Accounting {
  readonly limits: AccountLimits;
  readonly #accounts = new Map<string, AccountUse>();
  readonly #totals: Partial<Record<DropReason, number>> = {};
  readonly #onDrained: (() => void) | undefined;
  /** Buffered and held bytes, all accounts; and their peak since the last drain. */
  #total = 0;
  #peak = 0;

  /**
   * `onDrained` is called when what is buffered falls to a quarter of a peak of at least 32 MiB: an
   * offender has left, and the memory it made the relay hold can be given back.
   */
  constructor(limits: AccountLimits, onDrained?: () => void) {
    this.limits = limits;
    this.#onDrained = onDrained;
  }

  #grew(bytes: number): void {
    this.#total += bytes;
    if (this.#total > this.#peak) this.#peak = this.#total;
  }

  #shrank(bytes: number): void {
    this.#total = Math.max(0, this.#total - bytes);
    if (this.#peak >= DRAINED_FROM_BYTES && this.#total <= this.#peak / 4) {
      this.#peak = this.#total;
      this.#onDrained?.();
    }
  }

  #use(account: string): AccountUse {
    let use = this.#accounts.get(account);
    if (!use) {
      use = { buffered: 0, held: 0, drops: {} };
      this.#accounts.set(account, use);
    }
    return use;
  }

  /** Reserves `bytes` of the account's buffer; false when that would pass `--account-buffer`. */
  reserve(account: string, bytes: number): boolean {
    const use = this.#use(account);
    if (use.buffered + bytes > this.limits.bufferBytes) return false;
    use.buffered += bytes;
    this.#grew(bytes);
    return true;
  }

  release(account: string, bytes: number): void {
    const use = this.#accounts.get(account);
    if (!use) return;
    const freed = Math.min(use.buffered, bytes);
    use.buffered -= freed;
    this.#shrank(freed);
  }

  /** Reserves `bytes` of the account's hold budget; false when that would pass `--hold-bytes`. */
  reserveHold(account: string, bytes: number): boolean {
    const use = this.#use(account);
    if (use.held + bytes > this.limits.holdBytes) return false;
    use.held += bytes;
    this.#grew(bytes);
    return true;
  }

  releaseHold(account: string, bytes: number): void {
    const use = this.#accounts.get(account);
    if (!use) return;
    const freed = Math.min(use.held, bytes);
    use.held -= freed;
    this.#shrank(freed);
  }

  /** Counts a drop, for the account and for the relay. */
  dropped(account: string, reason: DropReason, count = 1): void {
    const use = this.#use(account);
    use.drops[reason] = (use.drops[reason] ?? 0) + count;
    this.#totals[reason] = (this.#totals[reason] ?? 0) + count;
  }

  stats(account: string): AccountStats {
    const use = this.#accounts.get(account);
    return { buffered_bytes: use?.buffered ?? 0, held_bytes: use?.held ?? 0, drops: { ...use?.drops } };
  }

  /** Drops on this replica, all accounts together. */
  totals(): Partial<Record<DropReason, number>> {
    return { ...this.#totals };
  }
}
