/**
 * @module Streams files over a task channel: reads them, keeps the {@link SendWindow}, and keeps time
 * (stall resend, give up). The loop wakes on acks, `resync`, abort and its own deadlines only.
 */
import { type FileHandle, open } from 'node:fs/promises';
import { create } from '@bufbuild/protobuf';
import { type ArtifactAck, ArtifactChunkSchema } from '../../protocol/a2a.js';
import { type Logger, silentLogger } from '../../util/log.js';
import { type A2aBody, A2aError } from '../a2a.js';
import { AgentError } from '../client.js';
import { ArtifactError, errText } from './errors.js';
import { ARTIFACT_CHUNK_BYTES, ARTIFACT_WINDOW_BYTES, MIN_CHUNK_BYTES } from './limits.js';
import { type LocalFile, sha256 } from './local-files.js';
import { type ChunkPlan, SendWindow } from './send-window.js';

/** A chunk of one file, by name and offset. */
export interface ChunkRef {
  name: string;
  offset: number;
}

/** `name@offset` (the form of `NFLTR_TEST_CORRUPT_CHUNK`), or undefined when `text` is not one. */
export function parseChunkRef(text: string | undefined): ChunkRef | undefined {
  const m = /^(.+)@(\d+)$/.exec(text ?? '');
  return m ? { name: m[1]!, offset: Number(m[2]) } : undefined;
}

export interface ArtifactSenderOptions {
  taskId: string;
  /** Sends one message on the task channel; a rejection is taken as a lost link (retried, then resent). */
  send: (msg: A2aBody) => Promise<void>;
  /**
   * Resolves when the local send queue has room (the agent's queue is bounded), or when `signal`
   * (the transfer's) aborts: `AgentClient.whenWritable`.
   */
  whenWritable: (signal?: AbortSignal) => Promise<void>;
  /** Stops the transfer (task ended, planner closing). */
  signal?: AbortSignal;
  /** Acknowledged bytes so far, of all files. */
  onProgress?: (acked: number, total: number) => void;
  windowBytes?: number;
  chunkBytes?: number;
  /** No acknowledgement for this long while bytes are unacknowledged: send again from the acked offset. */
  stallMs?: number;
  /** No acknowledgement progress for this long: give up. */
  giveUpMs?: number;
  /**
   * Put each chunk's SHA-256 in it (default). Off on an E2EE channel, whose AES-GCM tag authenticates
   * every chunk already; the whole-file SHA-256 is checked either way (docs/artifacts.md).
   */
  chunkHashes?: boolean;
  /**
   * `send` is done with a chunk's data once its promise settles (an encrypting A2A end seals it into new
   * buffers then): read buffers are reused, sparing the garbage collector a chunk's allocation each time.
   */
  sendConsumesData?: boolean;
  /** For tests: flip one byte of this chunk after its SHA-256 was taken (once; taken even without `chunkHashes`). */
  corruptChunk?: ChunkRef;
  logger?: Logger;
}

export interface SendReport {
  files: number;
  /** Sum of the file sizes. */
  bytes: number;
  /** Bytes put on the wire, resends included. */
  bytesSent: number;
  /** Bytes sent more than once (after a reconnect or a stall). */
  bytesResent: number;
  /** Files the receiver discarded, with its reason. */
  failed: { name: string; error: string }[];
}

/** Errors of the link that a reconnect heals; anything else ends the transfer. */
const transient = (err: unknown) =>
  err instanceof A2aError || (err instanceof AgentError && err.code === 'queue_full');

/** After the link refused a chunk (no session, reconnecting), wait this long before sending again. */
const REFUSED_RETRY_MS = 500;

/**
 * Streams files as chunks in order, keeping at most `windowBytes` unacknowledged. {@link onAck} takes
 * the receiver's acks, {@link resync} the link's `resync` (a new session: frames in flight may be lost),
 * after which every unfinished file is sent again from its acknowledged offset. {@link run} resolves
 * once every file is acknowledged whole or discarded by the receiver (see {@link SendReport.failed});
 * it rejects on a local read error, an abort, or a receiver silent for `giveUpMs`.
 */
export class ArtifactSender {
  readonly #opts: ArtifactSenderOptions;
  readonly #log: Logger;
  readonly #files: LocalFile[];
  readonly #window: SendWindow;
  #chunkBytes: number;
  #corrupt: ChunkRef | undefined;
  #bytesSent = 0;
  #bytesResent = 0;
  #rewindAll = false;
  #lastAckAt = Date.now();
  #lastProgressAt = Date.now();
  #lastRewindAt = 0;
  #stallMs: number;
  #wake: (() => void) | undefined;
  #handle: { path: string; fh: FileHandle } | undefined;
  /** The chunk read ahead (see {@link #read}). */
  #ahead: { path: string; offset: number; length: number; data: Promise<Buffer> } | undefined;
  /** Read buffers `send` is done with (see `sendConsumesData`): this chunk's and the read-ahead's. */
  readonly #spare: Buffer[] = [];
  #running: Promise<SendReport> | undefined;

  constructor(files: LocalFile[], opts: ArtifactSenderOptions) {
    this.#opts = opts;
    this.#log = opts.logger ?? silentLogger;
    this.#files = files;
    this.#chunkBytes = opts.chunkBytes ?? ARTIFACT_CHUNK_BYTES;
    this.#window = new SendWindow(
      files,
      Math.max(opts.windowBytes ?? ARTIFACT_WINDOW_BYTES, this.#chunkBytes),
    );
    this.#stallMs = opts.stallMs ?? 10_000;
    this.#corrupt = opts.corruptChunk;
  }

  get total(): number {
    return this.#window.total;
  }

  /** Bytes put on the wire so far, and how many of them were resends. */
  get counters(): { bytesSent: number; bytesResent: number } {
    return { bytesSent: this.#bytesSent, bytesResent: this.#bytesResent };
  }

  run(): Promise<SendReport> {
    this.#running ??= this.#run().finally(() => this.#closeHandle());
    return this.#running;
  }

  /** Takes an ack from the receiver. */
  onAck(ack: ArtifactAck): void {
    const effect = this.#window.ack({
      name: ack.name,
      offset: Number(ack.offset),
      done: ack.done,
      error: ack.error,
      resend: ack.resend,
    });
    if (effect === 'ignored') return;
    const now = Date.now();
    this.#lastAckAt = now;
    if (effect === 'progress') {
      this.#lastProgressAt = now;
      this.#stallMs = this.#opts.stallMs ?? 10_000;
    }
    this.#opts.onProgress?.(this.#window.acked, this.#window.total);
    this.#notify();
  }

  /** The link has a new session: frames in flight may be lost, so resend from the acked offsets. */
  resync(): void {
    this.#rewindAll = true;
    this.#notify();
  }

  #notify(): void {
    const w = this.#wake;
    this.#wake = undefined;
    w?.();
  }

  /** Waits for {@link notify} (an ack, a resync, an abort) or `ms`, whichever comes first. */
  #sleep(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const t = setTimeout(
        () => {
          this.#wake = undefined;
          resolve();
        },
        Math.max(0, ms),
      );
      this.#wake = () => {
        clearTimeout(t);
        resolve();
      };
    });
  }

  #checkAbort(): void {
    const s = this.#opts.signal;
    if (s?.aborted) {
      throw new ArtifactError('aborted', `transfer stopped: ${String(s.reason ?? 'aborted')}`);
    }
  }

  async #run(): Promise<SendReport> {
    const giveUpMs = this.#opts.giveUpMs ?? 600_000;
    const onAbort = () => this.#notify();
    this.#opts.signal?.addEventListener('abort', onAbort, { once: true });
    try {
      while (this.#window.open > 0) {
        this.#checkAbort();
        const now = Date.now();
        if (this.#rewindAll) {
          this.#rewindAll = false;
          this.#lastRewindAt = now;
          this.#window.rewindAll();
        }
        if (now - this.#lastProgressAt > giveUpMs) {
          throw new ArtifactError(
            'stalled',
            `the receiver acknowledged nothing for ${Math.round(giveUpMs / 1000)} s; transfer abandoned`,
          );
        }
        const next = this.#window.next(this.#chunkBytes);
        if (!next) {
          // Nothing to send until an ack: sleep until one comes or a deadline passes.
          const stallAt = Math.max(this.#lastAckAt, this.#lastRewindAt) + this.#stallMs;
          if (now > stallAt) {
            this.#log.info('no acknowledgement; sending unacknowledged bytes again', {
              task: this.#opts.taskId,
              after_ms: now - this.#lastAckAt,
            });
            this.#rewindAll = true;
            this.#stallMs = Math.min(this.#stallMs * 2, 60_000);
            continue;
          }
          await this.#sleep(Math.min(stallAt, this.#lastProgressAt + giveUpMs) - now + 1);
          continue;
        }
        await this.#opts.whenWritable(this.#opts.signal);
        this.#checkAbort();
        if (this.#rewindAll) continue;
        if (!(await this.#sendChunk(next))) {
          await this.#sleep(REFUSED_RETRY_MS);
          this.#rewindAll = true;
        }
      }
    } finally {
      this.#opts.signal?.removeEventListener('abort', onAbort);
    }
    return {
      files: this.#files.length,
      bytes: this.#window.total,
      bytesSent: this.#bytesSent,
      bytesResent: this.#bytesResent,
      failed: this.#window.failed,
    };
  }

  /**
   * Reads a chunk, then starts reading the one after it in the same file, which the thread pool
   * fetches while this one is sealed and sent (a rewind or a smaller chunk size just drops it).
   */
  async #read(file: LocalFile, offset: number, length: number): Promise<Buffer> {
    const ahead = this.#ahead;
    this.#ahead = undefined;
    const hit = ahead?.path === file.path && ahead.offset === offset && ahead.length === length;
    const data = await (hit ? ahead.data : this.#readAt(file, offset, length));
    const next = offset + length;
    const nextLength = Math.min(this.#chunkBytes, file.size - next);
    if (nextLength > 0) {
      const read = this.#readAt(file, next, nextLength);
      // Its error, if it is ever used, is thrown by the read that takes it.
      read.catch(() => {});
      this.#ahead = { path: file.path, offset: next, length: nextLength, data: read };
    }
    return data;
  }

  async #readAt(file: LocalFile, offset: number, length: number): Promise<Buffer> {
    if (this.#handle?.path !== file.path) {
      await this.#closeHandle();
      const fh = await open(file.path, 'r').catch((err) => {
        throw new ArtifactError('unreadable', `cannot read ${file.path}: ${errText(err)}`);
      });
      this.#handle = { path: file.path, fh };
    }
    const { fh } = this.#handle;
    const spare = this.#spare.pop();
    const buf = spare?.byteLength === length ? spare : Buffer.allocUnsafe(length);
    let got = 0;
    while (got < length) {
      const { bytesRead } = await fh.read(buf, got, length - got, offset + got);
      if (bytesRead === 0) break;
      got += bytesRead;
    }
    if (got < length) {
      throw new ArtifactError(
        'unreadable',
        `${file.path} changed while it was being sent (now shorter than ${file.size} bytes)`,
      );
    }
    return buf;
  }

  async #closeHandle(): Promise<void> {
    const h = this.#handle;
    this.#handle = undefined;
    this.#ahead = undefined;
    await h?.fh.close().catch(() => {});
  }

  /** Sends a chunk; false when the link refused it (wait, then resend). */
  async #sendChunk(plan: ChunkPlan): Promise<boolean> {
    const { offset, length } = plan;
    const data = length > 0 ? await this.#read(this.#files[plan.index]!, offset, length) : Buffer.alloc(0);
    const hook = this.#corrupt;
    const corrupt = hook?.name === plan.name && hook.offset === offset && length > 0;
    const chunkSha256 = this.#opts.chunkHashes === false && !corrupt ? '' : sha256(data);
    if (corrupt) {
      this.#corrupt = undefined;
      data[0] = (data[0]! + 1) & 0xff;
    }
    const msg: A2aBody = {
      case: 'artifactChunk',
      value: create(ArtifactChunkSchema, {
        taskId: this.#opts.taskId,
        name: plan.name,
        offset: BigInt(offset),
        data,
        chunkSha256,
        last: plan.last,
      }),
    };
    try {
      await this.#opts.send(msg);
    } catch (err) {
      this.#recycle(data);
      if (err instanceof AgentError && err.code === 'too_large' && this.#chunkBytes > MIN_CHUNK_BYTES) {
        // The relay's --max-frame-bytes is below our chunk: nothing went out, the same offset goes
        // again in smaller chunks.
        this.#chunkBytes = Math.max(MIN_CHUNK_BYTES, this.#chunkBytes >> 1);
        return true;
      }
      if (!transient(err)) throw err;
      this.#log.debug('artifact chunk not sent; will resend', {
        task: this.#opts.taskId,
        name: plan.name,
        error: (err as Error).message,
      });
      return false;
    }
    this.#recycle(data);
    this.#bytesSent += length;
    this.#bytesResent += this.#window.sent(plan);
    return true;
  }

  /** Keeps a chunk's read buffer for a later read once `send` is done with it (two are all it needs). */
  #recycle(data: Buffer): void {
    if (this.#opts.sendConsumesData && data.byteLength > 0 && this.#spare.length < 2) this.#spare.push(data);
  }
}
