/** @module Artifact names: relative, `/`-separated, with nothing that could leave the folder they land in. */
import { sep } from 'node:path';
import { ArtifactError } from './errors.js';

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

export function assertUniqueNames(names: Iterable<string>): void {
  const seen = new Set<string>();
  for (const n of names) {
    if (seen.has(n)) throw new ArtifactError('duplicate', `two artifacts are named ${JSON.stringify(n)}`);
    seen.add(n);
  }
}

/** `path` is `root` or below it (both absolute, already resolved). */
export const inside = (path: string, root: string): boolean =>
  path === root || path.startsWith(root.endsWith(sep) ? root : root + sep);
