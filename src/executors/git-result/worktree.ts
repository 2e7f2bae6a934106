/**
 * @module One git worktree per task (`--git-code-result`): the AI CLI works in a private checkout of the
 * worker's repository, so two tasks on one worker never see each other's edits, and the repository the
 * user works in is never touched.
 */
import { mkdtemp, realpath, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GitError, git } from './git.js';

export interface Worktree {
  /** The repository the worktree belongs to (`--cwd`, resolved to its top level). */
  repo: string;
  /** Absolute path of the checkout the task works in. */
  dir: string;
  /** What the task asked for (`context.base_ref`), or `HEAD`. */
  baseRef: string;
  /** The commit `baseRef` resolved to when the worktree was created. */
  baseCommit: string;
  /** Removes the checkout and its administrative files; never throws. */
  remove(): Promise<void>;
}

/** Why a worktree could not be created; the message is meant for the planner. */
export class WorktreeError extends Error {
  override name = 'WorktreeError';
}

const safeName = (taskId: string) => taskId.replace(/[^\w.-]+/g, '_').slice(0, 60) || 'task';

/**
 * Creates a detached worktree of `repo` at `baseRef` (default `HEAD`) in a fresh temporary folder.
 * Throws a {@link WorktreeError} naming the problem (not a repository, unknown ref).
 */
export async function createWorktree(repo: string, taskId: string, baseRef?: string): Promise<Worktree> {
  const ref = baseRef ?? 'HEAD';
  if (ref.trim() === '' || ref.startsWith('-')) {
    throw new WorktreeError(`context.base_ref ${JSON.stringify(ref)} is not a valid git ref`);
  }
  let top: string;
  try {
    top = (await git(repo, ['rev-parse', '--show-toplevel'])).trim();
  } catch (err) {
    throw new WorktreeError(
      `--git-code-result needs --cwd to be a git repository, and ${repo} is not one (${err instanceof GitError ? err.stderr.trim() : String(err)})`,
    );
  }
  let baseCommit: string;
  try {
    baseCommit = (
      await git(top, ['rev-parse', '--verify', '--quiet', '--end-of-options', `${ref}^{commit}`])
    ).trim();
  } catch {
    throw new WorktreeError(
      baseRef === undefined
        ? `the repository ${top} has no commit yet (HEAD does not resolve); commit something first`
        : `context.base_ref ${JSON.stringify(ref)} does not name a commit in ${top}; fetch it on the worker or name a branch, tag or commit that exists there`,
    );
  }
  const parent = await realpath(await mkdtemp(join(tmpdir(), 'nfltr-wt-')));
  const dir = join(parent, safeName(taskId));
  try {
    await git(top, ['worktree', 'add', '--detach', '--quiet', dir, baseCommit]);
  } catch (err) {
    await rm(parent, { recursive: true, force: true });
    throw new WorktreeError(
      `could not create a worktree of ${top}: ${err instanceof Error ? err.message : err}`,
    );
  }
  let removed = false;
  return {
    repo: top,
    dir,
    baseRef: ref,
    baseCommit,
    async remove() {
      if (removed) return;
      removed = true;
      await git(top, ['worktree', 'remove', '--force', '--force', dir]).catch(() => {});
      await rm(parent, { recursive: true, force: true }).catch(() => {});
      await git(top, ['worktree', 'prune']).catch(() => {});
    },
  };
}
