/**
 * @module How relay replicas reach each other: envelopes to agents held by another replica, and the
 * change feed of presence. One small interface, so the relay is the same code alone (in-process bus)
 * and as one of many replicas (NATS).
 *
 * Each replica subscribes to the agents it holds, and publishes an envelope for an agent it does not
 * hold to that agent's address. Nobody holding the address is the bus's answer "not found": the sender's
 * replica then holds the envelope (the agent may be redialling) or reports PEER_NOT_FOUND.
 */
import type { Envelope, ErrorCode } from '../../protocol/control.js';
import type { HttpFrame } from '../../protocol/http-proxy.js';

/** Why an envelope was not delivered; the sender gets it as a DeliveryError. */
export interface Refusal {
  code: ErrorCode;
  message: string;
}

/**
 * A change to presence, as replicas tell each other. `from` is the publishing replica; `relayId` is
 * the replica holding the agent (they differ when a replica reports another one's expired rows).
 * `epoch` is the store's claim number: an event about an older claim than the one a replica knows is
 * stale and ignored.
 */
export type PresenceEvent =
  | {
      type: 'connected';
      from: string;
      relayId: string;
      account: string;
      agentId: string;
      epoch: number;
      kind: string;
      labels: Record<string, string>;
      /** Milliseconds since the epoch. */
      connectedSince: number;
    }
  | {
      type: 'labels';
      from: string;
      relayId: string;
      account: string;
      agentId: string;
      epoch: number;
      labels: Record<string, string>;
    }
  | { type: 'gone'; from: string; relayId: string; account: string; agentId: string; epoch: number }
  /** The publisher is alive and still holds what it announced. */
  | { type: 'heartbeat'; from: string }
  /** The publisher is shutting down cleanly: drop every agent it held. */
  | { type: 'goodbye'; from: string };

/** What a bus calls back into its replica. */
export interface BusHandlers {
  /**
   * An envelope from another replica for an agent this replica subscribed to. Returns undefined once
   * queued for the agent, or the refusal to send back to the sender's replica.
   */
  envelope(account: string, agentId: string, env: Envelope): Refusal | undefined;
  /**
   * An envelope this replica delivered could not reach its agent: nobody holds it (PEER_NOT_FOUND), or
   * its holder refused it (PEER_BUSY, …). Called at most once per envelope; the local bus calls it
   * before `deliver` returns.
   */
  undeliverable(account: string, env: Envelope, refusal: Refusal): void;
  /** A presence event from another replica (never this replica's own). */
  presence(event: PresenceEvent): void;
  /** The bus reconnected after an outage: events may have been missed, so reload presence. */
  resync(): void;
  /**
   * A `/browse` frame from another replica for an agent this replica subscribed to; answers for its
   * stream go to `origin` ({@link Bus.answerHttp}).
   */
  httpIn(account: string, agentId: string, origin: string, frame: HttpFrame): void;
  /**
   * A frame answering one this replica forwarded, or the bus's own reset of its stream:
   * `agent_not_connected` when no replica holds the agent (any more).
   */
  httpBack(frame: HttpFrame): void;
}

export interface Bus {
  /** `local` or `nats`, for logs and health. */
  readonly kind: string;
  /**
   * False when no other replica can be on this bus (the in-process default): presence rows of other
   * replicas are then left over from a previous run of this relay and dead.
   */
  readonly shared: boolean;
  /** Connects the handlers; nothing is delivered before. */
  start(relayId: string, handlers: BusHandlers): Promise<void>;
  /**
   * Routes this agent's envelopes to this replica. Resolves once every replica's later deliveries
   * reach it: the relay welcomes the agent only then. Subscribing twice is one subscription.
   */
  subscribeAgent(account: string, agentId: string): Promise<void>;
  unsubscribeAgent(account: string, agentId: string): void;
  /** Sends an envelope (its `from` stamped) to whichever replica holds `env.to` in `account`. */
  deliver(account: string, env: Envelope): void;
  /**
   * Sends a `/browse` frame (HTTP proxy frame, http.proto) to whichever replica holds the agent; the
   * answers come to `httpBack`, in order. Flow control is the stream's own window, end to end.
   */
  forwardHttp(account: string, agentId: string, frame: HttpFrame): void;
  /** Answers a frame that came in through `httpIn` with this `origin`. */
  answerHttp(origin: string, frame: HttpFrame): void;
  /** Tells every other replica about a presence change. */
  publish(event: PresenceEvent): void;
  /** Flushes what is in flight and disconnects. */
  close(): Promise<void>;
}

export { notFoundMessage } from '../../protocol/control.js';
