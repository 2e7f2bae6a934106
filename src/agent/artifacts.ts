/**
 * @module Files over an A2A task channel, both ways (planner → worker input files, worker → planner
 * results). Names are sanitised; every chunk carries its own SHA-256 and the whole file is checked
 * against the announced one; writes stay inside one folder. The receiver acknowledges what it wrote
 * (`ArtifactAck`), which gives end-to-end flow control (at most a window of unacknowledged bytes in
 * flight, however slow the other end) and resumption: after a reconnect the sender sends each unfinished
 * file again from its acknowledged offset, and the receiver, which kept the partial file, skips what it
 * already has.
 *
 * Transfer flow, per task channel:
 *   sender:   [announce: TaskStart.input_files / Respond.files, or later: TaskEvent.artifacts]
 *             ArtifactChunk{name, offset, data, chunk_sha256, last} …   (≤ window unacknowledged)
 *   receiver: ArtifactAck{name, offset} per chunk written; {done} once the file is whole (and verified
 *             when announced); {error} when it discarded the file; {resend} when a chunk came past a hole.
 */
import { createHash } from 'node:crypto';
import { constants, createReadStream } from 'node:fs';
import {
  access,
  type FileHandle,
  lstat,
  mkdir,
  open,
  readdir,
  realpath,
  rename,
  rm,
  stat,
} from 'node:fs/promises';
import { basename, join, relative, resolve, sep } from 'node:path';
import { create } from '@bufbuild/protobuf';
import {
  type ArtifactAck,
  ArtifactAckSchema,
  type ArtifactChunk,
  ArtifactChunkSchema,
  type ArtifactInfo,
  ArtifactInfoSchema,
} from '../protocol/a2a.js';
import { type Logger, silentLogger } from '../util/log.js';
import { type A2aBody, A2aError } from './a2a.js';
import { AgentError } from './client.js';

/**
 * Bytes per chunk. Each chunk costs a fixed amount of work in all three processes (an envelope, a
 * seal, an ack back), so larger chunks carry more bytes per CPU second: 1 MiB moved ~30% more than
 * 256 KiB in the artifacts bench. A relay whose frame limit is lower gets smaller chunks (see
 * {@link ArtifactSender}).
 */
export const ARTIFACT_CHUNK_BYTES = 1024 * 1024;
/** The sender halves its chunks down to this when the relay's frame limit refuses them. */
const MIN_CHUNK_BYTES = 16 * 1024;
export const DEFAULT_MAX_ARTIFACT_BYTES = 1024 * 1024 * 1024;
/** Unacknowledged bytes one transfer may have in flight (planner, relay and peer buffers together). */
export const ARTIFACT_WINDOW_BYTES = 8 * 1024 * 1024;
/** Files in one announcement, at most: bounds the state both ends keep per transfer. */
export const MAX_ARTIFACT_FILES = 10_000;
/** Transfers at least this large report progress as task events. */
export const PROGRESS_MIN_BYTES = 8 * 1024 * 1024;
const LIMIT_FLAG = '--max-artifact-bytes';

export class ArtifactError extends Error {
  constructor(
    readonly code:
      | 'bad_name'
      | 'duplicate'
      | 'too_large'
      | 'integrity'
      | 'unreadable'
      | 'unexpected'
      | 'incomplete'
      | 'aborted'
      | 'stalled',
    message: string,
  ) {
    super(message);
    this.name = 'ArtifactError';
  }
}

// ── names ──────────────────────────────────────────────────────────────────────────────────────────────

const DEVICE_NAMES = /^(con|prn|aux|nul|com[0-9¹²³]|lpt[0-9¹²³]|conin\$|conout\$)(\..*)?$/i;

/** Checks a relative artifact name; returns it normalised to `/` separators, or throws naming the problem. */
export function sanitizeArtifactName(name: string): string {
  const bad = (why: string) =>
    new ArtifactError('bad_name', `artifact name ${JSON.stringify(name)} refused: ${why}`);
  if (name.length === 0 || name.length > 1024) throw bad('must be 1-1024 characters');
  // biome-ignore lint/suspicious/noControlCharactersInRegex: refusing control characters is the point
  if (/[\0-\x1f\x7f]/.test(name)) throw bad('control characters');
  const normalised = name.replaceAll('\\', '/');
  if (normalised.startsWith('/') || /^[A-Za-z]:/.test(normalised))
    throw bad('absolute paths are not allowed');
  const parts = normalised.split('/');
  for (const p of parts) {
    if (p === '..') throw bad("'..' is not allowed");
    if (p === '' || p === '.') throw bad('empty or "." path segments');
    if (p.length > 255) throw bad('a path segment is longer than 255 characters');
    if (DEVICE_NAMES.test(p.replace(/[ .]+$/, ''))) throw bad(`"${p}" is a device name`);
  }
  return parts.join('/');
}

export function assertUniqueNames(names: string[]): void {
  const seen = new Set<string>();
  for (const n of names) {
    if (seen.has(n)) throw new ArtifactError('duplicate', `two artifacts are named ${JSON.stringify(n)}`);
    seen.add(n);
  }
}

const inside = (path: string, root: string) =>
  path === root || path.startsWith(root.endsWith(sep) ? root : root + sep);

// ── local files ────────────────────────────────────────────────────────────────────────────────────────

export interface LocalFile {
  /** Relative name the other side will see. */
  name: string;
  path: string;
  size: number;
}

const errText = (err: unknown) => (err as NodeJS.ErrnoException).code ?? (err as Error).message;

/**
 * Lists the regular files under `root` (recursively) as artifact names. Symlinks are followed only when
 * they stay inside `root`; one pointing out is refused. A folder reached twice (a link loop) is refused.
 */
export async function listFiles(root: string, prefix = ''): Promise<LocalFile[]> {
  const realRoot = await realpath(root);
  const out: LocalFile[] = [];
  const seen = new Set<string>();
  const walk = async (dir: string, real: string) => {
    if (seen.has(real)) throw new ArtifactError('bad_name', `${dir} is reached twice (a symlink loop)`);
    seen.add(real);
    const entries = await readdir(dir, { withFileTypes: true }).catch((err) => {
      throw new ArtifactError('unreadable', `artifact_files: cannot read folder ${dir}: ${errText(err)}`);
    });
    entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const e of entries) {
      const path = join(dir, e.name);
      let target = path;
      if (e.isSymbolicLink()) {
        target = await realpath(path).catch(() => '');
        if (!target || !inside(target, realRoot)) {
          throw new ArtifactError(
            'bad_name',
            `artifact_files: symlink ${path} points outside ${root}; refused (copy the file in instead)`,
          );
        }
      }
      const st = await stat(target);
      if (st.isDirectory()) await walk(path, await realpath(target));
      else if (st.isFile()) {
        const name = sanitizeArtifactName(prefix + relative(root, path).split(sep).join('/'));
        out.push({ name, path: target, size: st.size });
      }
    }
  };
  await walk(root, realRoot);
  return out;
}

/**
 * Resolves local paths the planner names (files or folders) into artifact files; a missing or
 * unreadable path is refused with the path named. Duplicate names are refused.
 */
export async function resolveLocalPaths(paths: string[]): Promise<LocalFile[]> {
  const files: LocalFile[] = [];
  for (const p of paths) {
    const st = await lstat(p).catch((err) => {
      throw new ArtifactError('unreadable', `artifact_files: cannot read ${p}: ${errText(err)}`);
    });
    const base = basename(resolve(p));
    if (st.isDirectory()) files.push(...(await listFiles(p, `${sanitizeArtifactName(base)}/`)));
    else if (st.isFile() || st.isSymbolicLink()) {
      const real = await realpath(p).catch(() => {
        throw new ArtifactError('unreadable', `artifact_files: ${p} is a dangling symlink`);
      });
      const rst = await stat(real);
      if (rst.isDirectory()) files.push(...(await listFiles(real, `${sanitizeArtifactName(base)}/`)));
      else if (!rst.isFile())
        throw new ArtifactError('unreadable', `artifact_files: ${p} is not a regular file`);
      else files.push({ name: sanitizeArtifactName(base), path: real, size: rst.size });
    } else throw new ArtifactError('unreadable', `artifact_files: ${p} is not a file or folder`);
  }
  for (const f of files) {
    await access(f.path, constants.R_OK).catch((err) => {
      throw new ArtifactError('unreadable', `artifact_files: cannot read ${f.path}: ${errText(err)}`);
    });
  }
  assertUniqueNames(files.map((f) => f.name));
  return files;
}

/** Refuses a set of files over the per-file / per-task limit, naming the flag of the program that set it. */
export function checkArtifactLimit(
  files: { name: string; size: number }[],
  maxBytes: number,
  flag = LIMIT_FLAG,
): void {
  if (files.length > MAX_ARTIFACT_FILES) {
    throw new ArtifactError(
      'too_large',
      `${files.length} files, more than ${MAX_ARTIFACT_FILES} per transfer`,
    );
  }
  let total = 0;
  for (const f of files) {
    if (f.size > maxBytes) {
      throw new ArtifactError(
        'too_large',
        `${f.name} is ${f.size} bytes, over the limit of ${maxBytes} bytes (${flag})`,
      );
    }
    total += f.size;
  }
  if (total > maxBytes) {
    throw new ArtifactError(
      'too_large',
      `the files total ${total} bytes, over the limit of ${maxBytes} bytes per task (${flag})`,
    );
  }
}

const sha256 = (data: Uint8Array) => createHash('sha256').update(data).digest('hex');

export async function hashFile(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path, { highWaterMark: 1024 * 1024 })) h.update(chunk as Buffer);
  return h.digest('hex');
}

/** Describes files (name, size, whole-file hash) before they are streamed; an unreadable one is named. */
export async function describeFiles(files: LocalFile[]): Promise<ArtifactInfo[]> {
  const out: ArtifactInfo[] = [];
  for (const f of files) {
    const digest = await hashFile(f.path).catch((err) => {
      throw new ArtifactError('unreadable', `cannot read ${f.path}: ${errText(err)}`);
    });
    out.push(create(ArtifactInfoSchema, { name: f.name, size: BigInt(f.size), sha256: digest }));
  }
  return out;
}

// ── progress ───────────────────────────────────────────────────────────────────────────────────────────

/**
 * Reports a transfer's progress at most every `step` of the total or every `intervalMs`, plus once at
 * the end; transfers under `minBytes` report nothing (they are over before anyone could look).
 */
export class ProgressThrottle {
  readonly #total: number;
  readonly #emit: (done: number, total: number) => void;
  readonly #step: number;
  readonly #intervalMs: number;
  readonly #enabled: boolean;
  #lastDone = 0;
  #lastAt = Date.now();
  #finished = false;

  constructor(
    total: number,
    emit: (done: number, total: number) => void,
    opts: { minBytes?: number; step?: number; intervalMs?: number } = {},
  ) {
    this.#total = total;
    this.#emit = emit;
    this.#step = Math.max(1, Math.floor(total * (opts.step ?? 0.05)));
    this.#intervalMs = opts.intervalMs ?? 1_000;
    this.#enabled = total >= (opts.minBytes ?? PROGRESS_MIN_BYTES);
  }

  update(done: number): void {
    if (!this.#enabled || this.#finished) return;
    const now = Date.now();
    if (done >= this.#total) this.#finished = true;
    else if (
      done - this.#lastDone < this.#step &&
      (now - this.#lastAt < this.#intervalMs || done === this.#lastDone)
    )
      return;
    this.#lastDone = done;
    this.#lastAt = now;
    this.#emit(Math.min(done, this.#total), this.#total);
  }
}

/** `52428800 of 209715200 bytes (25%)` */
export function progressText(done: number, total: number): string {
  const pct = total > 0 ? Math.floor((done / total) * 100) : 100;
  return `${done} of ${total} bytes (${pct}%)`;
}

// ── sending ────────────────────────────────────────────────────────────────────────────────────────────

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

interface Cursor {
  index: number;
  file: LocalFile;
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

/** Errors of the link that a reconnect heals; anything else ends the transfer. */
const transient = (err: unknown) =>
  err instanceof A2aError || (err instanceof AgentError && err.code === 'queue_full');

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
  readonly #cursors: Cursor[];
  readonly #byName = new Map<string, Cursor>();
  #chunkBytes: number;
  readonly #window: number;
  readonly #total: number;
  #corrupt: { name: string; offset: number } | undefined;
  /** Σ over open files of sent − acked. */
  #inFlight = 0;
  /** Σ of acked bytes (whole size for finished files). */
  #acked = 0;
  #open: number;
  /** No cursor before this index needs sending. */
  #scan = 0;
  #bytesSent = 0;
  #bytesResent = 0;
  #rewindAll = false;
  #lastAckAt = Date.now();
  #lastProgressAt = Date.now();
  #lastRewindAt = 0;
  #stallMs: number;
  #wake: (() => void) | undefined;
  #handle: { path: string; fh: FileHandle } | undefined;
  #running: Promise<SendReport> | undefined;

  constructor(files: LocalFile[], opts: ArtifactSenderOptions) {
    this.#opts = opts;
    this.#log = opts.logger ?? silentLogger;
    this.#chunkBytes = opts.chunkBytes ?? ARTIFACT_CHUNK_BYTES;
    this.#window = Math.max(opts.windowBytes ?? ARTIFACT_WINDOW_BYTES, this.#chunkBytes);
    this.#stallMs = opts.stallMs ?? 10_000;
    this.#cursors = files.map((file, index) => ({
      index,
      file,
      sent: 0,
      high: 0,
      acked: 0,
      sentLast: false,
      done: false,
    }));
    for (const c of this.#cursors) this.#byName.set(c.file.name, c);
    this.#open = this.#cursors.length;
    this.#total = files.reduce((n, f) => n + f.size, 0);
    // Test hook: flip one byte of one chunk after its SHA-256 was taken (`name@offset`).
    const hook = /^(.+)@(\d+)$/.exec(process.env.NFLTR_TEST_CORRUPT_CHUNK ?? '');
    this.#corrupt = hook ? { name: hook[1]!, offset: Number(hook[2]) } : undefined;
  }

  get total(): number {
    return this.#total;
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
    const c = this.#byName.get(ack.name);
    if (!c || c.done) return;
    const now = Date.now();
    this.#lastAckAt = now;
    const offset = Math.min(Number(ack.offset), c.file.size);
    if (ack.error || ack.done) {
      this.#update(c, { done: true, acked: c.file.size });
      if (ack.error) c.error = ack.error;
      this.#lastProgressAt = now;
    } else if (ack.resend) {
      // The receiver has `offset` bytes, maybe fewer than it acked before (it lost its state).
      this.#update(c, { acked: offset });
      if (c.sent > offset) this.#rewind(c);
    } else if (offset > c.acked) {
      // Beyond what we sent (a resend after a rewind): the receiver has it already, skip ahead.
      this.#update(c, { acked: offset, sent: Math.max(c.sent, offset) });
      this.#lastProgressAt = now;
      this.#stallMs = this.#opts.stallMs ?? 10_000;
    }
    this.#opts.onProgress?.(this.#acked, this.#total);
    this.#notify();
  }

  /** The link has a new session: frames in flight may be lost, so resend from the acked offsets. */
  resync(): void {
    this.#rewindAll = true;
    this.#notify();
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

  #rewind(c: Cursor): void {
    this.#update(c, { sent: c.acked });
    c.sentLast = false;
    this.#scan = Math.min(this.#scan, c.index);
  }

  #next(): Cursor | undefined {
    for (; this.#scan < this.#cursors.length; this.#scan++) {
      const c = this.#cursors[this.#scan]!;
      if (!c.done && (c.sent < c.file.size || !c.sentLast)) return c;
    }
    return undefined;
  }

  #notify(): void {
    const w = this.#wake;
    this.#wake = undefined;
    w?.();
  }

  #sleep(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const t = setTimeout(() => {
        this.#wake = undefined;
        resolve();
      }, ms);
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
      while (this.#open > 0) {
        this.#checkAbort();
        const now = Date.now();
        if (this.#rewindAll) {
          this.#rewindAll = false;
          this.#lastRewindAt = now;
          for (const c of this.#cursors) if (!c.done) this.#rewind(c);
        }
        if (now - this.#lastProgressAt > giveUpMs) {
          throw new ArtifactError(
            'stalled',
            `the receiver acknowledged nothing for ${Math.round(giveUpMs / 1000)} s; transfer abandoned`,
          );
        }
        const next = this.#next();
        if (!next || this.#inFlight >= this.#window) {
          if (now - this.#lastAckAt > this.#stallMs && now - this.#lastRewindAt > this.#stallMs) {
            this.#log.info('no acknowledgement; sending unacknowledged bytes again', {
              task: this.#opts.taskId,
              after_ms: now - this.#lastAckAt,
            });
            this.#rewindAll = true;
            this.#stallMs = Math.min(this.#stallMs * 2, 60_000);
            continue;
          }
          await this.#sleep(250);
          continue;
        }
        await this.#opts.whenWritable(this.#opts.signal);
        this.#checkAbort();
        if (this.#rewindAll) continue;
        if (!(await this.#sendChunk(next))) {
          // The link refused it (no session, reconnecting): wait, then resend what was not acked.
          await this.#sleep(500);
          this.#rewindAll = true;
        }
      }
    } finally {
      this.#opts.signal?.removeEventListener('abort', onAbort);
    }
    return {
      files: this.#cursors.length,
      bytes: this.#total,
      bytesSent: this.#bytesSent,
      bytesResent: this.#bytesResent,
      failed: this.#cursors.filter((c) => c.error).map((c) => ({ name: c.file.name, error: c.error! })),
    };
  }

  async #read(c: Cursor, offset: number, length: number): Promise<Buffer> {
    if (this.#handle?.path !== c.file.path) {
      await this.#closeHandle();
      const fh = await open(c.file.path, 'r').catch((err) => {
        throw new ArtifactError('unreadable', `cannot read ${c.file.path}: ${errText(err)}`);
      });
      this.#handle = { path: c.file.path, fh };
    }
    const buf = Buffer.allocUnsafe(length);
    let got = 0;
    while (got < length) {
      const { bytesRead } = await this.#handle.fh.read(buf, got, length - got, offset + got);
      if (bytesRead === 0) break;
      got += bytesRead;
    }
    if (got < length) {
      throw new ArtifactError(
        'unreadable',
        `${c.file.path} changed while it was being sent (now shorter than ${c.file.size} bytes)`,
      );
    }
    return buf;
  }

  async #closeHandle(): Promise<void> {
    const h = this.#handle;
    this.#handle = undefined;
    await h?.fh.close().catch(() => {});
  }

  /** Sends the chunk at the cursor; false when the link refused it (wait, then resend). */
  async #sendChunk(c: Cursor): Promise<boolean> {
    const offset = c.sent;
    const length = Math.min(this.#chunkBytes, c.file.size - offset);
    const data = length > 0 ? await this.#read(c, offset, length) : Buffer.alloc(0);
    const last = offset + length >= c.file.size;
    const chunkSha256 = sha256(data);
    const hook = this.#corrupt;
    if (hook && hook.name === c.file.name && hook.offset === offset && length > 0) {
      this.#corrupt = undefined;
      data[0] = (data[0]! + 1) & 0xff;
    }
    const msg: A2aBody = {
      case: 'artifactChunk',
      value: create(ArtifactChunkSchema, {
        taskId: this.#opts.taskId,
        name: c.file.name,
        offset: BigInt(offset),
        data,
        chunkSha256,
        last,
      }),
    };
    try {
      await this.#opts.send(msg);
    } catch (err) {
      if (err instanceof AgentError && err.code === 'too_large' && this.#chunkBytes > MIN_CHUNK_BYTES) {
        // The relay's --max-frame-bytes is below our chunk: nothing went out, the same offset goes
        // again in smaller chunks.
        this.#chunkBytes = Math.max(MIN_CHUNK_BYTES, this.#chunkBytes >> 1);
        return true;
      }
      if (!transient(err)) throw err;
      this.#log.debug('artifact chunk not sent; will resend', {
        task: this.#opts.taskId,
        name: c.file.name,
        error: (err as Error).message,
      });
      return false;
    }
    this.#bytesSent += length;
    if (offset < c.high) this.#bytesResent += Math.min(length, c.high - offset);
    // An ack or rewind that moved the cursor while this was being sent wins.
    if (c.done || c.sent !== offset) return true;
    this.#update(c, { sent: offset + length });
    c.sentLast ||= last;
    c.high = Math.max(c.high, c.sent);
    return true;
  }
}

// ── receiving ──────────────────────────────────────────────────────────────────────────────────────────

/** A file received and verified, at its local path. */
export interface ReceivedFile {
  name: string;
  size: number;
  sha256: string;
  /** Absolute local path. */
  path: string;
}

export interface VerifyOutcome {
  files: ReceivedFile[];
  /** One sentence per file that failed, naming it. */
  problems: string[];
}

export interface ArtifactReceiverOptions {
  /** Put in the acks. */
  taskId?: string;
  /** Verified files are placed here under their names. Nothing is ever written outside it. */
  dir: string;
  /** Partial files wait here (flat, under hashed names) until verified. */
  partialDir: string;
  /** Largest file and largest total per task. */
  maxBytes?: number;
  /** Named in size errors, e.g. `--max-artifact-bytes of nfltr worker`. */
  limitFlag?: string;
  /**
   * Stage chunks of names not announced yet (results: the event listing them follows the chunks);
   * otherwise such chunks are refused.
   */
  acceptUnannounced?: boolean;
  /** Sends an ack to the sender. */
  sendAck?: (ack: ArtifactAck) => void;
  logger?: Logger;
}

export interface ExpectOptions {
  /** Bytes of these files written so far (duplicates not counted), and how many arrived twice. */
  onProgress?: (received: number, total: number, duplicateBytes: number) => void;
}

interface Incoming {
  name: string;
  info?: ArtifactInfo;
  partial: string;
  handle?: FileHandle;
  /** Bytes written, contiguous from 0. */
  offset: number;
  hash: ReturnType<typeof createHash>;
  /** The last chunk arrived: size and SHA-256 of what was written. */
  complete?: { size: number; sha256: string };
  placed?: ReceivedFile;
  error?: string;
  /** The offset a resend was asked for, so one hole asks once. */
  resendAsked?: number;
  duplicateBytes: number;
  round?: Round;
}

interface Round {
  files: Incoming[];
  total: number;
  opts: ExpectOptions;
  resolve: (files: ReceivedFile[]) => void;
  reject: (err: ArtifactError) => void;
  settled: boolean;
}

/**
 * Receives the chunks of one task's files into `dir`. Files are announced before their chunks
 * ({@link expect}: input files) or after them ({@link verify}: results, listed by the event that
 * follows); either way a file lands in `dir` only once its size and whole-file SHA-256 match the
 * announcement. Every chunk is checked against its own SHA-256 and offset; a mismatch discards the file
 * (fail closed) with a message naming it. Chunks that repeat bytes already written (a resend after a
 * reconnect) are skipped; a chunk past a hole is dropped and a resend asked. Names are sanitised, and
 * the folders on the way to a file are checked: a symlink (or a folder whose real path leaves `dir`)
 * is refused, so nothing is written outside `dir`.
 */
export class ArtifactReceiver {
  readonly #dir: string;
  readonly #partialDir: string;
  readonly #maxBytes: number;
  readonly #flag: string;
  readonly #opts: ArtifactReceiverOptions;
  readonly #log: Logger;
  readonly #files = new Map<string, Incoming>();
  /** Problems of chunks whose name could not be used at all, by raw name. */
  readonly #refused = new Map<string, string>();
  #bytes = 0;
  #announced = 0;
  #duplicateBytes = 0;
  #chain: Promise<unknown> = Promise.resolve();
  #realDir: string | undefined;
  #aborted = false;

  constructor(opts: ArtifactReceiverOptions) {
    this.#opts = opts;
    this.#dir = opts.dir;
    this.#partialDir = opts.partialDir;
    this.#maxBytes = opts.maxBytes ?? DEFAULT_MAX_ARTIFACT_BYTES;
    this.#flag = opts.limitFlag ?? LIMIT_FLAG;
    this.#log = opts.logger ?? silentLogger;
  }

  /** Bytes written so far (all files), and bytes that arrived more than once. */
  get stats(): { bytes: number; duplicateBytes: number } {
    return { bytes: this.#bytes, duplicateBytes: this.#duplicateBytes };
  }

  /** Verified files, by name. */
  get files(): Map<string, ReceivedFile> {
    const out = new Map<string, ReceivedFile>();
    for (const [n, f] of this.#files) if (f.placed) out.set(n, f.placed);
    return out;
  }

  /**
   * Announces files that will arrive. Bad or duplicate names and sizes over the limit are refused at
   * once (throws {@link ArtifactError}, nothing announced). Announcing a file again with the same size
   * and hash is a no-op (a command resent after a reconnect). The promise resolves once these files
   * are all verified in `dir`, and rejects as soon as one of them is discarded, naming it.
   */
  expect(files: ArtifactInfo[], opts: ExpectOptions = {}): Promise<ReceivedFile[]> {
    if (files.length > MAX_ARTIFACT_FILES) {
      throw new ArtifactError(
        'too_large',
        `${files.length} files, more than ${MAX_ARTIFACT_FILES} per transfer`,
      );
    }
    const fresh: { name: string; info: ArtifactInfo }[] = [];
    const again: Incoming[] = [];
    const names = new Set<string>();
    let total = this.#announced;
    for (const info of files) {
      const name = sanitizeArtifactName(info.name);
      if (names.has(name))
        throw new ArtifactError('duplicate', `two artifacts are named ${JSON.stringify(name)}`);
      names.add(name);
      if (!/^[0-9a-f]{64}$/.test(info.sha256))
        throw new ArtifactError('integrity', `artifact ${name} has no valid sha256`);
      const size = Number(info.size);
      const prev = this.#files.get(name);
      if (prev?.info) {
        if (Number(prev.info.size) === size && prev.info.sha256 === info.sha256) {
          again.push(prev);
          continue;
        }
        throw new ArtifactError(
          'duplicate',
          `artifact ${JSON.stringify(name)} was already announced for this task; give the new file another name`,
        );
      }
      if (size > this.#maxBytes) {
        throw new ArtifactError(
          'too_large',
          `artifact ${name} is ${size} bytes, over the limit of ${this.#maxBytes} bytes (${this.#flag})`,
        );
      }
      total += size;
      if (total > this.#maxBytes) {
        throw new ArtifactError(
          'too_large',
          `the task's files total ${total} bytes, over the limit of ${this.#maxBytes} bytes (${this.#flag})`,
        );
      }
      fresh.push({ name, info });
    }
    this.#announced = total;
    let round!: Round;
    const done = new Promise<ReceivedFile[]>((resolve, reject) => {
      round = { files: [], total: 0, opts, resolve, reject, settled: false };
    });
    for (const { name, info } of fresh) {
      let f = this.#files.get(name);
      if (!f) {
        f = this.#newIncoming(name);
        this.#files.set(name, f);
      }
      f.info = info;
      f.round = round;
      round.files.push(f);
      round.total += Number(info.size);
    }
    for (const f of again) {
      round.files.push(f);
      round.total += Number(f.info!.size);
    }
    // Files whose chunks came first (or are empty) are checked now, in order with the chunks.
    this.#enqueue(async () => {
      for (const f of round.files) if (f.complete && !f.placed && !f.error) await this.#finish(f);
      this.#settle(round);
    });
    return done;
  }

  /**
   * Announces files whose chunks were sent before (the sender waited for every `done` ack), checks
   * them and places the good ones in `dir`. Never throws: every file that fails is a problem naming it.
   * Staged files the listing does not name are dropped.
   */
  async verify(listed: ArtifactInfo[]): Promise<VerifyOutcome> {
    const problems: string[] = [];
    const wanted: Incoming[] = [];
    for (const info of listed) {
      let name: string;
      try {
        name = sanitizeArtifactName(info.name);
      } catch (err) {
        problems.push((err as Error).message);
        continue;
      }
      let f = this.#files.get(name);
      if (f?.info && (Number(f.info.size) !== Number(info.size) || f.info.sha256 !== info.sha256)) {
        problems.push(`artifact ${name} was listed twice with different contents`);
        continue;
      }
      if (!f) {
        f = this.#newIncoming(name);
        this.#files.set(name, f);
      }
      f.info = info;
      wanted.push(f);
    }
    await this.#enqueue(async () => {
      for (const f of wanted) {
        if (f.complete && !f.placed && !f.error) await this.#finish(f);
      }
    });
    const files: ReceivedFile[] = [];
    for (const f of wanted) {
      const size = Number(f.info!.size);
      if (f.placed) files.push(f.placed);
      else if (f.error) problems.push(f.error);
      else if (f.offset === 0 && !f.complete && !f.handle)
        problems.push(`artifact ${f.name} was announced but never arrived`);
      else problems.push(`artifact ${f.name} is incomplete: ${f.offset} of ${size} bytes arrived`);
    }
    const listedNames = new Set(wanted.map((f) => f.name));
    await this.#enqueue(async () => {
      for (const [name, f] of this.#files) {
        if (!listedNames.has(name) && !f.info) {
          await this.#discardPartial(f);
          this.#files.delete(name);
        } else if (listedNames.has(name) && !f.placed) await this.#discardPartial(f);
      }
    });
    return { files, problems };
  }

  /** Takes one chunk. Never rejects: a bad chunk discards its file (see {@link verify}, {@link expect}). */
  accept(chunk: ArtifactChunk): Promise<void> {
    return this.#enqueue(() => this.#accept(chunk));
  }

  /** The link has a new session: tell the sender where every unfinished file stands. */
  resync(): void {
    void this.#enqueue(async () => {
      for (const f of this.#files.values()) {
        if (f.error) this.#ack(f, { error: f.error });
        else if (f.complete) this.#ack(f, { done: true });
        else if (f.offset > 0 || f.info) this.#ack(f, { resend: true });
      }
    });
  }

  /** Drops partial files (the task ended or failed). Placed files stay. */
  async abort(): Promise<void> {
    this.#aborted = true;
    await this.#enqueue(async () => {
      for (const f of this.#files.values()) if (!f.placed) await this.#discardPartial(f);
    });
    await rm(this.#partialDir, { recursive: true, force: true }).catch(() => {});
  }

  #newIncoming(name: string): Incoming {
    const id = createHash('sha256').update(name).digest('hex').slice(0, 32);
    return {
      name,
      partial: join(this.#partialDir, `${id}.part`),
      offset: 0,
      hash: createHash('sha256'),
      duplicateBytes: 0,
    };
  }

  #enqueue(fn: () => Promise<void>): Promise<void> {
    const next = this.#chain.then(fn).catch((err: Error) => {
      this.#log.error('artifact receiver failed', { error: err.stack ?? err.message });
    });
    this.#chain = next;
    return next;
  }

  #ack(f: Incoming, extra: { done?: boolean; error?: string; resend?: boolean } = {}): void {
    this.#sendAck(f.name, { offset: BigInt(f.offset), ...extra });
  }

  #sendAck(
    name: string,
    fields: { offset?: bigint; done?: boolean; error?: string; resend?: boolean },
  ): void {
    this.#opts.sendAck?.(create(ArtifactAckSchema, { taskId: this.#opts.taskId ?? '', name, ...fields }));
  }

  #settle(round: Round | undefined): void {
    if (!round || round.settled) return;
    const failed = round.files.find((f) => f.error);
    if (failed) {
      round.settled = true;
      round.reject(new ArtifactError('integrity', failed.error!));
    } else if (round.files.every((f) => f.placed)) {
      round.settled = true;
      round.resolve(round.files.map((f) => f.placed!));
    }
  }

  #progress(round: Round | undefined): void {
    if (!round?.opts.onProgress) return;
    let got = 0;
    let dup = 0;
    for (const f of round.files) {
      got += f.placed ? f.placed.size : f.offset;
      dup += f.duplicateBytes;
    }
    round.opts.onProgress(got, round.total, dup);
  }

  async #fail(f: Incoming, why: string): Promise<void> {
    f.error = `artifact ${f.name} discarded: ${why}`;
    this.#log.warn('artifact discarded', { name: f.name, why });
    await this.#discardPartial(f);
    this.#ack(f, { error: f.error });
    this.#settle(f.round);
  }

  async #discardPartial(f: Incoming): Promise<void> {
    const h = f.handle;
    f.handle = undefined;
    await h?.close().catch(() => {});
    if (!f.placed) await rm(f.partial, { force: true }).catch(() => {});
  }

  async #accept(chunk: ArtifactChunk): Promise<void> {
    if (this.#aborted) return;
    let name: string;
    try {
      name = sanitizeArtifactName(chunk.name);
    } catch (err) {
      const message = (err as Error).message;
      if (!this.#refused.has(chunk.name)) {
        this.#refused.set(chunk.name, message);
        this.#sendAck(chunk.name, { error: message });
      }
      return;
    }
    let f = this.#files.get(name);
    if (!f) {
      if (!this.#opts.acceptUnannounced) {
        this.#sendAck(name, { error: `artifact ${name} was not announced; refused` });
        this.#log.warn('chunk for a file that was not announced; refused', { name });
        return;
      }
      if (this.#files.size >= MAX_ARTIFACT_FILES) {
        this.#sendAck(name, { error: `more than ${MAX_ARTIFACT_FILES} files; refused` });
        return;
      }
      f = this.#newIncoming(name);
      this.#files.set(name, f);
    }
    const len = chunk.data.length;
    if (f.error) return;
    if (f.complete || f.placed) {
      // A resend of a file we have whole: its `done` ack was lost.
      f.duplicateBytes += len;
      this.#duplicateBytes += len;
      this.#ack(f, { done: true });
      return;
    }
    const offset = Number(chunk.offset);
    if (offset > f.offset) {
      if (f.resendAsked !== f.offset) {
        f.resendAsked = f.offset;
        this.#ack(f, { resend: true });
      }
      return;
    }
    if (sha256(chunk.data) !== chunk.chunkSha256)
      return this.#fail(f, `chunk at offset ${offset} does not match its SHA-256`);
    const end = offset + len;
    if (f.info && end > Number(f.info.size))
      return this.#fail(f, `more bytes than the announced ${f.info.size}`);
    if (end > this.#maxBytes) {
      return this.#fail(f, `larger than the limit of ${this.#maxBytes} bytes (${this.#flag})`);
    }
    const fresh = Math.max(0, end - f.offset);
    if (!f.info && this.#bytes + fresh > this.#maxBytes) {
      return this.#fail(f, `the task's files exceed the limit of ${this.#maxBytes} bytes (${this.#flag})`);
    }
    if (fresh > 0 || (!f.handle && f.offset === 0)) {
      try {
        if (!f.handle) f.handle = await this.#openPartial(f);
        if (fresh > 0) {
          const data = chunk.data.subarray(len - fresh);
          let written = 0;
          while (written < data.length) {
            const r = await f.handle.write(data, written, data.length - written, f.offset + written);
            written += r.bytesWritten;
          }
          f.hash.update(data);
        }
      } catch (err) {
        return this.#fail(f, `cannot write it: ${errText(err)}`);
      }
      f.offset = Math.max(end, f.offset);
      this.#bytes += fresh;
    }
    const dup = len - fresh;
    f.duplicateBytes += dup;
    this.#duplicateBytes += dup;
    if (chunk.last) {
      if (end !== f.offset)
        return this.#fail(f, `the last chunk ends at ${end}, but ${f.offset} bytes arrived`);
      if (f.info && f.offset !== Number(f.info.size))
        return this.#fail(f, `${f.offset} bytes arrived, ${f.info.size} were announced`);
      await f.handle?.close().catch(() => {});
      f.handle = undefined;
      f.complete = { size: f.offset, sha256: f.hash.digest('hex') };
      if (f.info) await this.#finish(f);
      else this.#ack(f, { done: true });
    } else this.#ack(f);
    this.#progress(f.round);
  }

  async #openPartial(f: Incoming): Promise<FileHandle> {
    await mkdir(this.#partialDir, { recursive: true });
    const st = await lstat(this.#partialDir);
    if (st.isSymbolicLink() || !st.isDirectory())
      throw new Error(`${this.#partialDir} is not a plain folder`);
    return open(
      f.partial,
      constants.O_RDWR | constants.O_CREAT | constants.O_TRUNC | (constants.O_NOFOLLOW ?? 0),
      0o600,
    );
  }

  /** Checks a complete, announced file and places it; acks `done`, or discards it. */
  async #finish(f: Incoming): Promise<void> {
    const info = f.info!;
    const c = f.complete!;
    if (c.size !== Number(info.size))
      return this.#fail(f, `${c.size} bytes arrived, ${info.size} were announced`);
    if (c.sha256 !== info.sha256) return this.#fail(f, 'whole-file SHA-256 does not match');
    try {
      if (c.size === 0 && !(await exists(f.partial))) await (await this.#openPartial(f)).close();
      const path = await this.#destination(f.name);
      await rename(f.partial, path);
      f.placed = { name: f.name, size: c.size, sha256: c.sha256, path };
    } catch (err) {
      return this.#fail(f, err instanceof ArtifactError ? err.message : `cannot place it: ${errText(err)}`);
    }
    this.#ack(f, { done: true });
    this.#progress(f.round);
    this.#settle(f.round);
  }

  /**
   * The path a verified file goes to, creating the folders on the way one by one: an existing symlink
   * (or anything but a folder) on the way is refused, and the parent's real path must be inside `dir`.
   */
  async #destination(name: string): Promise<string> {
    if (!this.#realDir) {
      await mkdir(this.#dir, { recursive: true });
      const st = await lstat(this.#dir);
      if (st.isSymbolicLink() || !st.isDirectory())
        throw new ArtifactError('bad_name', `${this.#dir} is a symbolic link; nothing is written through it`);
      this.#realDir = await realpath(this.#dir);
    }
    const parts = name.split('/');
    let dir = this.#dir;
    for (const p of parts.slice(0, -1)) {
      const next = join(dir, p);
      let st = await lstat(next).catch(() => undefined);
      if (!st) {
        await mkdir(next).catch((err: NodeJS.ErrnoException) => {
          if (err.code !== 'EEXIST') throw err;
        });
        st = await lstat(next);
      }
      if (st.isSymbolicLink()) {
        throw new ArtifactError(
          'bad_name',
          `artifact ${name} refused: ${relative(this.#dir, next)} is a symbolic link; nothing is written through it`,
        );
      }
      if (!st.isDirectory())
        throw new ArtifactError(
          'bad_name',
          `artifact ${name} refused: ${relative(this.#dir, next)} is not a folder`,
        );
      dir = next;
    }
    const realParent = await realpath(dir);
    if (!inside(realParent, this.#realDir)) {
      throw new ArtifactError(
        'bad_name',
        `artifact ${name} refused: its folder resolves outside ${this.#dir}`,
      );
    }
    const path = join(dir, parts.at(-1)!);
    const st = await lstat(path).catch(() => undefined);
    if (st && !st.isFile()) {
      throw new ArtifactError(
        'bad_name',
        `artifact ${name} refused: ${relative(this.#dir, path)} exists and is not a regular file`,
      );
    }
    return path;
  }
}

const exists = (p: string) =>
  lstat(p).then(
    () => true,
    () => false,
  );
