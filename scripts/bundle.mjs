/**
 * Bundles the compiled CLI (dist/cli/main.js, from `tsc`) into one CommonJS file, dist/bundle/nfltr.cjs,
 * which `bin/nfltr.js` runs with a V8 code cache.
 * Why: Node 20 loads an ES module graph file by file (resolve, stat, read, compile for each of ~600 files
 * of grpc-js, the MCP SDKs, zod, protobuf-es) and keeps no compiled code between runs, and every nfltr
 * process pays that at start: the relay, planner and worker, and the executor a worker starts per task.
 * One file loads in about half the time; as a classic script its compiled code can be cached (ES modules
 * cannot be on Node 20). Commands stay lazy: esbuild runs a module's top level only when it is imported.
 * dist/ stays as tsc emits it for bench/ and anyone importing modules.
 */
import { rmSync } from 'node:fs';
import { resolve } from 'node:path';
import { build } from 'esbuild';

const ROOT = resolve(import.meta.dirname, '..');
const OUT = resolve(ROOT, 'dist/bundle');

rmSync(OUT, { recursive: true, force: true });
await build({
  absWorkingDir: ROOT,
  entryPoints: ['dist/cli/main.js'],
  outfile: resolve(OUT, 'nfltr.cjs'),
  bundle: true,
  format: 'cjs',
  platform: 'node',
  target: 'node20',
  // Prefer a package's ESM build: jsonc-parser's `main` is a UMD file whose inner requires a bundler
  // cannot follow.
  mainFields: ['module', 'main'],
  // Native bindings load their .node file relative to their own package; pg-native is pg's optional one.
  external: ['better-sqlite3', 'node-pty', 'pg-native'],
  // `await import('node-pty')` becomes a require: a script run through node:vm has no module loader
  // for import() unless an experimental option (that warns on stderr) gives it one.
  supported: { 'dynamic-import': false },
  // import.meta.url, which our modules resolve package.json and assets/ against, is the bundle's own URL
  // (two folders down from the package root, as each module is in dist/).
  define: { 'import.meta.url': '__nfltrBundleUrl' },
  banner: { js: "const __nfltrBundleUrl = require('node:url').pathToFileURL(__filename).href;" },
  sourcemap: 'linked',
  sourcesContent: false,
  logLevel: 'warning',
});
