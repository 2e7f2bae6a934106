/** `--allow` verdicts: a pattern's wildcards cannot widen it through a program's own code-running options. */
import { describe, expect, it } from 'vitest';
import { checkAllowed, compileAllowPattern } from '../../src/executors/shell-mcp/allow.js';
import { splitCommands } from '../../src/executors/shell-mcp/code-flags.js';

const verdict = (patterns: string[], command: string) =>
  checkAllowed(command, patterns.map(compileAllowPattern));

describe('shell-mcp allow - code-running options', () => {
  it('git * does not allow config aliases, -C, --exec-path, or config writes', () => {
    for (const c of [
      "git -c alias.x='!touch /tmp/pwned' x",
      'git -c core.pager=evil log',
      'git --exec-path=/tmp/evil status',
      'git -C /tmp/other status',
      'git --git-dir=/tmp/x/.git log',
      'git config core.fsmonitor ./evil',
      'git rebase -x ./evil main',
      'git fetch --upload-pack=./evil origin',
      'git clone ext::sh /tmp/x',
      'git diff --output=/root/.bashrc',
    ]) {
      const v = verdict(['git *'], c);
      expect(v.allowed, c).toBe(false);
      if (!v.allowed) {
        expect(v.pattern).toBe('git *');
        expect(v.risk).toMatch(/wildcard/);
      }
    }
    for (const c of [
      'git status',
      'git log -c --oneline',
      'git commit -m "fix -c thing"',
      'git add -u',
      'git switch -c feature',
    ]) {
      expect(verdict(['git *'], c).allowed, c).toBe(true);
    }
  });

  it('a code-running word written literally in the pattern is allowed', () => {
    expect(verdict(['git -c color.ui=never *'], 'git -c color.ui=never status').allowed).toBe(true);
    expect(verdict(['find . -name * -exec wc -l {} +'], "find . -name '*.ts' -exec wc -l {} +").allowed).toBe(
      true,
    );
    expect(verdict(['find *'], 'find . -exec rm {} ;').allowed).toBe(false);
    expect(verdict(['find *'], "find . -name '*.ts'").allowed).toBe(true);
  });

  it('runners, shells and interpreters given code by a wildcard need approval', () => {
    const no = [
      ['env *', 'env sh -c id'],
      ['xargs *', 'xargs rm'],
      ['sh *', 'sh -c id'],
      ['timeout *', 'timeout 5 sh -c id'],
      ['awk * data.txt', 'awk \'BEGIN{system("id")}\' data.txt'],
      ['sed *', "sed -n '1e id' f"],
      ['python3 *', "python3 -c 'import os'"],
      ['node *', 'node -e 1'],
      ['perl *', 'perl -ne print'],
      ['make *', 'make SHELL=/tmp/evil all'],
      ['make *', 'make -f /tmp/evil.mk'],
      ['npm test *', 'npm test --script-shell=/tmp/evil'],
      ['npm *', 'npm exec evil'],
      ['tar *', 'tar -xf a.tar --to-command=sh'],
      ['rsync *', 'rsync -avze ./evil a b'],
      ['* --version', 'sh -c id --version'],
      ['FOO=1 *', 'FOO=1 LD_PRELOAD=/tmp/x.so ls'],
    ];
    for (const [p, c] of no) expect(verdict([p!], c!).allowed, `${p} / ${c}`).toBe(false);
    const yes = [
      ["awk '{print $1}' *", "awk '{print $1}' data.txt"],
      ['npm test *', 'npm test -- --grep x'],
      ['make *', 'make -j4 test'],
      ['python3 *', 'python3 tests/run.py -v'],
      ['node *', 'node --test'],
      ['echo *', 'echo -c -e hi'],
    ];
    for (const [p, c] of yes) expect(verdict([p!], c!).allowed, `${p} / ${c}`).toBe(true);
  });

  it('** (stars only) allows everything; other ** patterns are judged by the segments they match', () => {
    expect(verdict(['**'], "git -c alias.x='!id' x").allowed).toBe(true);
    expect(verdict(['git **'], 'git log | sh -c id').allowed).toBe(false);
    // A program after a pipe that a wildcard supplied is a program the pattern never named.
    expect(verdict(['git **'], 'git log | head')).toMatchObject({
      allowed: false,
      risk: expect.stringContaining('`head`'),
    });
    expect(verdict(['git log | head *'], 'git log | head -5').allowed).toBe(true);
  });

  it('a second pattern can allow what a first one does not', () => {
    expect(verdict(['git *', "git -c alias.x='!echo hi' x"], "git -c alias.x='!echo hi' x").allowed).toBe(
      true,
    );
    expect(verdict(['ls *'], 'git status')).toEqual({ allowed: false });
  });

  it('splits commands into simple commands of unquoted words with their places', () => {
    expect(splitCommands(`a 'b c' "d\\"e" f\\ g; h|i $(j k) \`l\``).map((s) => s.map((w) => w.text))).toEqual(
      [['a', 'b c', 'd"e', 'f g'], ['h'], ['i'], ['j', 'k'], ['l']],
    );
    const w = splitCommands('  xy')[0]?.[0];
    expect(w).toEqual({ text: 'xy', start: 2, end: 4 });
  });
});
