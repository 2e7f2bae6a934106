/**
 * @module `--allow` patterns for `nfltr shell-mcp`: which commands run without asking the planner.
 *
 * A pattern is matched against the whole command string (leading and trailing whitespace ignored):
 * - `*`  matches any run of characters (possibly empty) EXCEPT the shell control characters
 *        `; & | < > $ \` ( )` and line breaks, so `npm test *` allows `npm test -- --grep x` but not
 *        `npm test; rm -rf ~` or `npm test $(curl …)`;
 * - `**` matches any run of characters, control characters included (`**` alone allows everything);
 * - every other character matches itself, literally and case-sensitively (control characters written
 *   in the pattern match themselves).
 *
 * A match is not the whole verdict: words that came from a wildcard must not turn a program into one
 * that runs other code through its own options (`git -c alias.x='!cmd' x` under `git *`); such a
 * command is put to the planner (code-flags.ts). A pattern of stars only (`**`) allows everything.
 */
import { codeRisk } from './code-flags.js';

/** Characters a single `*` refuses to match (besides line breaks): they chain, redirect or substitute
 * commands in `sh`. */
export const SHELL_CONTROL_CHARS = ';&|<>$`()';

/** A compiled allow pattern. */
export interface AllowRule {
  pattern: string;
  test(command: string): boolean;
  /**
   * For a matching command (trimmed), the spans its wildcards matched, as [start, end) pairs; null
   * when it does not match; `all` when the pattern is stars only.
   */
  spans(command: string): Array<[number, number]> | 'all' | null;
}

/** Whether a command may run without asking, and why not when a pattern matched it. */
export type AllowVerdict =
  | { allowed: true; pattern: string }
  | { allowed: false; pattern?: string; risk?: string };

const escapeRegExp = (s: string): string => s.replace(/[.*+?^${}()|[\]\\/-]/g, '\\$&');

/** Compiles one `--allow` pattern; throws on an empty pattern. */
export function compileAllowPattern(pattern: string): AllowRule {
  const p = pattern.trim();
  if (p === '') throw new Error('an --allow pattern must not be empty');
  let source = '';
  for (let i = 0; i < p.length; i++) {
    if (p[i] === '*') {
      if (p[i + 1] === '*') {
        // Any further stars in a run add nothing: `***` behaves as `**`.
        while (p[i + 1] === '*') i++;
        source += '([\\s\\S]*)';
      } else {
        source += `([^${escapeRegExp(SHELL_CONTROL_CHARS)}\\n\\r]*)`;
      }
    } else {
      source += escapeRegExp(p[i]!);
    }
  }
  const re = new RegExp(`^${source}$`, 'd');
  const all = /^\*+$/.test(p);
  return {
    pattern,
    test: (command) => re.test(command.trim()),
    spans: (command) => {
      const m = re.exec(command.trim());
      if (!m) return null;
      if (all) return 'all';
      return (m.indices ?? []).slice(1).filter((x): x is [number, number] => x !== undefined);
    },
  };
}

/**
 * Whether `command` runs without asking: some rule matches it and none of its wildcards supplied a
 * code-running word (code-flags.ts). Otherwise the pattern that matched, if any, and the risk.
 */
export function checkAllowed(command: string, rules: readonly AllowRule[]): AllowVerdict {
  const trimmed = command.trim();
  let risky: { pattern: string; risk: string } | undefined;
  for (const r of rules) {
    const spans = r.spans(trimmed);
    if (spans === null) continue;
    if (spans === 'all') return { allowed: true, pattern: r.pattern };
    const risk = codeRisk(trimmed, (start, end) => spans.some(([s, e]) => s < end && start < e));
    if (!risk) return { allowed: true, pattern: r.pattern };
    risky ??= { pattern: r.pattern, risk };
  }
  return risky ? { allowed: false, ...risky } : { allowed: false };
}

/** True when `command` runs without asking (see {@link checkAllowed}). */
export function isAllowed(command: string, rules: readonly AllowRule[]): boolean {
  return checkAllowed(command, rules).allowed;
}
