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
  /** An agent did not read its own stream: pongs, delivery and frame errors piled up (`--control-backlog`). */
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

/** Byte budgets and drop counters per account. The counters live as long as the relay. */
export class Accounting {
  readonly limits: AccountLimits;
  readonly #accounts = new Map<string, AccountUse>();
  readonly #totals: Partial<Record<DropReason, number>> = {};

  constructor(limits: AccountLimits) {
    this.limits = limits;
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
    return true;
  }

  release(account: string, bytes: number): void {
    const use = this.#accounts.get(account);
    if (use) use.buffered = Math.max(0, use.buffered - bytes);
  }

  /** Reserves `bytes` of the account's hold budget; false when that would pass `--hold-bytes`. */
  reserveHold(account: string, bytes: number): boolean {
    const use = this.#use(account);
    if (use.held + bytes > this.limits.holdBytes) return false;
    use.held += bytes;
    return true;
  }

  releaseHold(account: string, bytes: number): void {
    const use = this.#accounts.get(account);
    if (use) use.held = Math.max(0, use.held - bytes);
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
