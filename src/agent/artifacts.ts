/**
 * @module Files over an A2A task channel: names sanitised, chunks hashed one by one and the whole file
 * hashed, writes confined to one folder. Both directions use it (planner → worker input files, worker →
 * planner results).
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { type FileHandle, lstat, mkdir, open, readdir, realpath, rename, rm } from 'node:fs/promises';
import { dirname, join, relative, sep } from 'node:path';
import { create } from '@bufbuild/protobuf';
import {
  type ArtifactChunk,
  ArtifactChunkSchema,
  type ArtifactInfo,
  ArtifactInfoSchema,
} from '../protocol/a2a.js';
import type { A2aBody } from './a2a.js';

export const ARTIFACT_CHUNK_BYTES = 256 * 1024;
export const DEFAULT_MAX_ARTIFACT_BYTES = 1024 * 1024 * 1024;

export class ArtifactError extends Error {
  constructor(
    readonly code: 'bad_name' | 'duplicate' | 'too_large' | 'integrity' | 'unreadable' | 'unexpected',
    message: string,
  ) {
    super(message);
    this.name = 'ArtifactError';
  }
}

const DEVICE_NAMES = /^(con|prn|aux|nul|com[0-9]|lpt[0-9])(\..*)?$/i;

/** Checks a relative artifact name; returns it normalised to `/` separators, or throws naming the problem. */
export function sanitizeArtifactName(name: string): string {
  const bad = (why: string) =>
    new ArtifactError('bad_name', `artifact name ${JSON.stringify(name)} refused: ${why}`);
  if (name.length === 0 || name.length > 1024) throw bad('must be 1-1024 characters');
  // biome-ignore lint/suspicious/noControlCharactersInRegex: refusing control characters is the point
  if (/[\0-\x1f]/.test(name)) throw bad('control characters');
  const normalised = name.replaceAll('\\', '/');
  if (normalised.startsWith('/') || /^[A-Za-z]:/.test(normalised))
    throw bad('absolute paths are not allowed');
  const parts = normalised.split('/');
  for (const p of parts) {
    if (p === '..') throw bad("'..' is not allowed");
    if (p === '' || p === '.') throw bad('empty or "." path segments');
    if (DEVICE_NAMES.test(p)) throw bad(`"${p}" is a device name`);
  }
  return parts.join('/');
}

export interface LocalFile {
  /** Relative name the other side will see. */
  name: string;
  path: string;
  size: number;
}

/**
 * Lists the regular files under `root` (recursively) as artifact names. Symlinks are followed only when
 * they stay inside `root`; one pointing out is refused.
 */
export async function listFiles(root: string, prefix = ''): Promise<LocalFile[]> {
  const realRoot = await realpath(root);
  const out: LocalFile[] = [];
  const walk = async (dir: string) => {
    const entries = await readdir(dir, { withFileTypes: true });
    entries.sort((a, b) => a.name.localeCompare(b.name));
    for (const e of entries) {
      const path = join(dir, e.name);
      let target = path;
      if (e.isSymbolicLink()) {
        target = await realpath(path).catch(() => '');
        if (!target || (target !== realRoot && !target.startsWith(realRoot + sep))) {
          throw new ArtifactError('bad_name', `symlink ${relative(root, path)} points outside ${root}`);
        }
      }
      const st = await lstat(target);
      if (st.isDirectory()) await walk(path);
      else if (st.isFile()) {
        const name = sanitizeArtifactName(prefix + relative(root, path).split(sep).join('/'));
        out.push({ name, path: target, size: st.size });
      }
    }
  };
  await walk(root);
  return out;
}

/**
 * Resolves local paths the planner names (files or folders) into artifact files; a missing or
 * unreadable path is refused with the path named. Duplicate names are refused.
 */
export async function resolveLocalPaths(paths: string[]): Promise<LocalFile[]> {
  const files: LocalFile[] = [];
  for (const p of paths) {
    const st = await lstat(p).catch((err: NodeJS.ErrnoException) => {
      throw new ArtifactError('unreadable', `artifact_files: cannot read ${p}: ${err.code ?? err.message}`);
    });
    const base =
      p
        .replace(/[\\/]+$/, '')
        .split(/[\\/]/)
        .pop() ?? p;
    if (st.isDirectory()) files.push(...(await listFiles(p, `${base}/`)));
    else if (st.isFile() || st.isSymbolicLink()) {
      const real = await realpath(p).catch(() => {
        throw new ArtifactError('unreadable', `artifact_files: ${p} is a dangling symlink`);
      });
      const rst = await lstat(real);
      if (!rst.isFile()) throw new ArtifactError('unreadable', `artifact_files: ${p} is not a regular file`);
      files.push({ name: sanitizeArtifactName(base), path: real, size: rst.size });
    } else throw new ArtifactError('unreadable', `artifact_files: ${p} is not a file or folder`);
  }
  assertUniqueNames(files.map((f) => f.name));
  return files;
}

export function assertUniqueNames(names: string[]): void {
  const seen = new Set<string>();
  for (const n of names) {
    if (seen.has(n)) throw new ArtifactError('duplicate', `two artifacts are named ${JSON.stringify(n)}`);
    seen.add(n);
  }
}

const sha256 = (data: Uint8Array) => createHash('sha256').update(data).digest('hex');

export async function hashFile(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path)) h.update(chunk as Buffer);
  return h.digest('hex');
}

/** Describes files (name, size, whole-file hash) before they are streamed. */
export async function describeFiles(files: LocalFile[]): Promise<ArtifactInfo[]> {
  return Promise.all(
    files.map(async (f) =>
      create(ArtifactInfoSchema, { name: f.name, size: BigInt(f.size), sha256: await hashFile(f.path) }),
    ),
  );
}

export interface SendFilesOptions {
  taskId: string;
  /** Sends one message on the task channel. */
  send: (msg: A2aBody) => Promise<void>;
  /** Resolves when the link has room for more (flow control: never buffer a whole file). */
  whenWritable: () => Promise<void>;
  onProgress?: (bytesDone: number, bytesTotal: number) => void;
  chunkBytes?: number;
}

/** Streams files as chunks on a task channel, in order. */
export async function sendFiles(files: LocalFile[], opts: SendFilesOptions): Promise<void> {
  const total = files.reduce((n, f) => n + f.size, 0);
  let done = 0;
  const chunkBytes = opts.chunkBytes ?? ARTIFACT_CHUNK_BYTES;
  for (const f of files) {
    let offset = 0;
    const stream = createReadStream(f.path, { highWaterMark: chunkBytes });
    let sentLast = false;
    for await (const buf of stream) {
      const data = buf as Buffer;
      await opts.whenWritable();
      const last = offset + data.length >= f.size;
      await opts.send({
        case: 'artifactChunk',
        value: create(ArtifactChunkSchema, {
          taskId: opts.taskId,
          name: f.name,
          offset: BigInt(offset),
          data,
          chunkSha256: sha256(data),
          last,
        }),
      });
      offset += data.length;
      done += data.length;
      sentLast ||= last;
      opts.onProgress?.(done, total);
    }
    if (!sentLast) {
      // Empty file (or one that shrank): one final chunk closes it.
      await opts.send({
        case: 'artifactChunk',
        value: create(ArtifactChunkSchema, {
          taskId: opts.taskId,
          name: f.name,
          offset: BigInt(offset),
          data: new Uint8Array(),
          chunkSha256: sha256(new Uint8Array()),
          last: true,
        }),
      });
    }
  }
}

interface Incoming {
  handle: FileHandle;
  tmp: string;
  final: string;
  offset: number;
  hash: ReturnType<typeof createHash>;
}

/**
 * Receives chunks into `dir`, only for names announced in advance, verifying each chunk and then the
 * whole file against the announced SHA-256. Nothing is ever written outside `dir`; a file that fails
 * verification is deleted.
 */
export class ArtifactReceiver {
  readonly #dir: string;
  readonly #maxBytes: number;
  readonly #expected = new Map<string, ArtifactInfo>();
  readonly #incoming = new Map<string, Incoming>();
  readonly #done = new Map<string, string>();
  #bytes = 0;
  #chain: Promise<unknown> = Promise.resolve();

  constructor(dir: string, opts: { maxBytes?: number } = {}) {
    this.#dir = dir;
    this.#maxBytes = opts.maxBytes ?? DEFAULT_MAX_ARTIFACT_BYTES;
  }

  /** Announces files that will arrive; refuses bad or duplicate names and sizes over the limit. */
  expect(files: ArtifactInfo[]): void {
    let total = this.#bytes;
    for (const f of files) {
      const name = sanitizeArtifactName(f.name);
      if (this.#expected.has(name) || this.#done.has(name)) {
        throw new ArtifactError('duplicate', `artifact ${JSON.stringify(name)} was already announced`);
      }
      total += Number(f.size);
      if (total > this.#maxBytes) {
        throw new ArtifactError(
          'too_large',
          `artifacts exceed the limit of ${this.#maxBytes} bytes (--max-artifact-bytes)`,
        );
      }
      if (!/^[0-9a-f]{64}$/.test(f.sha256))
        throw new ArtifactError('integrity', `artifact ${name} has no valid sha256`);
    }
    for (const f of files) this.#expected.set(sanitizeArtifactName(f.name), f);
  }

  /** Whether every announced file has arrived and verified. */
  get complete(): boolean {
    return this.#expected.size === 0;
  }

  /** Local paths of verified files, by name. */
  get files(): Map<string, string> {
    return new Map(this.#done);
  }

  /** Takes one chunk; resolves with the finished file's path when it was the last one. Serialised. */
  accept(chunk: ArtifactChunk): Promise<{ name: string; path: string } | undefined> {
    const next = this.#chain.then(() => this.#accept(chunk));
    this.#chain = next.catch(() => {});
    return next;
  }

  async #accept(chunk: ArtifactChunk): Promise<{ name: string; path: string } | undefined> {
    const name = sanitizeArtifactName(chunk.name);
    const info = this.#expected.get(name);
    if (!info)
      throw new ArtifactError(
        'unexpected',
        `artifact chunk for ${JSON.stringify(name)}, which was not announced`,
      );
    let inc = this.#incoming.get(name);
    if (!inc) {
      const final = join(this.#dir, ...name.split('/'));
      await mkdir(dirname(final), { recursive: true });
      const tmp = `${final}.partial`;
      inc = { handle: await open(tmp, 'w'), tmp, final, offset: 0, hash: createHash('sha256') };
      this.#incoming.set(name, inc);
    }
    const fail = async (why: string) => {
      await inc.handle.close();
      await rm(inc.tmp, { force: true });
      this.#incoming.delete(name);
      this.#expected.delete(name);
      throw new ArtifactError('integrity', `artifact ${name} discarded: ${why}`);
    };
    if (Number(chunk.offset) !== inc.offset)
      return fail(`chunk at offset ${chunk.offset}, expected ${inc.offset}`);
    if (sha256(chunk.data) !== chunk.chunkSha256)
      return fail(`chunk at offset ${chunk.offset} does not match its SHA-256`);
    if (inc.offset + chunk.data.length > Number(info.size))
      return fail(`more bytes than the announced ${info.size}`);
    await inc.handle.write(chunk.data);
    inc.hash.update(chunk.data);
    inc.offset += chunk.data.length;
    this.#bytes += chunk.data.length;
    if (!chunk.last) return undefined;
    if (inc.offset !== Number(info.size))
      return fail(`${inc.offset} bytes arrived, ${info.size} were announced`);
    if (inc.hash.digest('hex') !== info.sha256) return fail('whole-file SHA-256 does not match');
    await inc.handle.close();
    await rename(inc.tmp, inc.final);
    this.#incoming.delete(name);
    this.#expected.delete(name);
    this.#done.set(name, inc.final);
    return { name, path: inc.final };
  }

  /** Drops partial files (task ended or failed). */
  async abort(): Promise<void> {
    await this.#chain;
    for (const inc of this.#incoming.values()) {
      await inc.handle.close().catch(() => {});
      await rm(inc.tmp, { force: true });
    }
    this.#incoming.clear();
  }
}
