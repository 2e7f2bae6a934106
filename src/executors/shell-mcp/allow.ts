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
 */

/** Characters a single `*` refuses to match (besides line breaks): they chain, redirect or substitute
 * commands in `sh`. */
export const SHELL_CONTROL_CHARS = ';&|<>$`()';

/** A compiled allow pattern. */
export interface AllowRule {
  pattern: string;
  test(command: string): boolean;
}

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
        source += '[\\s\\S]*';
      } else {
        source += `[^${escapeRegExp(SHELL_CONTROL_CHARS)}\\n\\r]*`;
      }
    } else {
      source += escapeRegExp(p[i]!);
    }
  }
  const re = new RegExp(`^${source}$`);
  return { pattern, test: (command) => re.test(command.trim()) };
}

/** True when `command` matches at least one rule. */
export function isAllowed(command: string, rules: readonly AllowRule[]): boolean {
  return rules.some((r) => r.test(command));
}
