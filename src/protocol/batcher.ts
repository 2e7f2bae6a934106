/**
 * @module A bounded envelope queue that writes batches: all envelopes queued in one event-loop turn go
 * out as one frame (up to the frame bound), because per-message overhead, not bandwidth, limits a Node
 * relay. Both the relay and agents use it for their send side. The sink owns the stream.
 */
import { type Envelope, envelopeWireSize, type OutEnvelope } from './control.js';

export interface BatchSink<E extends OutEnvelope = Envelope> {
  /** Writes one batch as one frame; false means "stop until {@link EnvelopeBatcher.resume}" (backpressure). */
  write(envelopes: E[]): boolean;
}

/** The relay queues decoded envelopes; an agent's may carry payloads in parts (a sealed frame). */
export class EnvelopeBatcher<E extends OutEnvelope = Envelope> {
  readonly #maxFrameBytes: number;
  readonly #maxQueuedBytes: number;
  #sink: BatchSink<E> | undefined;
  #queue: E[] = [];
  #queuedBytes = 0;
  #scheduled = false;

  /** Called after a flush that wrote something (the queue shrank). */
  readonly #onFlushed: (() => void) | undefined;

  constructor(opts: {
    maxFrameBytes: number;
    maxQueuedBytes: number;
    sink?: BatchSink<E>;
    onFlushed?: () => void;
  }) {
    this.#maxFrameBytes = opts.maxFrameBytes;
    this.#maxQueuedBytes = opts.maxQueuedBytes;
    this.#sink = opts.sink;
    this.#onFlushed = opts.onFlushed;
  }

  get queuedBytes(): number {
    return this.#queuedBytes;
  }

  /** Whether an envelope of `size` wire bytes would be queued now. */
  fits(size: number): boolean {
    return this.#queuedBytes + size <= this.#maxQueuedBytes;
  }

  /** Queues an envelope; false when the queue is full. */
  enqueue(env: E): boolean {
    const size = envelopeWireSize(env);
    if (!this.fits(size)) return false;
    this.#queue.push(env);
    this.#queuedBytes += size;
    if (!this.#scheduled && this.#sink) {
      this.#scheduled = true;
      setImmediate(() => {
        this.#scheduled = false;
        this.#flush();
      });
    }
    return true;
  }

  /** Attaches (or, with undefined, detaches) the sink and flushes what is queued. */
  resume(sink?: BatchSink<E>): void {
    if (sink !== undefined) this.#sink = sink;
    this.#flush();
  }

  pause(): void {
    this.#sink = undefined;
  }

  /** Empties the queue, returning what was in it. */
  clear(): E[] {
    const q = this.#queue;
    this.#queue = [];
    this.#queuedBytes = 0;
    return q;
  }

  #flush(): void {
    let sink = this.#sink;
    const before = this.#queuedBytes;
    while (sink && this.#queue.length > 0) {
      let count = 0;
      let bytes = 0;
      for (const env of this.#queue) {
        const size = envelopeWireSize(env);
        if (count > 0 && bytes + size > this.#maxFrameBytes) break;
        count++;
        bytes += size;
      }
      const envelopes = this.#queue.splice(0, count);
      this.#queuedBytes -= bytes;
      if (!sink.write(envelopes)) {
        this.#sink = undefined;
        sink = undefined;
      }
    }
    if (this.#queuedBytes < before) this.#onFlushed?.();
  }
}
