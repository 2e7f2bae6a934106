/**
 * bin/nfltr.js's V8 code cache: written on a command's first run, used (not rewritten) on the next,
 * replaced when it does not fit, skipped where it cannot be written or when NODE_DISABLE_COMPILE_CACHE
 * is set; the command's output is the same in every case.
 */
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { nfltr, tempDir } from '../helpers/processes.js';

const run = (cacheHome: string, extra: NodeJS.ProcessEnv = {}) =>
  nfltr(['keys', '--help'], { env: { XDG_CACHE_HOME: cacheHome, NODE_DISABLE_COMPILE_CACHE: '', ...extra } });
const caches = (cacheHome: string) => {
  const dir = join(cacheHome, 'nfltr/code-cache');
  return existsSync(dir) ? readdirSync(dir).map((f) => join(dir, f)) : [];
};

describe('code cache', () => {
  it('is written on the first run, used on the next, and replaced when it does not fit', async () => {
    const home = tempDir();
    const first = await run(home);
    expect(first.code).toBe(0);
    const [file, ...more] = caches(home);
    expect(more).toEqual([]);
    expect(file).toMatch(new RegExp(`${process.version}-${process.arch}-\\d+-\\d+-keys\\.bin$`));
    expect((statSync(file!).mode & 0o777).toString(8)).toBe('600');
    const { mtimeMs } = statSync(file!);

    // Used as it is: V8 took it, so it is not written again.
    const second = await run(home);
    expect(second.stdout).toBe(first.stdout);
    expect(statSync(file!).mtimeMs).toBe(mtimeMs);

    writeFileSync(file!, 'not a code cache');
    const third = await run(home);
    expect(third.stdout).toBe(first.stdout);
    expect(readFileSync(file!, 'utf8')).not.toBe('not a code cache');
  });

  it('is skipped, with the same output, when turned off or when its folder cannot be written', async () => {
    const off = tempDir();
    const plain = await run(off, { NODE_DISABLE_COMPILE_CACHE: '1' });
    expect(plain.code).toBe(0);
    expect(caches(off)).toEqual([]);

    // A file where the folder should be: no folder can be made there, even by root.
    const blocked = join(tempDir(), 'cache');
    writeFileSync(blocked, '');
    const unwritable = await run(blocked);
    expect(unwritable.code).toBe(0);
    expect(unwritable.stdout).toBe(plain.stdout);
    expect(unwritable.stderr).toBe('');
  });
});
