/**
 * @module The files an executor left in `output_dir`, as artifacts. Symbolic links are neither followed
 * nor returned (docs/executor-contract.md §6), so nothing outside the folder can leak through one.
 */
import { lstat, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { type LocalFile, sanitizeArtifactName } from '../agent/artifacts.js';

export interface OutputListing {
  files: LocalFile[];
  /** Entries left out, with why (symlinks, unusable names, special files). */
  skipped: string[];
}

export async function listOutputFiles(root: string): Promise<OutputListing> {
  const files: LocalFile[] = [];
  const skipped: string[] = [];
  const walk = async (dir: string, prefix: string) => {
    const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
    entries.sort((a, b) => a.name.localeCompare(b.name));
    for (const e of entries) {
      const rel = prefix + e.name;
      const path = join(dir, e.name);
      if (e.isSymbolicLink()) {
        skipped.push(`${rel} (symbolic link)`);
      } else if (e.isDirectory()) {
        await walk(path, `${rel}/`);
      } else if (e.isFile()) {
        let name: string;
        try {
          name = sanitizeArtifactName(rel);
        } catch (err) {
          skipped.push(`${rel} (${(err as Error).message})`);
          continue;
        }
        const st = await lstat(path);
        files.push({ name, path, size: st.size });
      } else {
        skipped.push(`${rel} (not a regular file)`);
      }
    }
  };
  await walk(root, '');
  return { files, skipped };
}
