/**
 * @module `constraints.allowed_paths`: which repository paths a task may change.
 *
 * Each entry is a path relative to the repository root, with `/` separators:
 * - without wildcards it names a file or a folder: `README.md` allows that file, `src` or `src/` allows
 *   everything under `src/`;
 * - with wildcards it is a glob over the whole path: `*` matches within one path segment, `?` one
 *   character of a segment, `**` any number of segments (`src/**\/*.ts`, `docs/*.md`, `**\/fixtures/**`).
 * Absolute paths and `..` segments are refused: they cannot name anything inside the repository.
 */

/** A compiled allowed-paths list. */
export interface PathRule {
  pattern: string;
  test(path: string): boolean;
}

const escapeRegExp = (s: string): string => s.replace(/[.+^${}()|[\]\\/-]/g, '\\$&');

/** Compiles one entry; throws with a message naming it when it can never match a repository path. */
export function compilePathRule(pattern: string): PathRule {
  const p = pattern
    .trim()
    .replace(/^(\.\/)+/, '')
    .replace(/\/{2,}/g, '/');
  if (p === '' || p === '.') return { pattern, test: () => true };
  if (p.startsWith('/')) throw new Error(`allowed path ${JSON.stringify(pattern)} is absolute`);
  if (p.split('/').includes('..')) throw new Error(`allowed path ${JSON.stringify(pattern)} contains ".."`);
  if (!/[*?]/.test(p)) {
    const dir = p.replace(/\/$/, '');
    return { pattern, test: (path) => path === dir || path.startsWith(`${dir}/`) };
  }
  let source = '';
  for (let i = 0; i < p.length; i++) {
    const c = p[i]!;
    if (c === '*' && p[i + 1] === '*') {
      while (p[i + 1] === '*') i++;
      if (p[i + 1] === '/') {
        i++;
        source += '(?:.*/)?'; // `**/` : zero or more whole segments
      } else {
        source += '.*';
      }
    } else if (c === '*') {
      source += '[^/]*';
    } else if (c === '?') {
      source += '[^/]';
    } else {
      source += escapeRegExp(c);
    }
  }
  // A glob ending in `/` names a folder: allow what is under it.
  const re = new RegExp(p.endsWith('/') ? `^${source}.*$` : `^${source}$`);
  return { pattern, test: (path) => re.test(path) };
}

/** The paths no rule allows, in input order. */
export function disallowedPaths(paths: readonly string[], rules: readonly PathRule[]): string[] {
  return paths.filter((path) => !rules.some((r) => r.test(path)));
}
