/**
 * @module One agent's control stream, relay side: its identity once authenticated, and its bounded,
 * batching send queue.
 */
import type * as grpc from '@grpc/grpc-js';
import { EnvelopeBatcher } from '../protocol/batcher.js';
import { type AgentKind, type Envelope, encodeRelayFrame, type RelayFrame } from '../protocol/control.js';
import { encodeRelayEnvelopes } from '../protocol/envelope-frame.js';

export type ControlCall = grpc.ServerDuplexStream<Buffer, Buffer>;

export interface AgentIdentity {
  account: string;
  keyId: string;
  agentId: string;
  kind: AgentKind;
  sessionToken: string;
}

export interface QueueLimits {
  maxFrameBytes: number;
  /** Bytes of envelopes queued for this agent before new ones are refused with PEER_BUSY. */
  maxQueuedBytes: number;
}

/** A connected, authenticated agent. */
export class AgentConnection {
  // Static after construction.
  readonly identity: AgentIdentity;
  readonly connectedAt = new Date();
  readonly #call: ControlCall;
  readonly #out: EnvelopeBatcher;

  // Owned by the stream's reader.
  labels: Record<string, string>;
  /** The store's claim number for this stream, set once admitted (0 before). */
  epoch = 0;

  #closed = false;

  constructor(
    call: ControlCall,
    identity: AgentIdentity,
    labels: Record<string, string>,
    limits: QueueLimits,
  ) {
    this.#call = call;
    this.identity = identity;
    this.labels = labels;
    const sink = {
      write: (envelopes: Envelope[]) => call.write(encodeRelayEnvelopes(envelopes)),
    };
    this.#out = new EnvelopeBatcher({ ...limits, sink });
    call.on('drain', () => {
      if (!this.#closed) this.#out.resume(sink);
    });
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Queues an envelope; false when the queue is full or the stream is gone (the caller reports it). */
  enqueue(env: Envelope): boolean {
    return !this.#closed && this.#out.enqueue(env);
  }

  /** Writes a control frame at once, ahead of queued envelopes. */
  sendControl(frame: RelayFrame['frame']): void {
    if (!this.#closed) this.#call.write(encodeRelayFrame(frame));
  }

  /** Ends the stream: with an error status, or cleanly. Queued envelopes are dropped. */
  close(status?: { code: grpc.status; details: string }): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#out.clear();
    if (status) this.#call.emit('error', status);
    else this.#call.end();
  }
}
