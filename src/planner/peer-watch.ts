/**
 * @module Which workers the planner can still reach. While a worker has open tasks, it is checked every
 * `intervalMs` (the task manager sends a Resume per open task, which also repairs any event lost in
 * flight). The relay answers a send to an agent that is gone with PEER_NOT_FOUND (after its hold
 * window); from the first such answer the worker counts as unreachable, and once it has been so for
 * `graceMs` it is reported lost. Anything heard from it clears that. Time while the planner itself is
 * off the relay does not count: nothing can be judged from there.
 *
 * A worker the relay still holds but that answers none of the checks for `silentMs` (frozen: SIGSTOP,
 * a hung event loop, a dead link the relay's keepalive has not noticed yet) is reported lost at once:
 * a live worker answers every check (a ReplayComplete at least), so that is at least two unanswered
 * checks. A late tick (this planner was frozen itself) restarts the count. Only workers holding an
 * accepted open task are judged so; a dispatch not yet answered has its own timeout.
 */
import { type Logger, silentLogger } from '../util/log.js';

export interface PeerWatchOptions {
  /** Unreachable this long: lost. */
  graceMs: number;
  /** Between checks of every watched peer; default a quarter of the grace, within 250 ms … 5 s. */
  intervalMs?: number;
  /** Connected but silent this long: lost (default {@link WORKER_SILENT_MS}; 0: never). */
  silentMs?: number;
  /**
   * Whether silence counts for `peer`: it has accepted a task that is still open (a dispatch not yet
   * answered has its own timeout). Default: always.
   */
  silenceCounts?: (peer: string) => boolean;
  /** Peers with open tasks now. */
  peers: () => Iterable<string>;
  /** Sends one peer the periodic check. */
  check: (peer: string) => void;
  /** The peer has been unreachable for the grace period, or `silent` (connected, answering nothing). */
  lost: (peer: string, unreachableMs: number, why: 'unreachable' | 'silent') => void;
  /** Whether this planner is on the relay now. */
  connected: () => boolean;
  logger?: Logger;
}

/** Default of {@link PeerWatchOptions.silentMs}: with checks every 5 s, a frozen worker is lost in ≤ 20 s. */
export const WORKER_SILENT_MS = 15_000;

export class PeerWatch {
  readonly #opts: PeerWatchOptions;
  readonly #log: Logger;
  /** Peer → when the relay first said it is not connected. */
  readonly #unreachable = new Map<string, number>();
  /** Peer with open tasks → when it was last heard from (or first watched). */
  readonly #heardAt = new Map<string, number>();
  #lastTick = Date.now();
  #timer: NodeJS.Timeout | undefined;

  constructor(opts: PeerWatchOptions) {
    this.#opts = opts;
    this.#log = opts.logger ?? silentLogger;
  }

  get intervalMs(): number {
    return this.#opts.intervalMs ?? Math.min(5_000, Math.max(250, Math.round(this.#opts.graceMs / 4)));
  }

  start(): void {
    if (this.#timer) return;
    this.#timer = setInterval(() => this.#tick(), this.intervalMs);
    this.#timer.unref();
  }

  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
    this.#unreachable.clear();
    this.#heardAt.clear();
  }

  /** Whether the relay said the peer is gone, and it has not been heard from since. */
  isUnreachable(peer: string): boolean {
    return this.#unreachable.has(peer);
  }

  /** The relay reported `peer` not connected. */
  notFound(peer: string): void {
    if (!this.#opts.connected() || this.#unreachable.has(peer)) return;
    this.#unreachable.set(peer, Date.now());
    this.#log.info('worker unreachable; its tasks fail as worker_lost if it stays away', {
      peer,
      grace_ms: this.#opts.graceMs,
    });
  }

  /** Something arrived from `peer`. Returns true when it had been unreachable (it is back). */
  heard(peer: string): boolean {
    if (this.#heardAt.has(peer)) this.#heardAt.set(peer, Date.now());
    if (!this.#unreachable.delete(peer)) return false;
    this.#log.info('worker reachable again', { peer });
    return true;
  }

  /** This planner lost the relay: what was measured so far says nothing about the workers. */
  linkDown(): void {
    this.#unreachable.clear();
    this.#heardAt.clear();
  }

  #tick(): void {
    const now = Date.now();
    // A tick far behind its time: this planner did not run (frozen, overloaded), so what it did not hear
    // says nothing about the workers.
    if (now - this.#lastTick > 2 * this.intervalMs) this.#heardAt.clear();
    this.#lastTick = now;
    if (!this.#opts.connected()) return this.#heardAt.clear();
    const silentMs = this.#opts.silentMs ?? WORKER_SILENT_MS;
    const open = new Set(this.#opts.peers());
    for (const peer of this.#unreachable.keys()) if (!open.has(peer)) this.#unreachable.delete(peer);
    for (const peer of this.#heardAt.keys()) if (!open.has(peer)) this.#heardAt.delete(peer);
    for (const peer of open) {
      const since = this.#unreachable.get(peer);
      const counts = this.#opts.silenceCounts?.(peer) ?? true;
      if (!counts) this.#heardAt.delete(peer);
      const heard = counts ? this.#heardAt.get(peer) : undefined;
      if (counts && heard === undefined) this.#heardAt.set(peer, now);
      if (since !== undefined && now - since >= this.#opts.graceMs) {
        this.#unreachable.delete(peer);
        this.#heardAt.delete(peer);
        this.#opts.lost(peer, now - since, 'unreachable');
      } else if (since === undefined && silentMs > 0 && heard !== undefined && now - heard >= silentMs) {
        this.#heardAt.delete(peer);
        this.#log.info('worker connected but silent; its tasks fail as worker_lost', {
          peer,
          silent_ms: now - heard,
        });
        this.#opts.lost(peer, now - heard, 'silent');
      } else this.#opts.check(peer);
    }
  }
}
