#!/usr/bin/env node
/**
 * Runs the bundled CLI (dist/bundle/nfltr.cjs, made by scripts/bundle.mjs) with a V8 code cache, which
 * Node 20 lacks (22 has NODE_COMPILE_CACHE): a process skips compiling what the same command compiled the
 * last time it started. Caches live in $XDG_CACHE_HOME/nfltr/code-cache (~/.cache by default), one per
 * command, for this Node and this build only; V8 checks each against the source and its flags and ignores
 * one that does not fit. An unwritable cache only costs start-up time. NODE_DISABLE_COMPILE_CACHE=1
 * (Node's own switch) turns it off.
 */
import { mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Script } from 'node:vm';

const bundle = fileURLToPath(new URL('../dist/bundle/nfltr.cjs', import.meta.url));

/** Where this command's cache is, or undefined when caching is off or there is no home for it. */
function cacheLocation() {
  if (process.env.NODE_DISABLE_COMPILE_CACHE) return undefined;
  try {
    const dir = join(process.env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'nfltr', 'code-cache');
    const { size, mtimeMs } = statSync(bundle);
    const build = `${process.version}-${process.arch}-${size}-${Math.trunc(mtimeMs)}-`;
    const command = /^[a-z][a-z0-9-]{0,31}$/.test(process.argv[2] ?? '') ? process.argv[2] : 'other';
    return { dir, build, file: join(dir, `${build}${command}.bin`) };
  } catch {
    return undefined;
  }
}

const cache = cacheLocation();
let cachedData;
try {
  cachedData = cache && readFileSync(cache.file);
} catch {
  // none yet
}
// The wrapper Node's CommonJS loader puts around a module's source.
const source = `(function (exports, require, module, __filename, __dirname) {${readFileSync(bundle, 'utf8')}\n})`;
const script = new Script(source, { filename: bundle, cachedData });

if (cache && (!cachedData || script.cachedDataRejected)) {
  let saved = false;
  // Once start-up has run (its functions are compiled by then, so they are in the cache), or at exit.
  const save = () => {
    if (saved) return;
    saved = true;
    try {
      mkdirSync(cache.dir, { recursive: true, mode: 0o700 });
      // Caches of another build or Node (an upgrade) are of no use again.
      for (const f of readdirSync(cache.dir))
        if (!f.startsWith(cache.build)) rmSync(join(cache.dir, f), { force: true });
      const tmp = `${cache.file}.${process.pid}.tmp`;
      writeFileSync(tmp, script.createCachedData(), { mode: 0o600 });
      renameSync(tmp, cache.file); // atomic: processes starting at once never read half a cache
    } catch {
      // a cache we cannot write costs start-up time only
    }
  };
  setTimeout(save, 2_000).unref();
  process.once('exit', save);
}

const module = { exports: {} };
script.runInThisContext()(module.exports, createRequire(bundle), module, bundle, dirname(bundle));
