/**
 * @module Splitting `--mcp-command` into argv the way a POSIX shell would for simple cases (quotes,
 * backslashes, a leading `~`), without running a shell: the executor is spawned with `shell: false`.
 */
import { homedir } from 'node:os';

export class CommandLineError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CommandLineError';
  }
}

/**
 * Splits a command line into words. Single quotes keep everything literally; double quotes allow
 * `\"`, `\\`, `\$` and `` \` `` escapes; a backslash outside quotes escapes the next character; an
 * unquoted `~` or `~/…` at the start of a word is the home folder. `$VAR`, globs, pipes and `;` are
 * not interpreted (there is no shell), so they reach the program as written.
 */
export function splitCommandLine(text: string): string[] {
  const words: string[] = [];
  let word = '';
  let inWord = false;
  let i = 0;
  const home = () => homedir();
  while (i < text.length) {
    const c = text[i]!;
    if (/\s/.test(c)) {
      if (inWord) words.push(word);
      word = '';
      inWord = false;
      i++;
      continue;
    }
    if (!inWord && c === '~' && (i + 1 === text.length || text[i + 1] === '/' || /\s/.test(text[i + 1]!))) {
      word = home();
      inWord = true;
      i++;
      continue;
    }
    inWord = true;
    if (c === "'") {
      const end = text.indexOf("'", i + 1);
      if (end < 0) throw new CommandLineError(`unterminated single quote in ${JSON.stringify(text)}`);
      word += text.slice(i + 1, end);
      i = end + 1;
    } else if (c === '"') {
      i++;
      for (;;) {
        if (i >= text.length)
          throw new CommandLineError(`unterminated double quote in ${JSON.stringify(text)}`);
        const d = text[i]!;
        if (d === '"') break;
        if (d === '\\' && i + 1 < text.length && '"\\$`'.includes(text[i + 1]!)) {
          word += text[i + 1];
          i += 2;
        } else {
          word += d;
          i++;
        }
      }
      i++;
    } else if (c === '\\') {
      if (i + 1 >= text.length) throw new CommandLineError(`trailing backslash in ${JSON.stringify(text)}`);
      word += text[i + 1];
      i += 2;
    } else {
      word += c;
      i++;
    }
  }
  if (inWord) words.push(word);
  return words;
}

/**
 * Joins words into a command line that {@link splitCommandLine} splits back into the same words (single
 * quotes where needed). Also readable in logs and error messages.
 */
export function joinCommandLine(words: readonly string[]): string {
  return words.map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`)).join(' ');
}
