/**
 * @module Receives the chunks of one task's files into a folder: the {@link ReceiveLedger} decides,
 * this writes partial files, hashes them, places verified files and sends the acks. Partial files
 * outlive the process: a receiver started after a kill picks up what the last one wrote.
 */
import { createHash, type Hash } from 'node:crypto';
import { constants, createReadStream } from 'node:fs';
import { type FileHandle, lstat, mkdir, open, realpath, rename, rm } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { create } from '@bufbuild/protobuf';
import {
  type ArtifactAck,
  ArtifactAckSchema,
  type ArtifactChunk,
  type ArtifactInfo,
} from '../../protocol/a2a.js';
import { type Logger, silentLogger } from '../../util/log.js';
import { ArtifactError, errText } from './errors.js';
import { DEFAULT_MAX_ARTIFACT_BYTES, LIMIT_FLAG, MAX_ARTIFACT_FILES } from './limits.js';
import { hashFile, sha256 } from './local-files.js';
import { inside, sanitizeArtifactName } from './names.js';
import { type Announced, type ChunkFields, type LedgerEntry, ReceiveLedger } from './receive-ledger.js';

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
  /**
   * Partial files wait here (flat, under hashed names) until verified. They are kept when the process
   * dies: a receiver on the same folder resumes them.
   */
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

/** The I/O side of a ledger entry. */
interface Incoming {
  entry: LedgerEntry;
  partial: string;
  handle?: FileHandle;
  hash: Hash;
  /** Size and SHA-256 of what was written, once complete. */
  complete?: { size: number; sha256: string };
  placed?: ReceivedFile;
  /** Disk was checked for what a receiver before this one left (`#recover`). */
  diskChecked?: boolean;
  /** Its partial file was found on disk. */
  resumed?: boolean;
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

const announced = (info: ArtifactInfo): Announced => ({
  name: info.name,
  size: Number(info.size),
  sha256: info.sha256,
});

/**
 * Receives the chunks of one task's files into `dir`. Files are announced before their chunks
 * ({@link expect}: input files) or after them ({@link verify}: results, listed by the event that
 * follows); either way a file lands in `dir` only once its size and whole-file SHA-256 match the
 * announcement. Every chunk is checked against its own SHA-256 and offset; a mismatch discards the file
 * (fail closed) with a message naming it. Chunks that repeat bytes already written (a resend after a
 * reconnect) are skipped; a chunk past a hole is dropped and a resend asked. A file is acknowledged
 * `done` only once it is whole and flushed to disk. Names are sanitised, and the folders on the way
 * to a file are checked: a symlink (or a folder whose real path leaves `dir`) is refused, so nothing
 * is written outside `dir`.
 */
export class ArtifactReceiver {
  readonly #dir: string;
  readonly #partialDir: string;
  readonly #opts: ArtifactReceiverOptions;
  readonly #log: Logger;
  readonly #ledger: ReceiveLedger;
  readonly #io = new Map<string, Incoming>();
  /** Problems of chunks whose name could not be used at all, by raw name. */
  readonly #refused = new Map<string, string>();
  #chain: Promise<unknown> = Promise.resolve();
  #realDir: string | undefined;
  #aborted = false;

  constructor(opts: ArtifactReceiverOptions) {
    this.#opts = opts;
    this.#dir = opts.dir;
    this.#partialDir = opts.partialDir;
    this.#ledger = new ReceiveLedger(
      opts.maxBytes ?? DEFAULT_MAX_ARTIFACT_BYTES,
      opts.limitFlag ?? LIMIT_FLAG,
    );
    this.#log = opts.logger ?? silentLogger;
  }

  /** Bytes written so far (all files), and bytes that arrived more than once. */
  get stats(): { bytes: number; duplicateBytes: number } {
    return { bytes: this.#ledger.bytes, duplicateBytes: this.#ledger.duplicateBytes };
  }

  /** Verified files, by name. */
  get files(): Map<string, ReceivedFile> {
    const out = new Map<string, ReceivedFile>();
    for (const [n, f] of this.#io) if (f.placed) out.set(n, f.placed);
    return out;
  }

  /**
   * Announces files that will arrive. Bad or duplicate names and sizes over the limit are refused at
   * once (throws {@link ArtifactError}, nothing announced). Announcing a file again with the same size
   * and hash is a no-op (a command resent after a reconnect). The promise resolves once these files
   * are all verified in `dir`, and rejects as soon as one of them is discarded, naming it.
   */
  expect(files: ArtifactInfo[], opts: ExpectOptions = {}): Promise<ReceivedFile[]> {
    const { fresh, again } = this.#ledger.announce(files.map(announced));
    let round!: Round;
    const done = new Promise<ReceivedFile[]>((resolve, reject) => {
      round = { files: [], total: 0, opts, resolve, reject, settled: false };
    });
    for (const e of fresh) this.#incoming(e).round = round;
    for (const e of [...fresh, ...again]) {
      round.files.push(this.#incoming(e));
      round.total += e.info!.size;
    }
    // Files whose chunks came first (or are empty) are checked now, in order with the chunks.
    this.#enqueue(async () => {
      for (const f of round.files) if (f.complete && !f.placed && !f.entry.error) await this.#finish(f);
      this.#settle(round);
    });
    return done;
  }

  /**
   * Announces files whose chunks were sent before (the sender waited for every `done` ack), checks
   * them and places the good ones in `dir`. A file this process has not seen (it was received by one
   * that died) is taken from disk: its partial file, or the file already placed. Never throws: every
   * file that fails is a problem naming it. Staged files the listing does not name are dropped.
   */
  async verify(listed: ArtifactInfo[]): Promise<VerifyOutcome> {
    const problems: string[] = [];
    const wanted: Incoming[] = [];
    for (const raw of listed) {
      const info = announced(raw);
      let name: string;
      try {
        name = sanitizeArtifactName(info.name);
      } catch (err) {
        problems.push((err as Error).message);
        continue;
      }
      const prev = this.#ledger.get(name)?.info;
      if (prev && (prev.size !== info.size || prev.sha256 !== info.sha256)) {
        problems.push(`artifact ${name} was listed twice with different contents`);
        continue;
      }
      const e = this.#ledger.open(name);
      e.info = { ...info, name };
      wanted.push(this.#incoming(e));
    }
    await this.#enqueue(async () => {
      for (const f of wanted) {
        const e = f.entry;
        if (!f.complete && !f.placed && !e.error) {
          await this.#recover(f);
          // Whole on disk, written by a receiver that died before the listing came.
          if (!f.complete && f.resumed && !f.handle && e.offset === e.info!.size) this.#markComplete(f);
        }
        if (f.complete && !f.placed && !f.entry.error) await this.#finish(f);
      }
    });
    const files: ReceivedFile[] = [];
    for (const f of wanted) {
      const e = f.entry;
      if (f.placed) files.push(f.placed);
      else if (e.error) problems.push(e.error);
      else if (e.offset === 0 && !f.complete && !f.handle)
        problems.push(`artifact ${e.name} was announced but never arrived`);
      else problems.push(`artifact ${e.name} is incomplete: ${e.offset} of ${e.info!.size} bytes arrived`);
    }
    const listedNames = new Set(wanted.map((f) => f.entry.name));
    await this.#enqueue(async () => {
      for (const [name, f] of this.#io) {
        if (!listedNames.has(name) && !f.entry.info) {
          await this.#discardPartial(f);
          this.#io.delete(name);
          this.#ledger.delete(name);
        } else if (listedNames.has(name) && !f.placed) await this.#discardPartial(f);
      }
    });
    return { files, problems };
  }

  /**
   * Takes one chunk. Never rejects: a bad chunk discards its file (see {@link verify}, {@link expect}).
   * `sealed`: it arrived in an E2EE frame, whose AES-GCM tag already authenticated its bytes, so it may
   * come without its own SHA-256 (docs/artifacts.md); a SHA-256 it carries is checked either way.
   */
  accept(chunk: ArtifactChunk, sealed = false): Promise<void> {
    return this.#enqueue(() => this.#accept(chunk, sealed));
  }

  /** The link has a new session: tell the sender where every unfinished file stands. */
  resync(): void {
    void this.#enqueue(async () => {
      for (const f of this.#io.values()) {
        const e = f.entry;
        if (e.error) this.#ack(f, { error: e.error });
        else if (f.complete) this.#ack(f, { done: true });
        else if (e.offset > 0 || e.info) this.#ack(f, { resend: true });
      }
    });
  }

  /**
   * Where each announced file stands, as acks a sender starting over takes before it sends: `done`
   * (placed), `error` (discarded), or the offset written so far, partial files a receiver before this
   * one left included. A file whole on disk is verified and placed first.
   */
  standing(): Promise<ArtifactAck[]> {
    const out: ArtifactAck[] = [];
    return this.#enqueue(async () => {
      for (const f of this.#io.values()) {
        const e = f.entry;
        if (!e.info) continue;
        if (!f.complete && !f.placed && !e.error) {
          await this.#recover(f);
          if (!f.complete && f.resumed && !f.handle && e.offset === e.info.size) this.#markComplete(f);
          if (f.complete && !f.placed) await this.#finish(f);
        }
        const fields = f.placed ? { done: true } : e.error ? { error: e.error } : {};
        out.push(
          create(ArtifactAckSchema, {
            taskId: this.#opts.taskId ?? '',
            name: e.name,
            offset: BigInt(e.offset),
            ...fields,
          }),
        );
      }
    }).then(() => out);
  }

  /** Drops partial files (the task ended or failed). Placed files stay. */
  async abort(): Promise<void> {
    this.#aborted = true;
    await this.#enqueue(async () => {
      for (const f of this.#io.values()) if (!f.placed) await this.#discardPartial(f);
    });
    await rm(this.#partialDir, { recursive: true, force: true }).catch(() => {});
  }

  #incoming(entry: LedgerEntry): Incoming {
    let f = this.#io.get(entry.name);
    if (!f) {
      const id = createHash('sha256').update(entry.name).digest('hex').slice(0, 32);
      f = { entry, partial: join(this.#partialDir, `${id}.part`), hash: createHash('sha256') };
      this.#io.set(entry.name, f);
    }
    return f;
  }

  #enqueue(fn: () => Promise<void>): Promise<void> {
    const next = this.#chain.then(fn).catch((err: Error) => {
      this.#log.error('artifact receiver failed', { error: err.stack ?? err.message });
    });
    this.#chain = next;
    return next;
  }

  #ack(f: Incoming, extra: { done?: boolean; error?: string; resend?: boolean } = {}): void {
    this.#sendAck(f.entry.name, { offset: BigInt(f.entry.offset), ...extra });
  }

  #sendAck(
    name: string,
    fields: { offset?: bigint; done?: boolean; error?: string; resend?: boolean },
  ): void {
    this.#opts.sendAck?.(create(ArtifactAckSchema, { taskId: this.#opts.taskId ?? '', name, ...fields }));
  }

  #settle(round: Round | undefined): void {
    if (!round || round.settled) return;
    const failed = round.files.find((f) => f.entry.error);
    if (failed) {
      round.settled = true;
      round.reject(new ArtifactError('integrity', failed.entry.error!));
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
      got += f.placed ? f.placed.size : f.entry.offset;
      dup += f.entry.duplicateBytes;
    }
    round.opts.onProgress(got, round.total, dup);
  }

  async #fail(f: Incoming, why: string): Promise<void> {
    f.entry.error = `artifact ${f.entry.name} discarded: ${why}`;
    this.#log.warn('artifact discarded', { name: f.entry.name, why });
    await this.#discardPartial(f);
    this.#ack(f, { error: f.entry.error });
    this.#settle(f.round);
  }

  async #discardPartial(f: Incoming): Promise<void> {
    const h = f.handle;
    f.handle = undefined;
    await h?.close().catch(() => {});
    if (!f.placed) await rm(f.partial, { force: true }).catch(() => {});
  }

  /**
   * Picks up a file a receiver before this one (a process since killed) had written: the partial
   * file's bytes count as received (they were written in order, each chunk checked), and the hash
   * goes on from them. Without a partial file, a listed file already placed in `dir` (the process
   * died after placing it) is taken if it matches.
   */
  async #recover(f: Incoming): Promise<void> {
    const e = f.entry;
    if (f.diskChecked || e.offset > 0 || f.handle || f.complete) return;
    f.diskChecked = true;
    const st = await lstat(f.partial).catch(() => undefined);
    if (st?.isFile()) {
      const h = createHash('sha256');
      try {
        for await (const c of createReadStream(f.partial)) h.update(c as Buffer);
      } catch (err) {
        this.#log.warn('partial file unreadable; receiving it again', { name: e.name, error: errText(err) });
        return;
      }
      f.hash = h;
      f.resumed = true;
      this.#ledger.recovered(e, st.size);
      this.#log.info('resuming a partial file', { name: e.name, bytes: st.size });
      return;
    }
    if (!e.info) return;
    const path = join(this.#dir, ...e.name.split('/'));
    const placed = await lstat(path).catch(() => undefined);
    if (!placed?.isFile() || placed.size !== e.info.size) return;
    if ((await hashFile(path).catch(() => '')) !== e.info.sha256) return;
    // Placed by the process before this one; #destination checks its folders are still inside `dir`.
    try {
      if ((await this.#destination(e.name)) !== path) return;
    } catch {
      return;
    }
    e.complete = true;
    f.complete = { size: placed.size, sha256: e.info.sha256 };
    f.placed = { name: e.name, size: placed.size, sha256: e.info.sha256, path };
    e.placed = true;
  }

  #markComplete(f: Incoming): void {
    f.entry.complete = true;
    f.complete = { size: f.entry.offset, sha256: f.hash.digest('hex') };
  }

  async #accept(chunk: ArtifactChunk, sealed: boolean): Promise<void> {
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
    let f = this.#io.get(name);
    if (!f) {
      if (!this.#opts.acceptUnannounced) {
        this.#sendAck(name, { error: `artifact ${name} was not announced; refused` });
        this.#log.warn('chunk for a file that was not announced; refused', { name });
        return;
      }
      if (this.#ledger.size >= MAX_ARTIFACT_FILES) {
        this.#sendAck(name, { error: `more than ${MAX_ARTIFACT_FILES} files; refused` });
        return;
      }
      f = this.#incoming(this.#ledger.open(name));
      await this.#recover(f);
    }
    const e = f.entry;
    const c: ChunkFields = {
      offset: Number(chunk.offset),
      length: chunk.data.length,
      last: chunk.last,
      unhashed: chunk.chunkSha256 === '',
      hashOk: () => (chunk.chunkSha256 === '' ? sealed : sha256(chunk.data) === chunk.chunkSha256),
    };
    const action = this.#ledger.plan(e, c);
    switch (action.kind) {
      case 'drop':
        return;
      case 'whole':
        // A resend of a file we have whole: its `done` ack was lost.
        this.#ledger.repeated(e, c.length);
        return this.#ack(f, { done: true });
      case 'hole':
        if (action.ask) this.#ack(f, { resend: true });
        return;
      case 'fail':
        return this.#fail(f, action.why);
    }
    const { fresh } = action;
    if (fresh > 0 || (!f.handle && e.offset === 0)) {
      try {
        if (!f.handle) f.handle = await this.#openPartial(f);
        if (fresh > 0) {
          const data = chunk.data.subarray(c.length - fresh);
          const written = writeAll(f.handle, data, e.offset);
          // Hashed while the thread pool writes: a failed write discards the file, hash and all.
          f.hash.update(data);
          await written;
        }
      } catch (err) {
        return this.#fail(f, `cannot write it: ${errText(err)}`);
      }
    }
    this.#ledger.wrote(e, c, fresh);
    if (c.last) {
      const problem = this.#ledger.lastProblem(e, c);
      if (problem) return this.#fail(f, problem);
      try {
        // `done` lets the sender forget the file: it must be on disk first.
        await f.handle?.datasync();
      } catch (err) {
        return this.#fail(f, `cannot write it: ${errText(err)}`);
      }
      await f.handle?.close().catch(() => {});
      f.handle = undefined;
      this.#markComplete(f);
      if (e.info) await this.#finish(f);
      else this.#ack(f, { done: true });
    } else this.#ack(f);
    this.#progress(f.round);
  }

  async #openPartial(f: Incoming): Promise<FileHandle> {
    await mkdir(this.#partialDir, { recursive: true });
    const st = await lstat(this.#partialDir);
    if (st.isSymbolicLink() || !st.isDirectory())
      throw new Error(`${this.#partialDir} is not a plain folder`);
    // A file resumed from disk is appended to; a new one starts empty.
    const truncate = f.entry.offset === 0 ? constants.O_TRUNC : 0;
    return open(
      f.partial,
      constants.O_RDWR | constants.O_CREAT | truncate | (constants.O_NOFOLLOW ?? 0),
      0o600,
    );
  }

  /** Checks a complete, announced file and places it; acks `done`, or discards it. */
  async #finish(f: Incoming): Promise<void> {
    const info = f.entry.info!;
    const c = f.complete!;
    if (c.size !== info.size) return this.#fail(f, `${c.size} bytes arrived, ${info.size} were announced`);
    if (c.sha256 !== info.sha256) return this.#fail(f, 'whole-file SHA-256 does not match');
    try {
      if (c.size === 0 && !(await exists(f.partial))) await (await this.#openPartial(f)).close();
      const path = await this.#destination(f.entry.name);
      await rename(f.partial, path);
      f.placed = { name: f.entry.name, size: c.size, sha256: c.sha256, path };
      f.entry.placed = true;
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

/** Writes all of `data` at `position` (a write may take fewer bytes than it was given). */
async function writeAll(handle: FileHandle, data: Uint8Array, position: number): Promise<void> {
  let written = 0;
  while (written < data.length) {
    const r = await handle.write(data, written, data.length - written, position + written);
    written += r.bytesWritten;
  }
}

const exists = (p: string) =>
  lstat(p).then(
    () => true,
    () => false,
  );
