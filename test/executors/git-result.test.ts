/**
 * `--git-code-result` building blocks, against a real temporary git repository: path rules, constraint
 * parsing, worktrees, the collected patch and verification runs.
 */
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  checkChanges,
  collectChanges,
  compilePathRule,
  createWorktree,
  readGitConstraints,
  runVerification,
  verificationError,
  WorktreeError,
} from '../../src/executors/git-result/index.js';
import { ProcessGroups } from '../../src/util/process-group.js';

let root: string;
let repo: string;

const gitIn = (cwd: string, ...args: string[]) =>
  execFileSync('git', args, {
    cwd,
    encoding: 'utf8',
    env: { ...process.env, GIT_CONFIG_NOSYSTEM: '1' },
  }).trim();

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'nfltr-git-result-'));
  repo = join(root, 'repo');
  await mkdir(join(repo, 'src'), { recursive: true });
  gitIn(repo, 'init', '-q', '-b', 'main');
  gitIn(repo, 'config', 'user.email', 't@example.com');
  gitIn(repo, 'config', 'user.name', 'T');
  await writeFile(join(repo, 'README.md'), 'hello\n');
  await writeFile(join(repo, 'src', 'a.ts'), 'export const a = 1;\n');
  await writeFile(join(repo, '.gitignore'), 'dist/\n');
  gitIn(repo, 'add', '-A');
  gitIn(repo, 'commit', '-q', '-m', 'first');
  gitIn(repo, 'tag', 'v1');
  await writeFile(join(repo, 'README.md'), 'hello again\n');
  gitIn(repo, 'commit', '-q', '-am', 'second');
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

describe('git-result - allowed path rules', () => {
  it('match folders, exact files and globs; refuse paths outside the repository', () => {
    const src = compilePathRule('src/');
    expect(src.test('src/a.ts')).toBe(true);
    expect(src.test('src/deep/b.ts')).toBe(true);
    expect(src.test('srcx/a.ts')).toBe(false);
    expect(compilePathRule('./README.md').test('README.md')).toBe(true);
    expect(compilePathRule('README.md').test('README.md.bak')).toBe(false);
    const ts = compilePathRule('src/**/*.ts');
    expect(ts.test('src/a.ts')).toBe(true);
    expect(ts.test('src/x/y/b.ts')).toBe(true);
    expect(ts.test('src/a.js')).toBe(false);
    expect(compilePathRule('docs/*.md').test('docs/x/y.md')).toBe(false);
    expect(compilePathRule('**/fixtures/**').test('test/fixtures/a.json')).toBe(true);
    expect(() => compilePathRule('/etc/passwd')).toThrow(/absolute/);
    expect(() => compilePathRule('src/../..')).toThrow(/\.\./);
  });

  it('constraints are checked with messages naming the field', () => {
    expect(readGitConstraints({ allowed_paths: 'src' })).toMatch(
      /constraints.allowed_paths must be an array/,
    );
    expect(readGitConstraints({ verification_commands: [1] })).toMatch(/constraints.verification_commands/);
    expect(readGitConstraints({ require_changed_paths: 'yes' })).toMatch(
      /require_changed_paths must be true/,
    );
    const ok = readGitConstraints({
      allowed_paths: ['src/'],
      require_changed_paths: true,
      verification_commands: ['true'],
    });
    expect(typeof ok).toBe('object');
  });
});

describe('git-result - worktree and changes', () => {
  it('creates a worktree at a named ref, collects new and changed files, and removes it', async () => {
    const wt = await createWorktree(repo, 'task/1', 'v1');
    expect(wt.baseCommit).toBe(gitIn(repo, 'rev-parse', 'v1'));
    expect(await readFile(join(wt.dir, 'README.md'), 'utf8')).toBe('hello\n'); // v1, not HEAD
    await writeFile(join(wt.dir, 'src', 'a.ts'), 'export const a = 2;\n');
    await writeFile(join(wt.dir, 'src', 'new.ts'), 'export const n = 1;\n');
    await mkdir(join(wt.dir, 'dist'));
    await writeFile(join(wt.dir, 'dist', 'out.js'), 'ignored\n');
    const out = join(root, 'out1');
    await mkdir(out);
    const changes = await collectChanges(wt, out);
    expect(changes.changed_paths).toEqual([
      { path: 'src/a.ts', status: 'modified' },
      { path: 'src/new.ts', status: 'added' },
    ]);
    const patch = await readFile(join(out, 'changes.patch'), 'utf8');
    expect(patch).toContain('+export const n = 1;');
    expect(patch).not.toContain('dist/out.js');
    // The patch applies to the base commit.
    const check = await createWorktree(repo, 'apply-check', wt.baseCommit);
    gitIn(check.dir, 'apply', '--check', join(out, 'changes.patch'));
    await check.remove();

    expect(
      checkChanges(changes, readGitConstraints({ allowed_paths: ['src/'] }) as never).error,
    ).toBeUndefined();
    const bad = checkChanges(changes, readGitConstraints({ allowed_paths: ['src/a.ts', 'docs/'] }) as never);
    expect(bad.disallowed).toEqual(['src/new.ts']);
    expect(bad.error).toContain('src/new.ts');
    await wt.remove();
    expect(existsSync(wt.dir)).toBe(false);
    expect(gitIn(repo, 'worktree', 'list')).not.toContain(wt.dir);
  });

  it('reports no change when nothing changed, and require_changed_paths fails it', async () => {
    const wt = await createWorktree(repo, 't2');
    const out = join(root, 'out2');
    await mkdir(out);
    const changes = await collectChanges(wt, out);
    expect(changes).toEqual({ changed_paths: [], patch: null, patch_bytes: 0 });
    expect(existsSync(join(out, 'changes.patch'))).toBe(false);
    expect(checkChanges(changes, readGitConstraints({ require_changed_paths: true }) as never).error).toMatch(
      /changed no file/,
    );
    await wt.remove();
  });

  it('refuses an unknown base ref and a folder that is not a repository, clearly', async () => {
    await expect(createWorktree(repo, 't3', 'no-such-branch')).rejects.toThrow(
      /context.base_ref "no-such-branch" does not name a commit/,
    );
    await expect(createWorktree(repo, 't3', '--upload-pack=x')).rejects.toBeInstanceOf(WorktreeError);
    await expect(createWorktree(root, 't3')).rejects.toThrow(/is not one/);
  });

  it('runs every verification command and reports exit codes and output tails', async () => {
    const wt = await createWorktree(repo, 't4');
    const out = join(root, 'out4');
    await mkdir(out);
    const messages: string[] = [];
    const groups = new ProcessGroups();
    const results = await runVerification(wt, ['cat README.md', 'echo broken >&2; exit 3', 'echo after'], {
      outputDir: out,
      env: process.env,
      groups,
      timeoutMs: 10_000,
      signal: new AbortController().signal,
      report: (m) => messages.push(m),
    });
    expect(results.map((r) => [r.status, r.exit_code, r.output_tail])).toEqual([
      ['succeeded', 0, ['hello again']],
      ['failed', 3, ['broken']],
      ['succeeded', 0, ['after']],
    ]);
    expect(await readFile(join(out, 'verify-2.log'), 'utf8')).toBe('broken\n');
    expect(verificationError(results)).toBe(
      'verification failed: `echo broken >&2; exit 3` exited with code 3',
    );
    expect(messages).toContain('[verify 2/3] $ echo broken >&2; exit 3: failed (exit 3)');
    expect(groups.live).toBe(0);
    await wt.remove();
  });
});
