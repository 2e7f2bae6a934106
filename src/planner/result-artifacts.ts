/**
 * @module Result files of one task, received on the planner. The worker streams them as chunks BEFORE
 * the event that lists them (`completed`, or `failed` with partial output), so chunks are staged in a
 * private folder, each checked against its own SHA-256 and offset, and only moved to the task's folder
 * once the listing event names them with a matching size and whole-file SHA-256.
 */
import { createHash } from 'node:crypto';
import { type FileHandle, mkdir, open, rename, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { sanitizeArtifactName } from '../agent/artifacts.js';
import type { ArtifactChunk, ArtifactInfo } from '../protocol/a2a.js';
import type { ArtifactRecord } from './task-state.js';

interface Staged {
  tmp: string;
  handle?: FileHandle;
  offset: number;
  hash: ReturnType<typeof createHash>;
  done?: { size: number; sha256: string };
  error?: string;
}

export interface VerifyOutcome {
  files: ArtifactRecord[];
  /** One sentence per file that failed, naming it. */
  problems: string[];
}

const sha256 = (data: Uint8Array) => createHash('sha256').update(data).digest('hex');

export class ResultArtifacts {
  readonly #finalDir: string;
  readonly #stageDir: string;
  readonly #maxBytes: number;
  readonly #staged = new Map<string, Staged>();
  #bytes = 0;

  constructor(opts: { finalDir: string; stageDir: string; maxBytes: number }) {
    this.#finalDir = opts.finalDir;
    this.#stageDir = opts.stageDir;
    this.#maxBytes = opts.maxBytes;
  }

  /**
   * Takes one chunk. Never throws: a bad chunk marks its file failed, which {@link verify} reports.
   * Callers serialise calls (one task's messages are handled in order).
   */
  async accept(chunk: ArtifactChunk): Promise<void> {
    let name: string;
    try {
      name = sanitizeArtifactName(chunk.name);
    } catch (err) {
      this.#staged.set(chunk.name, {
        tmp: '',
        offset: 0,
        hash: createHash('sha256'),
        error: (err as Error).message,
      });
      return;
    }
    let s = this.#staged.get(name);
    const offset = Number(chunk.offset);
    if (s && offset === 0 && s.offset !== 0) {
      // The worker restarted this file (a replay after a reconnect): start it over.
      await this.#discard(s);
      this.#bytes -= s.offset;
      s = undefined;
    }
    if (s?.error) return;
    if (!s) {
      const tmp = join(this.#stageDir, ...name.split('/'));
      s = { tmp, offset: 0, hash: createHash('sha256') };
      this.#staged.set(name, s);
    }
    const fail = async (why: string) => {
      await this.#discard(s);
      s.error = `artifact ${name} discarded: ${why}`;
    };
    if (s.done) return fail('a second copy arrived after the file was complete');
    if (offset !== s.offset) return fail(`chunk at offset ${offset}, expected ${s.offset}`);
    if (sha256(chunk.data) !== chunk.chunkSha256)
      return fail(`chunk at offset ${offset} does not match its SHA-256`);
    if (this.#bytes + chunk.data.length > this.#maxBytes) {
      return fail(`the task's artifacts exceed the limit of ${this.#maxBytes} bytes (--max-artifact-bytes)`);
    }
    try {
      if (!s.handle) {
        await mkdir(dirname(s.tmp), { recursive: true });
        s.handle = await open(s.tmp, 'w');
      }
      await s.handle.write(chunk.data);
    } catch (err) {
      return fail(`cannot write ${s.tmp}: ${(err as Error).message}`);
    }
    s.hash.update(chunk.data);
    s.offset += chunk.data.length;
    this.#bytes += chunk.data.length;
    if (chunk.last) {
      await s.handle.close();
      s.handle = undefined;
      s.done = { size: s.offset, sha256: s.hash.digest('hex') };
    }
  }

  /**
   * Checks the files an event lists against what arrived, and moves the good ones into the task's
   * folder. Files that arrived but are not listed are dropped.
   */
  async verify(listed: ArtifactInfo[]): Promise<VerifyOutcome> {
    const files: ArtifactRecord[] = [];
    const problems: string[] = [];
    const wanted = new Set<string>();
    for (const info of listed) {
      let name: string;
      try {
        name = sanitizeArtifactName(info.name);
      } catch (err) {
        problems.push((err as Error).message);
        continue;
      }
      wanted.add(name);
      const s = this.#staged.get(name);
      const size = Number(info.size);
      if (!s) problems.push(`artifact ${name} was listed by the worker but never arrived`);
      else if (s.error) problems.push(s.error);
      else if (!s.done) problems.push(`artifact ${name} is incomplete: ${s.offset} of ${size} bytes arrived`);
      else if (s.done.size !== size) {
        problems.push(`artifact ${name} discarded: ${s.done.size} bytes arrived, ${size} were announced`);
      } else if (s.done.sha256 !== info.sha256) {
        problems.push(`artifact ${name} discarded: whole-file SHA-256 does not match`);
      } else {
        const path = join(this.#finalDir, ...name.split('/'));
        await mkdir(dirname(path), { recursive: true });
        await rename(s.tmp, path);
        this.#staged.delete(name);
        files.push({ name, size, sha256: info.sha256, path });
      }
    }
    for (const [name, s] of this.#staged) {
      if (!wanted.has(name) || s.error) await this.#discard(s);
    }
    for (const name of wanted) this.#staged.delete(name);
    return { files, problems };
  }

  /** Drops every staged file (the task ended without listing them, or failed). */
  async abort(): Promise<void> {
    for (const s of this.#staged.values()) await this.#discard(s);
    this.#staged.clear();
    await rm(this.#stageDir, { recursive: true, force: true }).catch(() => {});
  }

  async #discard(s: Staged): Promise<void> {
    await s.handle?.close().catch(() => {});
    s.handle = undefined;
    if (s.tmp) await rm(s.tmp, { force: true });
  }
}
