/**
 * @module The AI CLI an executor drives, as the user named it (`--claude-command "npx claude"`): splitting
 * that string into argv without a shell, and reading the CLI's `--help` to learn which options the
 * installed version has, so that a flag it lacks fails at start instead of being silently ignored.
 */
import { execFile } from 'node:child_process';
import { joinCommandLine, splitCommandLine } from '../../util/command-line.js';

/** Splits a `--claude-command`/`--copilot-command` value into argv, without a shell. */
export function splitCommand(command: string): string[] {
  const words = splitCommandLine(command);
  if (words.length === 0) throw new Error('the command is empty');
  return words;
}

/** What `--help` says about one option. */
export interface HelpOption {
  /** The option's help text (its line plus wrapped continuation lines). */
  text: string;
  /** The allowed values when the help lists them as `(choices: "a", "b")`; undefined otherwise. */
  choices?: string[];
}

/**
 * Finds `flag` (e.g. `--effort`) in a CLI's help text. Help printers (commander, yargs) start each option
 * on its own line, so the option is present when a line begins with it, possibly after a short alias
 * (`-m, --model`) or listed as an alias (`--effort=LEVEL, --reasoning-effort=LEVEL`).
 */
export function findHelpOption(help: string, flag: string): HelpOption | undefined {
  const lines = help.split(/\r?\n/);
  const escaped = flag.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const starts = new RegExp(
    `^\\s*(?:-\\w[,\\s]\\s*)?(?:--[\\w-]+(?:[=\\s<\\[][^,]*)?,\\s*)*${escaped}(?![\\w-])`,
  );
  const at = lines.findIndex((l) => starts.test(l));
  if (at === -1) return undefined;
  let text = lines[at]!;
  // Continuation lines: indented deeper than an option line and not starting a new option.
  for (let i = at + 1; i < lines.length; i++) {
    const l = lines[i]!;
    if (l.trim() === '' || /^\s*-/.test(l)) break;
    text += ` ${l.trim()}`;
  }
  const m = /\(choices:\s*((?:"[^"]*"(?:,\s*)?)+)\)/.exec(text);
  // Claude Code lists some values as a bare list ending the text: `Effort level … (low, medium, high)`.
  const bare = /\(((?:[a-z][\w-]*,\s*)+[a-z][\w-]*)\)\s*$/.exec(text);
  const choices = m
    ? [...m[1]!.matchAll(/"([^"]*)"/g)].map((x) => x[1]!)
    : bare
      ? bare[1]!.split(/,\s*/)
      : undefined;
  return choices ? { text, choices } : { text };
}

/** Runs `argv --help` and returns its output (stdout and stderr together), or throws saying why not. */
export function readHelp(argv: readonly string[], timeoutMs = 20_000): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(
      argv[0]!,
      [...argv.slice(1), '--help'],
      { timeout: timeoutMs, maxBuffer: 4 * 1024 * 1024, env: { ...process.env, NO_COLOR: '1' } },
      (err, stdout, stderr) => {
        const out = `${stdout}\n${stderr}`;
        // Some CLIs exit non-zero after printing help; only an empty answer is a failure.
        if (err && out.trim() === '') {
          const e = err as NodeJS.ErrnoException & { killed?: boolean };
          reject(new Error(e.code === 'ENOENT' ? 'command not found' : e.killed ? 'timed out' : e.message));
        } else {
          resolve(out);
        }
      },
    );
  });
}

/** Quotes argv for a human reading a log or an error message (not for a shell to run). */
export function formatArgv(argv: readonly string[]): string {
  return joinCommandLine(argv);
}
