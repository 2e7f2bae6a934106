/**
 * @module Framing of a direct connection, without I/O: each frame is a 4-byte big-endian length and
 * that many bytes. {@link FrameReader} takes what the socket delivers and hands out whole frames.
 */

/** Largest frame: a 1 MiB artifact chunk sealed with its headers fits with room to spare. */
export const MAX_DIRECT_FRAME_BYTES = 4 * 1024 * 1024;

export class FrameError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'FrameError';
  }
}

/** The length header of a frame of `bodyBytes`; write it, then the body. */
export function frameHeader(bodyBytes: number): Buffer {
  const h = Buffer.allocUnsafe(4);
  h.writeUInt32BE(bodyBytes);
  return h;
}

/** Collects socket data into frames; throws {@link FrameError} on a frame over the maximum. */
export class FrameReader {
  readonly #max: number;
  #parts: Buffer[] = [];
  #bytes = 0;

  constructor(maxBytes = MAX_DIRECT_FRAME_BYTES) {
    this.#max = maxBytes;
  }

  append(data: Buffer): void {
    this.#parts.push(data);
    this.#bytes += data.length;
  }

  /** The next whole frame's body, or null until more data comes. */
  next(): Buffer | null {
    if (this.#bytes < 4) return null;
    if (this.#parts[0]!.length < 4) this.#merge();
    const len = this.#parts[0]!.readUInt32BE(0);
    if (len > this.#max) throw new FrameError(`frame of ${len} bytes, over the limit of ${this.#max}`);
    if (this.#bytes < 4 + len) return null;
    if (this.#parts[0]!.length < 4 + len) this.#merge();
    const head = this.#parts[0]!;
    const body = head.subarray(4, 4 + len);
    if (head.length === 4 + len) this.#parts.shift();
    else this.#parts[0] = head.subarray(4 + len);
    this.#bytes -= 4 + len;
    return body;
  }

  #merge(): void {
    this.#parts = [Buffer.concat(this.#parts)];
  }
}
