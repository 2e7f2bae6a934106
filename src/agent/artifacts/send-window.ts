/**
 * @module The sender's bookkeeping, without I/O or clocks: per file what was sent and what the
 * receiver acknowledged, the bytes in flight against the window, and which chunk goes next. The
 * sender ({@link ArtifactSender}) reads files and keeps time around it.
 */

export interface WindowFile {
  name: string;
  size: number;
}

/** A chunk to send: `length` bytes of file `index` from `offset`; `last` ends the file. */
export interface ChunkPlan {
  index: number;
  name: string;
  offset: number;
  length: number;
  last: boolean;
}

/** The receiver's acknowledgement, as the window needs it (`ArtifactAck`). */
export interface AckFields {
  name: string;
  offset: number;
  done?: boolean;
  error?: string;
  resend?: boolean;
}

/**
 * What an ack changed: `progress` (bytes or files newly acknowledged), `rewound`, `none` (nothing new),
 * or `ignored` (a file not in this transfer, or one already finished).
 */
export type AckEffect = 'progress' | 'rewound' | 'none' | 'ignored';

interface Cursor {
  file: WindowFile;
  /** Next offset to send. */
  sent: number;
  /** Highest offset ever sent: bytes below it are resends. */
  high: number;
  acked: number;
  /** The chunk with `last` went out since the last rewind. */
  sentLast: boolean;
  done: boolean;
  error?: string;
}

export class SendWindow {
  readonly #cursors: Cursor[];
  readonly #byName = new Map<string, number>();
  readonly #window: number;
  readonly total: number;
  /** Σ over open files of sent − acked. */
  #inFlight = 0;
  /** Σ of acked bytes (whole size for finished files). */
  #acked = 0;
  #open: number;
  /** No cursor before this index needs sending. */
  #scan = 0;

  constructor(files: readonly WindowFile[], windowBytes: number) {
    this.#window = windowBytes;
    this.#cursors = files.map((file) => ({ file, sent: 0, high: 0, acked: 0, sentLast: false, done: false }));
    for (const [i, f] of files.entries()) this.#byName.set(f.name, i);
    this.#open = files.length;
    this.total = files.reduce((n, f) => n + f.size, 0);
  }

  /** Files not yet acknowledged whole or discarded. */
  get open(): number {
    return this.#open;
  }

  /** Acknowledged bytes of all files (a discarded file counts whole). */
  get acked(): number {
    return this.#acked;
  }

  get inFlight(): number {
    return this.#inFlight;
  }

  /** Files the receiver discarded, with its reason. */
  get failed(): { name: string; error: string }[] {
    return this.#cursors.filter((c) => c.error).map((c) => ({ name: c.file.name, error: c.error! }));
  }

  /** The next chunk of at most `chunkBytes`, or undefined when the window is full or nothing is left. */
  next(chunkBytes: number): ChunkPlan | undefined {
    if (this.#inFlight >= this.#window) return undefined;
    for (; this.#scan < this.#cursors.length; this.#scan++) {
      const c = this.#cursors[this.#scan]!;
      if (c.done || (c.sent >= c.file.size && c.sentLast)) continue;
      const length = Math.min(chunkBytes, c.file.size - c.sent);
      return {
        index: this.#scan,
        name: c.file.name,
        offset: c.sent,
        length,
        last: c.sent + length >= c.file.size,
      };
    }
    return undefined;
  }

  /**
   * The chunk went out; returns how many of its bytes had been sent before. An ack or rewind that
   * moved the file while it was being sent wins (the cursor stays where they put it).
   */
  sent(chunk: ChunkPlan): number {
    const c = this.#cursors[chunk.index]!;
    const resent = chunk.offset < c.high ? Math.min(chunk.length, c.high - chunk.offset) : 0;
    if (c.done || c.sent !== chunk.offset) return resent;
    this.#update(c, { sent: chunk.offset + chunk.length });
    c.sentLast ||= chunk.last;
    c.high = Math.max(c.high, c.sent);
    return resent;
  }

  /** Takes an ack from the receiver. */
  ack(ack: AckFields): AckEffect {
    const i = this.#byName.get(ack.name);
    const c = i === undefined ? undefined : this.#cursors[i]!;
    if (!c || c.done) return 'ignored';
    const offset = Math.min(ack.offset, c.file.size);
    if (ack.error || ack.done) {
      this.#update(c, { done: true, acked: c.file.size });
      if (ack.error) c.error = ack.error;
      return 'progress';
    }
    if (ack.resend) {
      // The receiver has `offset` bytes, maybe fewer than it acked before (it lost its state).
      this.#update(c, { acked: offset });
      if (c.sent > offset) this.#rewind(i!);
      return 'rewound';
    }
    if (offset > c.acked) {
      // Beyond what we sent (a resend after a rewind): the receiver has it already, skip ahead.
      this.#update(c, { acked: offset, sent: Math.max(c.sent, offset) });
      return 'progress';
    }
    return 'none';
  }

  /** Every unfinished file goes again from its acknowledged offset (frames in flight may be lost). */
  rewindAll(): void {
    this.#cursors.forEach((c, i) => {
      if (!c.done) this.#rewind(i);
    });
  }

  #rewind(i: number): void {
    const c = this.#cursors[i]!;
    this.#update(c, { sent: c.acked });
    c.sentLast = false;
    this.#scan = Math.min(this.#scan, i);
  }

  /** Changes a cursor, keeping the in-flight and acked sums. */
  #update(c: Cursor, next: { sent?: number; acked?: number; done?: boolean }): void {
    if (!c.done) {
      this.#inFlight -= Math.max(0, c.sent - c.acked);
      this.#acked -= c.acked;
    }
    c.sent = next.sent ?? c.sent;
    c.acked = next.acked ?? c.acked;
    if (next.done && !c.done) {
      c.done = true;
      this.#open--;
      this.#acked += c.file.size;
      return;
    }
    if (!c.done) {
      this.#inFlight += Math.max(0, c.sent - c.acked);
      this.#acked += c.acked;
    }
  }
}
