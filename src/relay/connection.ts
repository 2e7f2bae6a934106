/**
 * @module One agent's control stream, relay side: its identity once authenticated, and its bounded,
 * batching, accounted send side. Everything the relay writes to the stream is counted until the
 * transport has taken it (the write's callback), so an agent that does not read costs the relay at
 * most its bounds, never more.
 */
import { constants as http2 } from 'node:http2';
import { create } from '@bufbuild/protobuf';
import * as grpc from '@grpc/grpc-js';
import { EnvelopeBatcher } from '../protocol/batcher.js';
import {
  type AgentKind,
  type Envelope,
  ErrorCode,
  encodeRelayFrame,
  envelopeWireSize,
  FrameErrorSchema,
  type RelayFrame,
} from '../protocol/control.js';
import { encodeRelayEnvelopes } from '../protocol/envelope-frame.js';
import { FramePool } from '../protocol/frame-pool.js';
import type { HttpFrame } from '../protocol/http-proxy.js';
import { TRACING, trace } from '../util/trace.js';
import { type Accounting, type DropReason, itemCost } from './limits.js';

export type ControlCall = grpc.ServerDuplexStream<Buffer, Buffer>;

export interface AgentIdentity {
  account: string;
  keyId: string;
  agentId: string;
  kind: AgentKind;
  sessionToken: string;
}

export interface ConnectionLimits {
  maxFrameBytes: number;
  /**
   * Bytes of envelopes buffered for one agent: queued, and written to its stream but not yet taken by
   * the transport. Past it, envelopes for the agent are dropped and their senders get PEER_BUSY.
   */
  agentBufferBytes: number;
  /**
   * Bytes of control frames (delivery and frame errors) written to one agent's stream and not
   * yet taken. Past it the agent is not reading its stream, and the stream is ended.
   */
  controlBacklogBytes: number;
}

/** Envelope frames' buffers, shared by every connection (bounded: a few frames kept idle at most). */
const frames = new FramePool();

const TELL_DROPS_EVERY_MS = 5_000;

/** How long a stream ended with a status may take to deliver it before it is reset. */
const RESET_AFTER_MS = 1_000;

/** A connected, authenticated agent. */
export class AgentConnection {
  // Static after construction.
  readonly identity: AgentIdentity;
  readonly connectedAt = new Date();
  readonly #call: ControlCall;
  readonly #out: EnvelopeBatcher;
  readonly #limits: ConnectionLimits;
  readonly #accounting: Accounting;
  readonly #onOverflow: (details: string) => void;

  // Owned by the stream's reader.
  labels: Record<string, string>;
  /** The store's claim number for this stream, set once admitted (0 before). */
  epoch = 0;

  // Owned by the send side; back to zero when the stream closes.
  /** Cost of the envelopes queued or written and not yet taken by the transport (charged to the account). */
  #envelopeCost = 0;
  /** Bytes of envelope frames written and not yet taken: the batcher pauses above one frame. */
  #inFlight = 0;
  #paused = false;
  /** Cost of control frames written and not yet taken. */
  #controlCost = 0;
  /** When this agent was last told that envelopes for it are dropped: at most every few seconds. */
  #toldDropsAt = 0;
  #closed = false;

  constructor(
    call: ControlCall,
    identity: AgentIdentity,
    labels: Record<string, string>,
    limits: ConnectionLimits,
    accounting: Accounting,
    /** The agent does not read its stream: the owner ends it with RESOURCE_EXHAUSTED and `details`. */
    onOverflow: (details: string) => void,
  ) {
    this.#call = call;
    this.identity = identity;
    this.labels = labels;
    this.#limits = limits;
    this.#accounting = accounting;
    this.#onOverflow = onOverflow;
    // Costs (never below the wire size) are checked in enqueue; the batcher only batches.
    this.#out = new EnvelopeBatcher({
      maxFrameBytes: limits.maxFrameBytes,
      maxQueuedBytes: Number.MAX_SAFE_INTEGER,
      sink: this.#sink,
    });
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Bytes this connection holds for its agent: envelopes and control frames not yet taken. */
  get bufferedBytes(): number {
    return this.#envelopeCost + this.#controlCost;
  }

  readonly #sink = {
    write: (envelopes: Envelope[]): boolean => {
      if (TRACING) for (const e of envelopes) trace('relay.write', e.channel);
      const frame = encodeRelayEnvelopes(envelopes, frames.take);
      let cost = 0;
      for (const e of envelopes) cost += itemCost(envelopeWireSize(e));
      this.#inFlight += frame.byteLength;
      this.#call.write(frame, () => {
        // grpc-js copied the frame into its own when it took it from the stream's queue.
        frames.give(frame);
        if (this.#closed) return;
        this.#inFlight -= frame.byteLength;
        this.#envelopeCost -= cost;
        this.#accounting.release(this.identity.account, cost);
        if (this.#paused && this.#inFlight < this.#limits.maxFrameBytes) {
          this.#paused = false;
          this.#out.resume(this.#sink);
        }
      });
      // One frame waiting behind the one being sent keeps the link busy; the rest waits in the queue,
      // where closing the stream frees it at once.
      if (this.#inFlight < this.#limits.maxFrameBytes) return true;
      this.#paused = true;
      return false;
    },
  };

  /**
   * Queues an envelope; returns why it was dropped, or undefined once queued. The sender of a dropped
   * envelope is told by the caller; this agent is told here, with a FrameError every few seconds.
   */
  enqueue(env: Envelope): DropReason | undefined {
    if (this.#closed) return 'peer_not_found';
    const cost = itemCost(envelopeWireSize(env));
    const dropped =
      this.#envelopeCost + cost > this.#limits.agentBufferBytes
        ? 'agent_buffer_full'
        : !this.#accounting.reserve(this.identity.account, cost)
          ? 'account_buffer_full'
          : undefined;
    if (dropped) {
      const now = Date.now();
      if (now - this.#toldDropsAt > TELL_DROPS_EVERY_MS) {
        this.#toldDropsAt = now;
        this.sendControl({
          case: 'error',
          value: create(FrameErrorSchema, {
            code: ErrorCode.PEER_BUSY,
            message: `the relay is dropping envelopes for ${this.identity.agentId}: it reads slower than it is sent to (${dropped}; relay flags --agent-buffer, --account-buffer)`,
          }),
        });
      }
      return dropped;
    }
    this.#envelopeCost += cost;
    this.#out.enqueue(env);
    return undefined;
  }

  /**
   * Writes a control frame at once, ahead of queued envelopes. An agent that lets more than the
   * control backlog pile up unread is ended (see {@link ConnectionLimits.controlBacklogBytes}).
   */
  sendControl(frame: RelayFrame['frame']): void {
    if (this.#closed) return;
    const bytes = encodeRelayFrame(frame);
    const cost = itemCost(bytes.byteLength);
    if (this.#controlCost + cost > this.#limits.controlBacklogBytes) {
      this.#accounting.dropped(this.identity.account, 'control_backlog');
      this.#onOverflow(
        `agent ${this.identity.agentId} is not reading its stream: ${this.#controlCost} bytes of delivery and frame errors are unread (limit ${this.#limits.controlBacklogBytes}, relay flag --control-backlog)`,
      );
      return;
    }
    this.#controlCost += cost;
    this.#call.write(bytes, () => {
      if (!this.#closed) this.#controlCost -= cost;
    });
  }

  /**
   * Writes a `/browse` frame now, charged to the agent's and account's buffers like envelopes; false
   * (nothing written) past them. The request's flow-control window bounds what one request adds.
   */
  sendHttp(frame: HttpFrame): boolean {
    if (this.#closed) return false;
    const bytes = encodeRelayFrame({ case: 'http', value: frame });
    const cost = itemCost(bytes.byteLength);
    const { account } = this.identity;
    if (this.#envelopeCost + cost > this.#limits.agentBufferBytes || !this.#accounting.reserve(account, cost))
      return false;
    this.#envelopeCost += cost;
    this.#call.write(bytes, () => {
      if (this.#closed) return;
      this.#envelopeCost -= cost;
      this.#accounting.release(account, cost);
    });
    return true;
  }

  /**
   * Ends the stream: with an error status, or cleanly. Queued envelopes are dropped and the account's
   * buffer is given back at once. A stream that cannot deliver its status (its agent reads nothing)
   * is reset shortly after, which frees what the transport still holds.
   */
  close(status?: { code: grpc.status; details: string }): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#out.clear();
    this.#accounting.release(this.identity.account, this.#envelopeCost);
    this.#envelopeCost = 0;
    this.#controlCost = 0;
    this.#inFlight = 0;
    if (status) this.#call.emit('error', status);
    else this.#call.end();
    const reset = setTimeout(() => resetStream(this.#call), RESET_AFTER_MS);
    reset.unref();
    this.#call.once('close', () => clearTimeout(reset));
  }
}

/**
 * Resets the HTTP/2 stream under a gRPC server call with ENHANCE_YOUR_CALM, which gRPC clients read as
 * RESOURCE_EXHAUSTED: the only way to drop what is queued for a peer that does not read, since a
 * status goes out behind it. grpc-js does not expose the stream; without it the call is only ended.
 */
function resetStream(call: ControlCall): void {
  const stream = (
    call as unknown as { call?: { stream?: { closed?: boolean; close?: (code: number) => void } } }
  ).call?.stream;
  if (stream && !stream.closed && typeof stream.close === 'function')
    stream.close(http2.NGHTTP2_ENHANCE_YOUR_CALM);
  else call.destroy();
}

/** The status an overflowing stream ends with. */
export const overflowStatus = (details: string) => ({ code: grpc.status.RESOURCE_EXHAUSTED, details });
