/**
 * @module `--git-code-result`, shared by `nfltr claude-mcp` and `nfltr copilot-mcp`: a worktree per
 * task, and the patch, path checks and verification runs that make up the code result.
 */
export { GitError, git } from './git.js';
export { compilePathRule, disallowedPaths, type PathRule } from './paths.js';
export {
  type ChangedPath,
  type ChangeStatus,
  type CollectedChanges,
  checkChanges,
  collectChanges,
  type GitConstraints,
  PATCH_FILE,
  readGitConstraints,
  runVerification,
  type VerificationResult,
  type VerificationStatus,
  type VerifyOptions,
  verificationError,
} from './result.js';
export { createWorktree, type Worktree, WorktreeError } from './worktree.js';
