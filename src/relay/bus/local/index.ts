/**
 * @module The in-process {@link Bus}, the default: a relay alone delivers envelopes for agents it does
 * not hold to nobody, at once. Several buses on one {@link LocalHub} behave as replicas of one relay in
 * one process, which is how the bus contract suite runs it.
 */
import { type Envelope, ErrorCode } from '../../../protocol/control.js';
import { type HttpFrame, notConnectedReset } from '../../../protocol/http-proxy.js';
import { type Bus, type BusHandlers, notFoundMessage, type PresenceEvent } from '../bus.js';

const keyOf = (account: string, agentId: string) => `${account}\u0000${agentId}`;

/** What several in-process buses share: who subscribed to which agent, and who hears presence. */
export class LocalHub {
  readonly agents = new Map<string, LocalBus>();
  readonly members = new Set<LocalBus>();
}

export class LocalBus implements Bus {
  readonly kind = 'local';
  readonly shared: boolean;
  readonly #hub: LocalHub;
  #handlers: BusHandlers | undefined;
  #relayId = '';

  /** Without a hub the bus is alone, as a single relay's is. */
  constructor(opts: { hub?: LocalHub } = {}) {
    this.shared = opts.hub !== undefined;
    this.#hub = opts.hub ?? new LocalHub();
  }

  /** The replica's handlers, for the other buses on the hub. */
  get handlers(): BusHandlers | undefined {
    return this.#handlers;
  }

  async start(relayId: string, handlers: BusHandlers): Promise<void> {
    this.#relayId = relayId;
    this.#handlers = handlers;
    this.#hub.members.add(this);
  }

  async subscribeAgent(account: string, agentId: string): Promise<void> {
    this.#hub.agents.set(keyOf(account, agentId), this);
  }

  unsubscribeAgent(account: string, agentId: string): void {
    const key = keyOf(account, agentId);
    if (this.#hub.agents.get(key) === this) this.#hub.agents.delete(key);
  }

  deliver(account: string, env: Envelope): void {
    const handlers = this.#hub.agents.get(keyOf(account, env.to))?.handlers;
    const refusal = handlers
      ? handlers.envelope(account, env.to, env)
      : { code: ErrorCode.PEER_NOT_FOUND, message: notFoundMessage(env.to) };
    if (refusal) this.#handlers?.undeliverable(account, env, refusal);
  }

  // Asynchronous like a network bus, in order: a microtask per frame.
  forwardHttp(account: string, agentId: string, frame: HttpFrame): void {
    const holder = this.#hub.agents.get(keyOf(account, agentId));
    queueMicrotask(() => {
      if (holder?.handlers) holder.handlers.httpIn(account, agentId, this.#relayId, frame);
      else this.#handlers?.httpBack(notConnectedReset(frame.streamId, agentId));
    });
  }

  answerHttp(origin: string, frame: HttpFrame): void {
    const to = [...this.#hub.members].find((m) => m.#relayId === origin);
    queueMicrotask(() => to?.handlers?.httpBack(frame));
  }

  publish(event: PresenceEvent): void {
    if (!this.shared) return;
    // Asynchronous like a network bus, so no replica runs inside another one's call.
    queueMicrotask(() => {
      for (const m of this.#hub.members) if (m !== this) m.handlers?.presence(event);
    });
  }

  async close(): Promise<void> {
    this.#hub.members.delete(this);
    for (const [key, bus] of this.#hub.agents) if (bus === this) this.#hub.agents.delete(key);
    this.#handlers = undefined;
  }
}
