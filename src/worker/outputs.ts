/**
 * @module The files a task returns: what the executor left in `output_dir`, plus files the tool result
 * links to (MCP `resource_link` items with a `file://` uri inside the task folder). Symbolic links in
 * `output_dir` are neither followed nor returned (docs/executor-contract.md §6), and a linked file
 * whose real path leaves the task folder is refused, so nothing outside it can leak.
 */
import { realpath, stat } from 'node:fs/promises';
import { relative, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ArtifactError, type LocalFile, sanitizeArtifactName, walkFiles } from '../agent/artifacts/index.js';

export interface OutputListing {
  files: LocalFile[];
  /** Entries left out, with why (symlinks, unusable names, special files, links outside the folder). */
  skipped: string[];
}

/** `output_dir`'s regular files; symlinks, unusable names and special files are skipped, saying why. */
export async function listOutputFiles(root: string): Promise<OutputListing> {
  const skipped: string[] = [];
  const files = await walkFiles(root, {
    followLinks: false,
    skip: (entry, why) => skipped.push(`${entry} (${why})`),
  });
  return { files, skipped };
}

/** The `file://` uris of a tool result's `resource_link` content items. */
export function resourceLinkUris(content: unknown): string[] {
  if (!Array.isArray(content)) return [];
  const out: string[] = [];
  for (const c of content) {
    if (c && typeof c === 'object' && (c as { type?: unknown }).type === 'resource_link') {
      const uri = (c as { uri?: unknown }).uri;
      if (typeof uri === 'string' && uri.startsWith('file:')) out.push(uri);
    }
  }
  return out;
}

const within = (path: string, root: string) => path === root || path.startsWith(root + sep);

/**
 * Everything a task returns: `output_dir` as {@link listOutputFiles} lists it, then each file a
 * `resource_link` of the result names, if its real path is a regular file inside the task folder. A
 * linked file inside `output_dir` is already listed; one elsewhere in the task folder is named by its
 * path relative to the task folder (`input/data.csv`). Two different files under one name are refused.
 */
export async function collectResultFiles(opts: {
  taskDir: string;
  outputDir: string;
  content?: unknown;
}): Promise<OutputListing> {
  const listing = await listOutputFiles(opts.outputDir);
  const uris = resourceLinkUris(opts.content);
  if (uris.length === 0) return listing;
  const realTask = await realpath(opts.taskDir);
  const realOutput = await realpath(opts.outputDir).catch(() => '');
  const byReal = new Map<string, LocalFile>();
  for (const f of listing.files) byReal.set(await realpath(f.path), f);
  const names = new Set(listing.files.map((f) => f.name));
  for (const uri of uris) {
    let path: string;
    try {
      path = fileURLToPath(uri);
    } catch {
      listing.skipped.push(`${uri} (not a local file uri)`);
      continue;
    }
    const real = await realpath(path).catch(() => '');
    if (!real) {
      listing.skipped.push(`${uri} (no such file)`);
      continue;
    }
    if (!within(real, realTask)) {
      listing.skipped.push(`${uri} (outside the task folder ${opts.taskDir})`);
      continue;
    }
    if (byReal.has(real)) continue;
    const st = await stat(real);
    if (!st.isFile()) {
      listing.skipped.push(`${uri} (not a regular file)`);
      continue;
    }
    const base = realOutput && within(real, realOutput) ? realOutput : realTask;
    let name: string;
    try {
      name = sanitizeArtifactName(relative(base, real).split(sep).join('/'));
    } catch (err) {
      listing.skipped.push(`${uri} (${(err as Error).message})`);
      continue;
    }
    if (names.has(name)) {
      throw new ArtifactError(
        'duplicate',
        `two result files are named ${JSON.stringify(name)} (one in output_dir, one linked by the result as ${uri}); rename one`,
      );
    }
    const file = { name, path: real, size: st.size };
    names.add(name);
    byReal.set(real, file);
    listing.files.push(file);
  }
  return listing;
}
