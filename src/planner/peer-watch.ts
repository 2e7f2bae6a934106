/**
 * @module Which workers the planner can still reach. While a worker has open tasks, it is checked every
 * `intervalMs` (the task manager sends a Resume per open task, which also repairs any event lost in
 * flight). The relay answers a send to an agent that is gone with PEER_NOT_FOUND (after its hold
 * window); from the first such answer the worker counts as unreachable, and once it has been so for
 * `graceMs` it is reported lost. Anything heard from it clears that. Time while the planner itself is
 * off the relay does not count: nothing can be judged from there.
 */
import { type Logger, silentLogger } from '../util/log.js';

export interface PeerWatchOptions {
  /** Unreachable this long: lost. */
  graceMs: number;
  /** Between checks of every watched peer; default a quarter of the grace, within 250 ms … 10 s. */
  intervalMs?: number;
  /** Peers with open tasks now. */
  peers: () => Iterable<string>;
  /** Sends one peer the periodic check. */
  check: (peer: string) => void;
  /** The peer has been unreachable for the grace period. */
  lost: (peer: string, unreachableMs: number) => void;
  /** Whether this planner is on the relay now. */
  connected: () => boolean;
  logger?: Logger;
}

export class PeerWatch {
  readonly #opts: PeerWatchOptions;
  readonly #log: Logger;
  /** Peer → when the relay first said it is not connected. */
  readonly #unreachable = new Map<string, number>();
  #timer: NodeJS.Timeout | undefined;

  constructor(opts: PeerWatchOptions) {
    this.#opts = opts;
    this.#log = opts.logger ?? silentLogger;
  }

  get intervalMs(): number {
    return this.#opts.intervalMs ?? Math.min(10_000, Math.max(250, Math.round(this.#opts.graceMs / 4)));
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
    if (!this.#unreachable.delete(peer)) return false;
    this.#log.info('worker reachable again', { peer });
    return true;
  }

  /** This planner lost the relay: what was measured so far says nothing about the workers. */
  linkDown(): void {
    this.#unreachable.clear();
  }

  #tick(): void {
    if (!this.#opts.connected()) return;
    const now = Date.now();
    const open = new Set(this.#opts.peers());
    for (const peer of this.#unreachable.keys()) if (!open.has(peer)) this.#unreachable.delete(peer);
    for (const peer of open) {
      const since = this.#unreachable.get(peer);
      if (since !== undefined && now - since >= this.#opts.graceMs) {
        this.#unreachable.delete(peer);
        this.#opts.lost(peer, now - since);
      } else this.#opts.check(peer);
    }
  }
}
