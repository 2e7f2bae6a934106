/**
 * @module Files on this machine as artifacts: one folder walker (planner `artifact_files`, worker
 * `output_dir`), paths the planner names, and whole-file SHA-256.
 */
import { createHash } from 'node:crypto';
import { constants, createReadStream } from 'node:fs';
import { access, lstat, readdir, realpath, stat } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';
import { create } from '@bufbuild/protobuf';
import { type ArtifactInfo, ArtifactInfoSchema } from '../../protocol/a2a.js';
import { ArtifactError, errText } from './errors.js';
import { assertUniqueNames, inside, sanitizeArtifactName } from './names.js';

export interface LocalFile {
  /** Relative name the other side will see. */
  name: string;
  path: string;
  size: number;
}

export interface WalkOptions {
  /** Put before every name (`docs/`). */
  prefix?: string;
  /**
   * Symlinks are followed while they stay inside the folder (a link out, or a folder reached twice,
   * is refused). When false they are skipped.
   */
  followLinks: boolean;
  /**
   * Given: an entry that cannot be returned (a skipped link, a bad name, a special file, an unreadable
   * subfolder) is reported here with why, and the walk goes on. Absent: it is thrown as an
   * {@link ArtifactError}.
   */
  skip?: (entry: string, why: string) => void;
}

/** Lists the regular files under `root`, recursively, sorted by name, as artifact names. */
export async function walkFiles(root: string, opts: WalkOptions): Promise<LocalFile[]> {
  const prefix = opts.prefix ?? '';
  const out: LocalFile[] = [];
  const seen = new Set<string>();
  const refuse = (rel: string, code: 'bad_name' | 'unreadable', why: string, message: string) => {
    if (!opts.skip) throw new ArtifactError(code, message);
    opts.skip(rel, why);
  };
  const realRoot = opts.followLinks ? await realpath(root) : root;
  const walk = async (dir: string, rel: string, real: string) => {
    if (seen.has(real)) throw new ArtifactError('bad_name', `${dir} is reached twice (a symlink loop)`);
    seen.add(real);
    let entries: import('node:fs').Dirent[];
    try {
      entries = await readdir(dir, { withFileTypes: true });
    } catch (err) {
      // A missing output folder is an empty one.
      if (opts.skip && rel === '' && (err as NodeJS.ErrnoException).code === 'ENOENT') return;
      return refuse(
        rel,
        'unreadable',
        `unreadable: ${errText(err)}`,
        `artifact_files: cannot read folder ${dir}: ${errText(err)}`,
      );
    }
    entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const e of entries) {
      const path = join(dir, e.name);
      const entry = rel + e.name;
      let target = path;
      if (e.isSymbolicLink()) {
        if (!opts.followLinks) {
          refuse(entry, 'bad_name', 'symbolic link', `${path} is a symbolic link`);
          continue;
        }
        target = await realpath(path).catch(() => '');
        if (!target || !inside(target, realRoot)) {
          refuse(
            entry,
            'bad_name',
            'symbolic link out of the folder',
            `artifact_files: symlink ${path} points outside ${root}; refused (copy the file in instead)`,
          );
          continue;
        }
      }
      const st = e.isSymbolicLink() ? await stat(target) : await lstat(path);
      if (st.isDirectory()) {
        await walk(path, `${entry}/`, opts.followLinks ? await realpath(target) : path);
      } else if (st.isFile()) {
        let name: string;
        try {
          name = sanitizeArtifactName(prefix + entry);
        } catch (err) {
          refuse(entry, 'bad_name', (err as Error).message, (err as Error).message);
          continue;
        }
        out.push({ name, path: target, size: st.size });
      } else refuse(entry, 'unreadable', 'not a regular file', `${path} is not a regular file`);
    }
  };
  await walk(root, '', realRoot);
  return out;
}

/**
 * Lists the regular files under `root` (recursively) as artifact names. Symlinks are followed only when
 * they stay inside `root`; one pointing out is refused. A folder reached twice (a link loop) is refused.
 */
export function listFiles(root: string, prefix = ''): Promise<LocalFile[]> {
  return walkFiles(root, { prefix, followLinks: true });
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

export const sha256 = (data: Uint8Array): string => createHash('sha256').update(data).digest('hex');

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
