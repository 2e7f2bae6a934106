/**
 * @module The receiver's bookkeeping, without I/O: which files were announced (and whether they fit
 * the limits), how many bytes of each are written, and what to do with a chunk. The receiver
 * ({@link ArtifactReceiver}) writes, hashes and places files around it.
 */
import { ArtifactError } from './errors.js';
import { checkArtifactLimit, LIMIT_FLAG, MAX_ARTIFACT_FILES } from './limits.js';
import { sanitizeArtifactName } from './names.js';

/** An announced file: name, size and whole-file SHA-256 (`ArtifactInfo`). */
export interface Announced {
  name: string;
  size: number;
  sha256: string;
}

export interface LedgerEntry {
  name: string;
  info?: Announced;
  /** Bytes written, contiguous from 0. */
  offset: number;
  /** The last chunk arrived (or the file was found whole on disk). */
  complete: boolean;
  /** Verified and placed in the folder. */
  placed: boolean;
  error?: string;
  /** The offset a resend was asked for, so one hole asks once. */
  resendAsked?: number;
  duplicateBytes: number;
}

/** A chunk, as the ledger needs it. */
export interface ChunkFields {
  offset: number;
  length: number;
  last: boolean;
  /** Whether its data matches its own SHA-256; asked only when it matters (hashing costs). */
  hashOk: () => boolean;
  /** It carries no SHA-256 of its own (allowed only in a sealed frame: see ArtifactReceiver.accept). */
  unhashed?: boolean;
}

/**
 * What to do with a chunk: write its last `fresh` bytes at the entry's offset (`fresh` may be 0 for a
 * pure repeat), ack `done` again (a file already whole), ask a resend from the entry's offset (a hole;
 * `ask` false when that was asked already), discard the file (`fail`), or nothing (`drop`).
 */
export type ChunkAction =
  | { kind: 'write'; fresh: number }
  | { kind: 'whole' }
  | { kind: 'hole'; ask: boolean }
  | { kind: 'fail'; why: string }
  | { kind: 'drop' };

export class ReceiveLedger {
  readonly #entries = new Map<string, LedgerEntry>();
  readonly #maxBytes: number;
  readonly #flag: string;
  /** Bytes written, all files. */
  #bytes = 0;
  /** Bytes announced, all rounds. */
  #announced = 0;
  #duplicateBytes = 0;

  constructor(maxBytes: number, flag = LIMIT_FLAG) {
    this.#maxBytes = maxBytes;
    this.#flag = flag;
  }

  get bytes(): number {
    return this.#bytes;
  }

  get duplicateBytes(): number {
    return this.#duplicateBytes;
  }

  get size(): number {
    return this.#entries.size;
  }

  get(name: string): LedgerEntry | undefined {
    return this.#entries.get(name);
  }

  entries(): IterableIterator<[string, LedgerEntry]> {
    return this.#entries.entries();
  }

  /** The entry of a (sanitised) name, created empty when new. */
  open(name: string): LedgerEntry {
    let e = this.#entries.get(name);
    if (!e) {
      e = { name, offset: 0, complete: false, placed: false, duplicateBytes: 0 };
      this.#entries.set(name, e);
    }
    return e;
  }

  delete(name: string): void {
    this.#entries.delete(name);
  }

  /**
   * Checks an announcement (names, hashes, duplicates, limits with what was announced before) and
   * records it. Returns the new entries and those announced before with the same size and hash (a
   * command resent after a reconnect). Throws {@link ArtifactError}, recording nothing.
   */
  announce(files: readonly Announced[]): { fresh: LedgerEntry[]; again: LedgerEntry[] } {
    if (files.length > MAX_ARTIFACT_FILES) {
      throw new ArtifactError(
        'too_large',
        `${files.length} files, more than ${MAX_ARTIFACT_FILES} per transfer`,
      );
    }
    const fresh: Announced[] = [];
    const again: LedgerEntry[] = [];
    const names = new Set<string>();
    for (const info of files) {
      const name = sanitizeArtifactName(info.name);
      if (names.has(name))
        throw new ArtifactError('duplicate', `two artifacts are named ${JSON.stringify(name)}`);
      names.add(name);
      if (!/^[0-9a-f]{64}$/.test(info.sha256))
        throw new ArtifactError('integrity', `artifact ${name} has no valid sha256`);
      const prev = this.#entries.get(name)?.info;
      if (prev) {
        if (prev.size === info.size && prev.sha256 === info.sha256) {
          again.push(this.#entries.get(name)!);
          continue;
        }
        throw new ArtifactError(
          'duplicate',
          `artifact ${JSON.stringify(name)} was already announced for this task; give the new file another name`,
        );
      }
      fresh.push({ name, size: info.size, sha256: info.sha256 });
    }
    checkArtifactLimit(fresh, this.#maxBytes, this.#flag, this.#announced);
    this.#announced += fresh.reduce((n, f) => n + f.size, 0);
    return {
      fresh: fresh.map((info) => Object.assign(this.open(info.name), { info })),
      again,
    };
  }

  /** Decides what to do with a chunk of `e`. */
  plan(e: LedgerEntry, c: ChunkFields): ChunkAction {
    if (e.error) return { kind: 'drop' };
    if (e.complete || e.placed) return { kind: 'whole' };
    if (c.offset > e.offset) {
      const ask = e.resendAsked !== e.offset;
      e.resendAsked = e.offset;
      return { kind: 'hole', ask };
    }
    if (!c.hashOk()) {
      const why = c.unhashed
        ? `chunk at offset ${c.offset} carries no SHA-256 and was not sealed end to end (run both ends with the same --a2a-e2ee)`
        : `chunk at offset ${c.offset} does not match its SHA-256`;
      return { kind: 'fail', why };
    }
    const end = c.offset + c.length;
    if (e.info && end > e.info.size)
      return { kind: 'fail', why: `more bytes than the announced ${e.info.size}` };
    if (end > this.#maxBytes)
      return { kind: 'fail', why: `larger than the limit of ${this.#maxBytes} bytes (${this.#flag})` };
    const fresh = Math.max(0, end - e.offset);
    if (!e.info && this.#bytes + fresh > this.#maxBytes) {
      return {
        kind: 'fail',
        why: `the task's files exceed the limit of ${this.#maxBytes} bytes (${this.#flag})`,
      };
    }
    return { kind: 'write', fresh };
  }

  /** A planned chunk was written: `fresh` new bytes, the rest repeats. */
  wrote(e: LedgerEntry, c: ChunkFields, fresh: number): void {
    e.offset = Math.max(c.offset + c.length, e.offset);
    this.#bytes += fresh;
    this.#count(e, c.length - fresh);
  }

  /** Bytes that arrived again for a file already whole. */
  repeated(e: LedgerEntry, bytes: number): void {
    this.#count(e, bytes);
  }

  /** The chunk with `last` was written: why the file is wrong, or undefined when it may be complete. */
  lastProblem(e: LedgerEntry, c: ChunkFields): string | undefined {
    const end = c.offset + c.length;
    if (end !== e.offset) return `the last chunk ends at ${end}, but ${e.offset} bytes arrived`;
    if (e.info && e.offset !== e.info.size) return `${e.offset} bytes arrived, ${e.info.size} were announced`;
    return undefined;
  }

  /** `bytes` of the file were found on disk (kept from before a restart). */
  recovered(e: LedgerEntry, bytes: number): void {
    e.offset = bytes;
    this.#bytes += bytes;
  }

  #count(e: LedgerEntry, dup: number): void {
    e.duplicateBytes += dup;
    this.#duplicateBytes += dup;
  }
}
