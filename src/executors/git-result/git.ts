/**
 * @module Running git for the code-result flow: never through a shell, never prompting, never running
 * the repository's hooks (a `post-checkout` hook would otherwise run on every worktree we create).
 */
import { execFile, spawn } from 'node:child_process';
import { createWriteStream } from 'node:fs';

const GIT_ENV = { GIT_TERMINAL_PROMPT: '0', GIT_OPTIONAL_LOCKS: '0', LC_ALL: 'C' };
const BASE_ARGS = ['-c', 'core.hooksPath=/dev/null', '-c', 'core.quotePath=off'];

/** A git command that failed; `message` carries git's own stderr. */
export class GitError extends Error {
  constructor(
    readonly args: readonly string[],
    readonly stderr: string,
    readonly exitCode: number | null,
  ) {
    super(`git ${args.join(' ')} failed${exitCode !== null ? ` (exit ${exitCode})` : ''}: ${stderr.trim()}`);
    this.name = 'GitError';
  }
}

/** Runs `git args…` in `cwd` and returns stdout; rejects with a {@link GitError}. */
export function git(cwd: string, args: readonly string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(
      'git',
      [...BASE_ARGS, ...args],
      { cwd, env: { ...process.env, ...GIT_ENV }, maxBuffer: 64 * 1024 * 1024, encoding: 'utf8' },
      (err, stdout, stderr) => {
        if (err) {
          const code =
            typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : null;
          reject(new GitError(args, stderr || err.message, code));
        } else {
          resolve(stdout);
        }
      },
    );
  });
}

/** Runs `git args…` in `cwd` with stdout written to `file`; resolves with the number of bytes written. */
export function gitToFile(cwd: string, args: readonly string[], file: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const out = createWriteStream(file);
    const child = spawn('git', [...BASE_ARGS, ...args], {
      cwd,
      env: { ...process.env, ...GIT_ENV },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let bytes = 0;
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => {
      bytes += chunk.length;
    });
    child.stdout.pipe(out);
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      stderr += d;
    });
    const written = new Promise<void>((res, rej) => {
      out.on('finish', res);
      out.on('error', rej);
    });
    child.on('error', (err) => reject(new GitError(args, err.message, null)));
    child.on('close', (code) => {
      written.then(
        () => (code === 0 ? resolve(bytes) : reject(new GitError(args, stderr, code))),
        (err: Error) => reject(new GitError(args, `cannot write ${file}: ${err.message}`, code)),
      );
    });
  });
}
