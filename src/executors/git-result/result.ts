/**
 * @module What `--git-code-result` returns once the AI CLI is done: the diff of the task's worktree
 * against its base commit (new files included) as `changes.patch`, the changed paths, the checks of
 * `constraints.allowed_paths` and `constraints.require_changed_paths`, and the results of
 * `constraints.verification_commands` run in the worktree.
 */
import { join } from 'node:path';
import type { ProcessGroups } from '../../util/process-group.js';
import { commandStatus, formatDuration, runCommand } from '../shell-mcp/index.js';
import { git, gitToFile } from './git.js';
import { compilePathRule, disallowedPaths, type PathRule } from './paths.js';
import type { Worktree } from './worktree.js';

/** The patch's file name in output_dir. */
export const PATCH_FILE = 'changes.patch';

/** Output lines of each verification command repeated in the result (the full output is in its log). */
const VERIFY_TAIL_LINES = 20;

/** The git-related constraints of one task, checked. */
export interface GitConstraints {
  /** Undefined: any path may change. */
  allowedPaths?: PathRule[];
  /** true: at least one path must change; a list: each of these paths (rules) must be among the changes. */
  requireChangedPaths: boolean | PathRule[];
  verificationCommands: string[];
}

/**
 * Reads `allowed_paths`, `require_changed_paths` and `verification_commands` from `constraints`;
 * returns a message saying what is wrong instead when one is malformed.
 */
export function readGitConstraints(
  constraints: Record<string, unknown> | undefined,
): GitConstraints | string {
  const c = constraints ?? {};
  const strings = (name: string): string[] | string | undefined => {
    const v = c[name];
    if (v === undefined || v === null) return undefined;
    if (!Array.isArray(v) || v.some((x) => typeof x !== 'string' || x.trim() === '')) {
      return `constraints.${name} must be an array of non-empty strings, got ${JSON.stringify(v)}`;
    }
    return v as string[];
  };
  const rules = (name: string, list: string[]): PathRule[] | string => {
    try {
      return list.map(compilePathRule);
    } catch (err) {
      return `constraints.${name}: ${err instanceof Error ? err.message : err}`;
    }
  };

  const allowed = strings('allowed_paths');
  if (typeof allowed === 'string') return allowed;
  const allowedPaths = allowed === undefined ? undefined : rules('allowed_paths', allowed);
  if (typeof allowedPaths === 'string') return allowedPaths;

  let requireChangedPaths: boolean | PathRule[] = false;
  const req = c.require_changed_paths;
  if (typeof req === 'boolean') requireChangedPaths = req;
  else if (req !== undefined && req !== null) {
    const list = strings('require_changed_paths');
    if (typeof list === 'string') {
      return `constraints.require_changed_paths must be true, false or an array of paths, got ${JSON.stringify(req)}`;
    }
    const compiled = rules('require_changed_paths', list ?? []);
    if (typeof compiled === 'string') return compiled;
    requireChangedPaths = compiled;
  }

  const verify = strings('verification_commands');
  if (typeof verify === 'string') return verify;
  return { allowedPaths, requireChangedPaths, verificationCommands: verify ?? [] };
}

export type ChangeStatus = 'added' | 'modified' | 'deleted' | 'type_changed';

export interface ChangedPath {
  path: string;
  status: ChangeStatus;
}

const STATUS: Record<string, ChangeStatus> = { A: 'added', M: 'modified', D: 'deleted', T: 'type_changed' };

export interface CollectedChanges {
  changed_paths: ChangedPath[];
  /** {@link PATCH_FILE} when there are changes, else null (no file is written). */
  patch: string | null;
  patch_bytes: number;
}

/**
 * Stages everything in the worktree (new files included, ignored files not) and writes the binary diff
 * against the base commit into `outputDir/changes.patch`. Commits the CLI made itself are included, since
 * the diff is taken from the base commit. Renames appear as a deletion plus an addition, so that both
 * paths are checked against `allowed_paths`; `git apply` applies the patch as it is.
 */
export async function collectChanges(wt: Worktree, outputDir: string): Promise<CollectedChanges> {
  await git(wt.dir, ['add', '--all']);
  const raw = await git(wt.dir, ['diff', '--cached', '--no-renames', '--name-status', '-z', wt.baseCommit]);
  const fields = raw.split('\0');
  const changed: ChangedPath[] = [];
  for (let i = 0; i + 1 < fields.length; i += 2) {
    const code = fields[i]!.charAt(0);
    changed.push({ path: fields[i + 1]!, status: STATUS[code] ?? 'modified' });
  }
  if (changed.length === 0) return { changed_paths: [], patch: null, patch_bytes: 0 };
  const bytes = await gitToFile(
    wt.dir,
    // Pinned format options, whatever the user's git config says (diff.noprefix, external diff tools…).
    [
      'diff',
      '--cached',
      '--no-renames',
      '--binary',
      '--full-index',
      '--no-ext-diff',
      '--no-textconv',
      '--no-color',
      '--src-prefix=a/',
      '--dst-prefix=b/',
      wt.baseCommit,
    ],
    join(outputDir, PATCH_FILE),
  );
  return { changed_paths: changed, patch: PATCH_FILE, patch_bytes: bytes };
}

/** Checks the collected changes against the constraints; returns the failure message, if any. */
export function checkChanges(
  changes: CollectedChanges,
  constraints: GitConstraints,
): { disallowed: string[]; error?: string } {
  const paths = changes.changed_paths.map((c) => c.path);
  if (constraints.allowedPaths) {
    const bad = disallowedPaths(paths, constraints.allowedPaths);
    if (bad.length > 0) {
      const allowed = constraints.allowedPaths.map((r) => r.pattern).join(', ') || '(none)';
      return {
        disallowed: bad,
        error: `changes outside constraints.allowed_paths: ${bad.join(', ')} (allowed: ${allowed})`,
      };
    }
  }
  const req = constraints.requireChangedPaths;
  if (req === true && paths.length === 0) {
    return { disallowed: [], error: 'constraints.require_changed_paths is set but the task changed no file' };
  }
  if (Array.isArray(req)) {
    const missing = req.filter((r) => !paths.some((p) => r.test(p))).map((r) => r.pattern);
    if (missing.length > 0) {
      return {
        disallowed: [],
        error: `constraints.require_changed_paths: nothing changed under ${missing.join(', ')}${paths.length ? ` (changed: ${paths.join(', ')})` : ' (no file changed)'}`,
      };
    }
  }
  return { disallowed: [] };
}

export type VerificationStatus = 'succeeded' | 'failed' | 'timed_out' | 'cancelled';

export interface VerificationResult {
  command: string;
  status: VerificationStatus;
  exit_code: number | null;
  signal: string | null;
  duration_ms: number;
  /** Log file name in output_dir (`verify-N.log`). */
  log: string;
  /** The last output lines (stdout and stderr interleaved). */
  output_tail: string[];
}

export interface VerifyOptions {
  outputDir: string;
  env: NodeJS.ProcessEnv;
  groups: ProcessGroups;
  /** Per-command time limit. */
  timeoutMs: number;
  signal: AbortSignal;
  report: (message: string) => void;
}

/**
 * Runs every verification command with `/bin/sh -c` in the worktree, one after another, each in its own
 * process group; all of them run even when one fails, since each is separate evidence for the planner.
 */
export async function runVerification(
  wt: Worktree,
  commands: readonly string[],
  opts: VerifyOptions,
): Promise<VerificationResult[]> {
  const results: VerificationResult[] = [];
  for (const [i, command] of commands.entries()) {
    if (opts.signal.aborted) break;
    const tag = `[verify ${i + 1}/${commands.length}] $ ${command}`;
    opts.report(tag);
    const tail: string[] = [];
    const log = `verify-${i + 1}.log`;
    const outcome = await runCommand({
      command,
      cwd: wt.dir,
      env: opts.env,
      groups: opts.groups,
      timeoutMs: opts.timeoutMs,
      signal: opts.signal,
      logPath: join(opts.outputDir, log),
      onLine: (line) => {
        tail.push(line);
        if (tail.length > VERIFY_TAIL_LINES) tail.shift();
      },
    });
    const status: VerificationStatus = commandStatus(outcome);
    results.push({
      command,
      status,
      exit_code: outcome.exitCode,
      signal: outcome.signal,
      duration_ms: outcome.durationMs,
      log,
      output_tail: outcome.spawnError ? [`could not start: ${outcome.spawnError}`] : tail,
    });
    opts.report(
      `${tag}: ${status}${outcome.exitCode !== null ? ` (exit ${outcome.exitCode})` : outcome.timedOut ? ` after ${formatDuration(opts.timeoutMs)}` : ''}`,
    );
  }
  return results;
}

/** The failure message for verification results, if any command did not succeed. */
export function verificationError(results: readonly VerificationResult[]): string | undefined {
  const bad = results.filter((r) => r.status !== 'succeeded');
  if (bad.length === 0) return undefined;
  return `verification failed: ${bad
    .map((r) =>
      r.status === 'timed_out'
        ? `\`${r.command}\` timed out`
        : r.status === 'cancelled'
          ? `\`${r.command}\` was cancelled`
          : r.exit_code === null
            ? `\`${r.command}\` was killed by ${r.signal}`
            : `\`${r.command}\` exited with code ${r.exit_code}`,
    )
    .join('; ')}`;
}
