/**
 * @module The test executors (MCP servers standing in for a real tool), bundled. Each imports the MCP SDK,
 * ~200 ES modules that Node 20 resolves, reads and compiles one by one: 0.3 s of CPU per start, against
 * 0.1 s for the same code as one file. Workers start one per task, ~130 times in `npm test`. vitest's
 * globalSetup ({@link setup}, this module) bundles them before any test file runs; the sources stay the
 * fixtures' truth, and one can still be run directly with `node test/fixtures/NAME.mjs`.
 */
import { basename, join, resolve } from 'node:path';

const TEST = resolve(import.meta.dirname, '..');
const BUNDLES = resolve(TEST, '../node_modules/.cache/nfltr-test-fixtures');

/** The executors bundled, relative to test/ (their file names are unique). */
const BUNDLED = [
  'fixtures/artifact-executor.mjs',
  'fixtures/prompt-tool-server.mjs',
  'fixtures/scripted-executor.mjs',
  'fixtures/two-tools-server.mjs',
  'fixtures/worker-stubborn-executor.mjs',
  'durability/fixtures/steady-executor.mjs',
];

/** The file to run for test fixture `name` (`scripted-executor.mjs`): its bundle, or test/fixtures/`name`. */
export function fixturePath(name: string): string {
  return BUNDLED.some((f) => basename(f) === name) ? join(BUNDLES, name) : join(TEST, 'fixtures', name);
}

/** vitest globalSetup: bundles every executor in {@link BUNDLED} (~1 s, esbuild). */
export async function setup(): Promise<void> {
  const { build } = await import('esbuild');
  await build({
    absWorkingDir: TEST,
    entryPoints: BUNDLED,
    outdir: BUNDLES,
    entryNames: '[name]',
    outExtension: { '.js': '.mjs' },
    bundle: true,
    format: 'esm',
    platform: 'node',
    // CommonJS dependencies bundled into an ES module call require(), which an ES module lacks.
    banner: {
      js: "import { createRequire } from 'node:module'; const require = createRequire(import.meta.url);",
    },
    logLevel: 'warning',
  });
}
