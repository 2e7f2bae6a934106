/**
 * Bundles the compiled CLI (dist/cli/main.js, from `tsc`) into dist/bundle/, which `bin/nfltr.js` runs.
 * Why: Node 20 loads an ESM module graph file by file (resolve, stat, read, compile for each of ~600 files
 * of grpc-js, the MCP SDKs, zod, protobuf-es), and every nfltr process pays that at start: the relay,
 * planner and worker, and the executor the worker starts per task. One chunk per command (splitting keeps
 * `cli/main.ts`'s lazy imports lazy) loads in about half the time. dist/ stays as tsc emits it for
 * bench/ and anyone importing modules.
 */
import { rmSync } from 'node:fs';
import { resolve } from 'node:path';
import { build } from 'esbuild';

const ROOT = resolve(import.meta.dirname, '..');
const OUT = resolve(ROOT, 'dist/bundle');

rmSync(OUT, { recursive: true, force: true }); // chunk names are content hashes: no stale ones left behind
await build({
  absWorkingDir: ROOT,
  entryPoints: { main: 'dist/cli/main.js' },
  outdir: OUT,
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  // Prefer a package's ESM build: jsonc-parser's `main` is a UMD file whose inner requires a bundler
  // cannot follow.
  mainFields: ['module', 'main'],
  // Native bindings load their .node file relative to their own package; pg-native is pg's optional one.
  external: ['better-sqlite3', 'node-pty', 'pg-native'],
  // Bundled CommonJS packages call require() for Node built-ins; an ES module has none of its own.
  banner: {
    js: "import { createRequire as __nfltrCreateRequire } from 'node:module'; const require = __nfltrCreateRequire(import.meta.url);",
  },
  sourcemap: 'linked',
  sourcesContent: false,
  logLevel: 'warning',
});
