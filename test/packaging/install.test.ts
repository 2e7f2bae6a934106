/**
 * The package as a user gets it: `npm pack` (of the built tree, as `npm test` leaves it), installed
 * globally into a temporary prefix, then `nfltr --help` and `nfltr demo` run from there, outside this
 * clone. Dependencies come from the npm registry (the local cache first). node-pty compiles on install.
 * better-sqlite3 would too (its prebuilt binaries are on GitHub, which this machine cannot reach): a
 * single-threaded ~70 s compile of SQLite that `npm ci` in this clone has just done and so proved. The
 * install is handed that binary through prebuild-install's documented local-prebuilds directory, the way
 * an offline mirror would; a different better-sqlite3 version than the clone's finds none and compiles.
 */
import { execFile, execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { tempDir } from '../helpers/processes.js';

const run = promisify(execFile);
const ROOT = resolve(import.meta.dirname, '../..');
const INSTALL_MS = 15 * 60_000;

/** The clone's compiled better-sqlite3 binding, packed as prebuild-install names and lays out a prebuild. */
function localSqlitePrebuild(tmp: string): string {
  const pkg = join(ROOT, 'node_modules/better-sqlite3');
  const { version } = JSON.parse(readFileSync(join(pkg, 'package.json'), 'utf8')) as { version: string };
  const dir = join(tmp, 'prebuilds');
  mkdirSync(dir);
  const name = `better-sqlite3-v${version}-node-v${process.versions.modules}-${process.platform}-${process.arch}.tar.gz`;
  execFileSync('tar', ['-czf', join(dir, name), '-C', pkg, 'build/Release/better_sqlite3.node']);
  return dir;
}

describe('npm pack + global install', () => {
  it('installs into a temporary prefix and runs --help and the demo from there', {
    timeout: INSTALL_MS + 180_000,
  }, async () => {
    const tmp = tempDir('nfltr-pack-');
    // --ignore-scripts: `prepare` would build again; `npm test` has just built dist/.
    const packed = await run('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', tmp], {
      cwd: ROOT,
      maxBuffer: 64 * 1024 * 1024,
    });
    const [info] = JSON.parse(packed.stdout) as { filename: string; files: { path: string }[] }[];
    const files = info!.files.map((f) => f.path);
    // The README links docs/; the bin runs dist/.
    for (const f of ['bin/nfltr.js', 'dist/bundle/nfltr.cjs', 'docs/security.md', 'README.md'])
      expect(files).toContain(f);
    expect(files.some((f) => f.startsWith('test/') || f.startsWith('src/'))).toBe(false);

    const prefix = join(tmp, 'prefix');
    const env = {
      ...process.env,
      JOBS: 'max', // node-gyp: compile on every core
      npm_config_better_sqlite3_local_prebuilds: localSqlitePrebuild(tmp),
    };
    await run(
      'npm',
      [
        'install',
        '-g',
        '--prefix',
        prefix,
        join(tmp, info!.filename),
        '--prefer-offline',
        '--no-audit',
        '--no-fund',
      ],
      { cwd: tmp, env, timeout: INSTALL_MS, maxBuffer: 64 * 1024 * 1024 },
    );
    const bin = join(prefix, 'bin', 'nfltr');
    expect(existsSync(bin)).toBe(true);

    const help = await run(bin, ['--help'], { cwd: tmp });
    for (const command of ['relay', 'worker', 'mcp', 'demo', 'login']) expect(help.stdout).toContain(command);

    const demoDir = join(tmp, 'demo');
    const demo = await run(bin, ['demo', '--json', '--dir', demoDir], { cwd: tmp, timeout: 180_000 });
    const summary = JSON.parse(demo.stdout) as {
      report: string;
      tasks: { task_id: string; state: string }[];
    };
    expect(summary.report).toBe(join(demoDir, 'report.md'));
    expect(readFileSync(summary.report, 'utf8')).toMatch(/completed/);
    expect(summary.tasks.map((t) => t.state).sort()).toEqual(['cancelled', 'completed', 'completed']);
  });
});
