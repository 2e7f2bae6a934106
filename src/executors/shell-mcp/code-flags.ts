/**
 * @module Programs that run arbitrary code through their own arguments (`git -c alias.x='!cmd' x`,
 * `find -exec`, `awk 'BEGIN{system(…)}'`, `env`, `sh -c`…). An `--allow` pattern must not be widened
 * through them: a word that such a program takes as code, when it came from a wildcard of the pattern
 * rather than from its literal text, makes the command need the planner's approval. The table is of
 * known programs (docs/security.md lists them); a program not in it is judged by the pattern alone.
 */

/** One shell word of a command: its unquoted text and where it stands in the command string. */
export interface Word {
  text: string;
  start: number;
  end: number;
}

/**
 * Splits a command into simple commands (at unquoted `; & | ( ) \`` and line breaks, `$(` included) of
 * words (quotes and backslashes removed; `<` and `>` end a word). A lexer for judging, not for running:
 * `sh` still runs the command as it was written.
 */
export function splitCommands(command: string): Word[][] {
  const segments: Word[][] = [[]];
  let word: Word | undefined;
  const end = (at: number) => {
    if (word) {
      word.end = at;
      segments[segments.length - 1]!.push(word);
    }
    word = undefined;
  };
  const add = (ch: string, at: number) => {
    word ??= { text: '', start: at, end: at };
    word.text += ch;
  };
  for (let i = 0; i < command.length; i++) {
    const c = command[i]!;
    if (c === "'") {
      add('', i);
      const close = command.indexOf("'", i + 1);
      const stop = close === -1 ? command.length : close;
      word!.text += command.slice(i + 1, stop);
      i = stop;
    } else if (c === '"') {
      add('', i);
      for (i++; i < command.length && command[i] !== '"'; i++) {
        if (command[i] === '\\' && i + 1 < command.length) i++;
        word!.text += command[i];
      }
    } else if (c === '\\' && i + 1 < command.length) {
      add(command[i + 1]!, i);
      i++;
    } else if (/\s/.test(c) && c !== '\n' && c !== '\r') {
      end(i);
    } else if (c === '<' || c === '>') {
      end(i);
    } else if (';&|()`\n\r'.includes(c) || (c === '$' && command[i + 1] === '(')) {
      end(i);
      if (segments[segments.length - 1]!.length > 0) segments.push([]);
    } else {
      add(c, i);
    }
  }
  end(command.length);
  return segments.filter((s) => s.length > 0);
}

interface ProgramRule {
  /** What the program can be made to run, for the approval question and the docs. */
  why: string;
  /** Every argument is a risk: the program runs the command its arguments name. */
  anyArg?: boolean;
  /** Options that take code, a program, or a config/file that does (`--opt`, `--opt=v`, `-oVALUE`). */
  options?: string[];
  /** Options before the subcommand (git's `-c`, `-C`); those with a separate value are in `valued`. */
  global?: string[];
  /** Options that take a separate value (to find the subcommand or script argument past them). */
  valued?: string[];
  /** Subcommands that run code or change what later commands run, when a wildcard chose them. */
  subcommands?: string[];
  /** Options that run code under one subcommand only (`git rebase -x`). */
  subOptions?: Record<string, string[]>;
  /** The first argument that is not an option is a program text (awk, sed). */
  script?: boolean;
  /** `NAME=value` arguments set variables that name programs (make's SHELL, CC). */
  assignments?: boolean;
}

const RUNNER: ProgramRule = { why: 'runs whatever command its arguments name', anyArg: true };
const SHELL: ProgramRule = { why: 'is a shell: it runs any code given to it', anyArg: true };
const INLINE = (opts: string[]): ProgramRule => ({ why: 'runs code given inline', options: opts });
const AWK: ProgramRule = {
  why: 'programs can run commands (system(), pipes to commands)',
  script: true,
  options: ['-f', '--file', '-e', '--source', '-E', '--exec', '-i', '--include', '-l', '--load'],
  valued: ['-F', '-v', '--assign', '--field-separator'],
};
const NPM: ProgramRule = {
  why: 'can be told to run another shell or install and run packages',
  options: ['--script-shell', '--node-options', '--userconfig', '--globalconfig', '--prefix', '-C', '--dir'],
  subcommands: ['exec', 'x', 'dlx', 'explore', 'create', 'init', 'install', 'i', 'add', 'link'],
};
const EDITOR: ProgramRule = {
  why: 'runs editor commands given as options',
  options: ['-c', '--cmd', '-S', '-u', '+'],
};

/** Programs by their base name. */
const RULES: Record<string, ProgramRule> = {
  git: {
    why: 'runs configured commands: -c alias.x=!cmd, core.pager, core.sshCommand, hooks, --exec-path, another repository (-C, --git-dir) with its own config',
    global: ['-c', '--config-env', '--exec-path', '-C', '--git-dir', '--work-tree', '--super-prefix'],
    valued: ['-c', '-C', '--git-dir', '--work-tree', '--namespace', '--super-prefix', '--config-env'],
    subcommands: [
      'config',
      'submodule',
      'filter-branch',
      'bisect',
      'difftool',
      'mergetool',
      'send-email',
      'instaweb',
      'daemon',
      'credential',
    ],
    options: [
      '--upload-pack',
      '--receive-pack',
      '--exec',
      '--extcmd',
      '--template',
      '--output',
      '--open-files-in-pager',
      'ext::',
    ],
    subOptions: {
      rebase: ['-x'],
      clone: ['-c', '--config', '-u'],
      'ls-remote': ['-u'],
      grep: ['-O'],
      'format-patch': ['-o', '--output-directory'],
    },
  },
  find: {
    why: 'runs commands with -exec/-ok and writes files with -fprint',
    options: ['-exec', '-execdir', '-ok', '-okdir', '-fprint', '-fprint0', '-fprintf', '-fls'],
  },
  awk: AWK,
  gawk: AWK,
  mawk: AWK,
  nawk: AWK,
  sed: {
    why: 'scripts can run commands (e, s///e) and write files (w)',
    script: true,
    options: ['-e', '--expression', '-f', '--file'],
    valued: ['-l', '--line-length'],
  },
  make: {
    why: 'runs recipes from another makefile (-f, -C, --eval) and programs named by variables (SHELL=, CC=)',
    options: ['-f', '--file', '--makefile', '-E', '--eval', '-C', '--directory', '-I', '--include-dir'],
    assignments: true,
  },
  tar: {
    why: 'runs commands through options',
    options: [
      '--to-command',
      '--checkpoint-action',
      '-I',
      '--use-compress-program',
      '-F',
      '--info-script',
      '--new-volume-script',
      '--rsh-command',
      '--rmt-command',
    ],
  },
  rsync: { why: 'runs a remote shell or program named by options', options: ['-e', '--rsh', '--rsync-path'] },
  scp: { why: 'runs a program named by options', options: ['-S', '-o', '-F'] },
  zip: { why: 'runs a test command named by options', options: ['-TT', '--unzip-command'] },
  man: { why: 'runs a pager or browser named by options', options: ['-P', '--pager', '-H', '--html'] },
  tcpdump: { why: 'runs a command on rotated files', options: ['-z'] },
  python: INLINE(['-c']),
  python3: INLINE(['-c']),
  node: INLINE([
    '-e',
    '--eval',
    '-p',
    '--print',
    '-r',
    '--require',
    '--import',
    '--loader',
    '--experimental-loader',
  ]),
  deno: { why: 'runs code given inline', subcommands: ['eval'] },
  bun: { why: 'runs code given inline', options: ['-e', '--eval'], subcommands: ['x'] },
  perl: INLINE(['-e', '-E', '-M']),
  ruby: INLINE(['-e']),
  php: INLINE(['-r']),
  lua: INLINE(['-e']),
  vim: EDITOR,
  vi: EDITOR,
  nvim: EDITOR,
  ex: EDITOR,
  npm: NPM,
  pnpm: NPM,
  yarn: NPM,
  cargo: { why: 'takes config that names programs', options: ['--config', '-Z'] },
  go: {
    why: 'runs programs named by options',
    options: ['-toolexec', '-exec'],
    subcommands: ['run', 'generate'],
  },
  docker: { why: 'runs any container with any mount', anyArg: true },
  podman: { why: 'runs any container with any mount', anyArg: true },
  ...Object.fromEntries(
    ['sh', 'bash', 'dash', 'zsh', 'ksh', 'fish', 'busybox', 'eval', 'source', '.'].map((n) => [n, SHELL]),
  ),
  ...Object.fromEntries(
    [
      'env',
      'xargs',
      'sudo',
      'doas',
      'su',
      'runuser',
      'nohup',
      'nice',
      'ionice',
      'timeout',
      'stdbuf',
      'time',
      'setsid',
      'chroot',
      'strace',
      'ltrace',
      'gdb',
      'watch',
      'flock',
      'unshare',
      'nsenter',
      'taskset',
      'chrt',
      'exec',
      'command',
      'builtin',
      'script',
      'ssh',
      'npx',
      'bunx',
      'parallel',
      'expect',
      'unbuffer',
      'systemd-run',
      'at',
      'batch',
      'crontab',
      'dbus-launch',
    ].map((n) => [n, RUNNER]),
  ),
};

/** The programs judged here, for docs and help. */
export const CODE_RUNNING_PROGRAMS: readonly string[] = Object.keys(RULES).sort();

/**
 * Whether `arg` is option `opt`: exactly, `--opt=value`, or for a one-letter option `-oVALUE` or a
 * cluster holding it (`perl -ne`, `rsync -avze`).
 */
function isOption(arg: string, opt: string): boolean {
  if (arg === opt) return true;
  if (opt === '+') return arg.startsWith('+');
  if (opt === 'ext::') return arg.startsWith('ext::');
  if (opt.startsWith('--')) return arg.startsWith(`${opt}=`);
  if (!/^-[A-Za-z]$/.test(opt) || arg.startsWith('--')) return false;
  return arg.startsWith(opt) || (/^-[A-Za-z0-9]+$/.test(arg) && arg.includes(opt[1]!));
}

const base = (program: string) => program.slice(program.lastIndexOf('/') + 1);

/**
 * Why a command that an `--allow` pattern matched still needs approval, or undefined when it does not.
 * `fromWildcard(start, end)` says whether characters of the command came from a wildcard of the pattern.
 */
export function codeRisk(
  command: string,
  fromWildcard: (start: number, end: number) => boolean,
): string | undefined {
  for (const segment of splitCommands(command)) {
    const risk = segmentRisk(segment, (w) => fromWildcard(w.start, w.end));
    if (risk) return risk;
  }
  return undefined;
}

function segmentRisk(words: Word[], wild: (w: Word) => boolean): string | undefined {
  let i = 0;
  for (; i < words.length && /^[A-Za-z_][A-Za-z0-9_]*=/.test(words[i]!.text); i++) {
    if (wild(words[i]!))
      return `\`${words[i]!.text}\` sets an environment variable for the command (a wildcard of the pattern chose it)`;
  }
  const program = words[i];
  if (!program) return undefined;
  if (wild(program)) return `a wildcard of the pattern chose the program \`${program.text}\``;
  const name = base(program.text);
  const rule = RULES[name] ?? (/^python3?(\.\d+)?$/.test(name) ? RULES.python : undefined);
  if (!rule) return undefined;
  const args = words.slice(i + 1);
  const flag = (w: Word, what: string) =>
    `\`${w.text}\`: ${name} ${what} (${rule.why}); a wildcard of the pattern supplied it`;
  let sub: string | undefined;
  let script = false;
  for (let k = 0; k < args.length; k++) {
    const a = args[k]!;
    const w = wild(a);
    if (w && rule.anyArg) return flag(a, rule.why.startsWith('is ') ? 'is a shell' : 'runs it');
    const opts = [...(rule.options ?? []), ...(sub ? (rule.subOptions?.[sub] ?? []) : (rule.global ?? []))];
    if (w && opts.some((o) => isOption(a.text, o)))
      return flag(a, 'takes code or a program through this option');
    if (w && rule.assignments && /^[A-Za-z_][A-Za-z0-9_]*=/.test(a.text))
      return flag(a, 'sets a variable that can name a program');
    const takesValue =
      (rule.valued ?? []).includes(a.text) ||
      (rule.script && opts.includes(a.text) && a.text.startsWith('-'));
    if (takesValue) {
      // The option's value: judged with its option (a wildcard value of a code option is code).
      const v = args[k + 1];
      if (v && wild(v) && opts.includes(a.text)) return flag(v, `takes code or a program through ${a.text}`);
      if (rule.script && opts.includes(a.text)) script = true;
      k++;
      continue;
    }
    if (a.text.startsWith('-') && a.text !== '-') continue;
    if (rule.script && !script) {
      script = true;
      if (w) return flag(a, 'takes this as its program');
      continue;
    }
    if (sub === undefined && (rule.subcommands || rule.global || rule.subOptions)) {
      sub = a.text;
      if (w && rule.subcommands?.includes(sub)) return flag(a, 'subcommand');
    }
  }
  return undefined;
}
