/**
 * @module A few large frame buffers, reused once their writer is done with them. A megabyte frame
 * allocated per artifact chunk costs little to fill but much to collect: V8 runs a full garbage
 * collection for every few dozen megabytes of buffers made, and a relay makes three per chunk it
 * forwards. Pure: no I/O.
 */

/** Frames smaller than this come from Node's own slab allocator; pooling them gains nothing. */
const MIN_POOLED_BYTES = 64 * 1024;
/** Capacities are rounded up to this, so that frames of one chunk size share their buffers. */
const GRANULE = 64 * 1024;

export class FramePool {
  readonly #free: ArrayBuffer[] = [];
  readonly #maxFree: number;

  /** Keeps at most `maxFree` buffers that nobody uses. */
  constructor(maxFree = 4) {
    this.#maxFree = maxFree;
  }

  /** A buffer of `size` bytes (contents undefined): a free one of its size class, else a new one. */
  readonly take = (size: number): Buffer => {
    if (size < MIN_POOLED_BYTES) return Buffer.allocUnsafe(size);
    const capacity = Math.ceil(size / GRANULE) * GRANULE;
    const i = this.#free.findIndex((ab) => ab.byteLength === capacity);
    const ab = i < 0 ? new ArrayBuffer(capacity) : this.#free.splice(i, 1)[0]!;
    return Buffer.from(ab, 0, size);
  };

  /**
   * Returns a buffer from {@link take} once nothing refers to it any more (a write's callback has run:
   * gRPC copied it into its own frame). Anything else is left to the garbage collector.
   */
  give(buf: Uint8Array): void {
    const ab = buf.buffer;
    if (!(ab instanceof ArrayBuffer) || buf.byteLength < MIN_POOLED_BYTES || buf.byteOffset !== 0) return;
    if (ab.byteLength % GRANULE !== 0 || this.#free.includes(ab)) return;
    if (this.#free.length >= this.#maxFree) this.#free.shift();
    this.#free.push(ab);
  }
}
