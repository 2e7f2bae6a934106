/**
 * `nfltr mcp --write-mcp-json`: the entry that starts the planner, merged into the config of VS Code,
 * Claude Code or Claude Desktop. Every byte of the file outside the entry is kept (checked byte for
 * byte: the new file is the old one plus insertions), and the key never lands in it.
 */
import { mkdirSync, readFileSync, realpathSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { type ParseError, parse } from 'jsonc-parser';
import { describe, expect, it } from 'vitest';
import { type ClientFormat, mergeClientConfig, type PlannerLaunch } from '../../src/planner/index.js';
import { NFLTR_BIN, nfltr, tempDir } from '../helpers/processes.js';

const launch: PlannerLaunch = {
  command: 'npx',
  args: ['-y', 'nfltr', 'mcp', '--server', 'relay.example:443'],
};

/** The JSONC value of `text`; fails the test on any syntax error. */
// biome-ignore lint/suspicious/noExplicitAny: parsed client configs, read field by field below
function jsonc(text: string): Record<string, any> {
  const errors: ParseError[] = [];
  const v = parse(text, errors, { allowTrailingComma: true });
  expect(errors).toEqual([]);
  return v;
}

/**
 * The pieces `result` adds to `original`, when `result` is `original` with at most two runs of text
 * inserted and nothing else changed; throws otherwise.
 */
function insertions(original: string, result: string): string[] {
  let p = 0;
  while (p < original.length && original[p] === result[p]) p++;
  let s = 0;
  while (
    s < original.length - p &&
    s < result.length - p &&
    original[original.length - 1 - s] === result[result.length - 1 - s]
  ) {
    s++;
  }
  const middle = original.slice(p, original.length - s);
  const added = result.slice(p, result.length - s);
  if (middle === '') return [added];
  const at = added.indexOf(middle);
  if (at < 0) throw new Error(`bytes of the original changed: ${JSON.stringify(middle)}`);
  return [added.slice(0, at), added.slice(at + middle.length)].filter(Boolean);
}

// biome-ignore-start lint/suspicious/noTemplateCurlyInString: client variables, written literally
const FIXTURES: Record<ClientFormat, { text: string; key: string; env: Record<string, string> | undefined }> =
  {
    vscode: {
      // A VS Code mcp.json as people keep them: comments, a trailing comma, odd spacing, a "//" in a string.
      text: [
        '// Servers for this repo (see the wiki)',
        '{',
        '  /* prompt once, keep in the keychain */',
        '  "inputs": [ { "type": "promptString", "id": "gh", "password": true } ],',
        '  "servers": {',
        '    "github":   {"type":"http", "url": "https://api.example//mcp"}, // remote',
        '    "local": {',
        '      "command": "node",  "args": ["srv.js"]',
        '    },',
        '  },',
        '}',
        '',
      ].join('\n'),
      key: 'servers',
      env: { NFLTR_API_KEY: '${input:nfltr-api-key}' },
    },
    'claude-code': {
      text: '{\n  "mcpServers": {\n    "fs": { "command": "npx", "args": ["-y", "@x/fs", "/tmp"] }  // scratch\n  }\n}\n',
      key: 'mcpServers',
      env: { NFLTR_API_KEY: '${NFLTR_API_KEY}' },
    },
    'claude-desktop': {
      text: '{\r\n\t"globalShortcut": "Ctrl+Space",\r\n\t"mcpServers": {}\r\n}\r\n',
      key: 'mcpServers',
      env: undefined,
    },
  };
// biome-ignore-end lint/suspicious/noTemplateCurlyInString: -

describe('client configs', () => {
  for (const format of Object.keys(FIXTURES) as ClientFormat[]) {
    it(`client configs - ${format}: merged into a commented file, every other byte kept`, () => {
      const f = FIXTURES[format];
      const r = mergeClientConfig(f.text, format, 'nfltr', launch);
      expect(r.replaced).toBe(false);
      const added = insertions(f.text, r.text);
      expect(added.join('')).toContain('"nfltr"');
      const doc = jsonc(r.text);
      const before = jsonc(f.text);
      expect(doc[f.key].nfltr).toEqual({
        ...(format === 'claude-desktop' ? {} : { type: 'stdio' }),
        command: 'npx',
        args: launch.args,
        ...(f.env ? { env: f.env } : {}),
      });
      // Everything else is as it was.
      const { nfltr: _, ...others } = doc[f.key];
      expect(others).toEqual(before[f.key]);
      for (const k of Object.keys(before).filter((k) => k !== 'inputs' && k !== f.key)) {
        expect(doc[k]).toEqual(before[k]);
      }
      if (format === 'vscode') {
        expect(r.inputAdded).toBe(true);
        expect(doc.inputs).toEqual([
          ...before.inputs,
          {
            type: 'promptString',
            id: 'nfltr-api-key',
            description: 'API key of your nfltr relay account, for the MCP server "nfltr"',
            password: true,
          },
        ]);
      } else expect(doc.inputs).toBeUndefined();
      // The file's own line ends and indentation are used.
      if (format === 'claude-desktop') {
        expect(added.join('')).not.toMatch(/[^\r]\n/);
        expect(added.join('')).toContain('\r\n\t\t"nfltr": {\r\n\t\t\t"command"');
      }

      // Written again: only the entry's own bytes are replaced, and the result is the same.
      const again = mergeClientConfig(r.text, format, 'nfltr', launch);
      expect(again.replaced).toBe(true);
      expect(again.text).toBe(r.text);
      const other = mergeClientConfig(r.text, format, 'nfltr', { command: 'nfltr', args: ['mcp'] });
      const [changedOld, changedNew] = [r.text, other.text].map((t) => {
        const start = t.indexOf('"nfltr": {') + '"nfltr": '.length;
        return { head: t.slice(0, start), tail: t.slice(t.indexOf('\n', t.indexOf('"args"')) + 1) };
      });
      expect(changedNew!.head).toBe(changedOld!.head);
      expect(jsonc(other.text)[f.key].nfltr.command).toBe('nfltr');
    });
  }

  it('client configs - --mcp-name entries sit side by side; a VS Code input of that id is kept, not doubled', () => {
    const one = mergeClientConfig('', 'vscode', 'nfltr-eu', launch);
    const two = mergeClientConfig(one.text, 'vscode', 'nfltr-us', launch);
    const doc = jsonc(two.text);
    expect(Object.keys(doc.servers)).toEqual(['nfltr-eu', 'nfltr-us']);
    expect(doc.servers['nfltr-us'].env.NFLTR_API_KEY).toBe(`\${input:nfltr-us-api-key}`);
    expect(doc.inputs.map((i: { id: string }) => i.id)).toEqual(['nfltr-eu-api-key', 'nfltr-us-api-key']);
    const kept = mergeClientConfig(two.text, 'vscode', 'nfltr-eu', launch);
    expect(kept.inputAdded).toBe(false);
    expect(kept.text).toBe(two.text);
    // An empty file, or one with only comments, gets an object after them.
    const commented = '// nothing yet\n';
    const fresh = mergeClientConfig(commented, 'claude-code', 'nfltr', launch);
    expect(fresh.text.startsWith(commented)).toBe(true);
    expect(Object.keys(jsonc(fresh.text).mcpServers)).toEqual(['nfltr']);
    // Minified files stay valid.
    const min = mergeClientConfig('{"mcpServers":{"a":{"command":"a"}}}', 'claude-desktop', 'nfltr', launch);
    expect(JSON.parse(min.text).mcpServers.a).toEqual({ command: 'a' });
  });

  it('client configs - a file that is not a JSON object, or has the servers key of another type, is refused', () => {
    expect(() => mergeClientConfig('{ "servers": ', 'vscode', 'nfltr', launch)).toThrow(
      /is not valid JSON with comments \(ValueExpected at line 1, column 14\)/,
    );
    expect(() => mergeClientConfig('[]', 'vscode', 'nfltr', launch)).toThrow(/does not hold a JSON object/);
    expect(() => mergeClientConfig('{"servers": []}', 'vscode', 'nfltr', launch)).toThrow(
      /"servers" in the file is not an object/,
    );
    expect(() => mergeClientConfig('{"inputs": {}}', 'vscode', 'nfltr', launch)).toThrow(
      /"inputs" in the file is not an array/,
    );
  });
});

describe('nfltr mcp --write-mcp-json', () => {
  const base = ['mcp', '--proxy-url', 'https://nfltr.example', '--server', 'grpc.nfltr.example:443'];
  const secret = 'nfk_never_in_a_file_0123456789';

  it('write-mcp-json - VS Code by file name: the flags given, never the key, reported precisely', async () => {
    const dir = tempDir();
    const path = join(dir, '.vscode', 'mcp.json');
    mkdirSync(join(dir, '.vscode'));
    const original = '{\n  // ours\n  "servers": {\n    "other": {"command": "x"}\n  }\n}\n';
    writeFileSync(path, original);
    const r = await nfltr(
      [...base, '--api-key', secret, '--name', 'vs-planner', '--a2a-e2ee', 'false', '--write-mcp-json', path],
      { env: { NFLTR_API_KEY: `${secret}-env` } },
    );
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe('');
    const text = readFileSync(path, 'utf8');
    expect(text).not.toContain(secret);
    insertions(original, text);
    expect(jsonc(text).servers.nfltr).toEqual({
      type: 'stdio',
      // From a clone: the nfltr on PATH, not this clone's path.
      command: 'nfltr',
      args: [
        'mcp',
        '--proxy-url',
        'https://nfltr.example',
        '--server',
        'grpc.nfltr.example:443',
        '--name',
        'vs-planner',
        '--a2a-e2ee=false',
      ],
      // biome-ignore lint/suspicious/noTemplateCurlyInString: the VS Code variable, written literally
      env: { NFLTR_API_KEY: '${input:nfltr-api-key}' },
    });
    expect(r.stderr).toContain(
      `added server "nfltr" (servers.nfltr) in ${realpathSync(path)}, VS Code format`,
    );
    expect(r.stderr).toMatch(
      /key: VS Code asks for it once \(input "nfltr-api-key", a password field, added/,
    );
    expect(r.stderr).not.toContain(secret);
  });

  it('write-mcp-json - Claude Code: --mcp-name, the key by env expansion, and the same as a claude mcp add line', async () => {
    const path = join(tempDir(), '.mcp.json');
    const r = await nfltr(
      [...base, '--mcp-name', 'nfltr-eu', '--mcp-launch', 'npx', '--write-mcp-json', path],
      {
        env: { NFLTR_API_KEY: secret },
      },
    );
    expect(r.code, r.stderr).toBe(0);
    const text = readFileSync(path, 'utf8');
    expect(text).not.toContain(secret);
    const entry = JSON.parse(text).mcpServers['nfltr-eu'];
    expect(entry).toEqual({
      type: 'stdio',
      command: 'npx',
      args: [
        '-y',
        'nfltr',
        'mcp',
        '--proxy-url',
        'https://nfltr.example',
        '--server',
        'grpc.nfltr.example:443',
      ],
      // biome-ignore lint/suspicious/noTemplateCurlyInString: Claude Code's variable, written literally
      env: { NFLTR_API_KEY: '${NFLTR_API_KEY}' },
    });
    expect(r.stderr).toContain('(mcpServers.nfltr-eu)');
    expect(r.stderr).toContain('Claude Code format (new file)');
    expect(r.stderr).toContain(
      `claude mcp add --scope project nfltr-eu -e 'NFLTR_API_KEY=\${NFLTR_API_KEY}' -- npx -y nfltr mcp ` +
        '--proxy-url https://nfltr.example --server grpc.nfltr.example:443',
    );
  });

  it('write-mcp-json - Claude Desktop by --format: the key from --api-key-file; --mcp-launch path is this nfltr', async () => {
    const dir = tempDir();
    const keyFile = join(dir, 'key');
    writeFileSync(keyFile, `${secret}\n`, { mode: 0o600 });
    const path = join(dir, 'desktop.json');
    const r = await nfltr(
      [
        ...base,
        '--api-key-file',
        keyFile,
        '--format',
        'claude-desktop',
        '--mcp-launch',
        'path',
        '--write-mcp-json',
        path,
      ],
      { env: { NFLTR_API_KEY: '' } },
    );
    expect(r.code, r.stderr).toBe(0);
    const text = readFileSync(path, 'utf8');
    expect(text).not.toContain(secret);
    expect(JSON.parse(text).mcpServers.nfltr).toEqual({
      command: process.execPath,
      args: [realpathSync(NFLTR_BIN), ...base, '--api-key-file', keyFile],
    });
    expect(r.stderr).toContain(`key: read from ${keyFile} (--api-key-file)`);
    // Without a key file the entry is written, and the user told what Claude Desktop needs.
    const bare = await nfltr([
      ...base,
      '--format',
      'claude-desktop',
      '--write-mcp-json',
      join(dir, 'other.json'),
    ]);
    expect(bare.stderr).toMatch(/Claude Desktop passes no shell environment .* --api-key-file FILE/);
  });

  it('write-mcp-json - an unknown file name needs --format; bad names and stray flags are refused', async () => {
    const dir = tempDir();
    const r = await nfltr([...base, '--write-mcp-json', join(dir, 'servers.json')]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(
      /cannot tell which client the file is for from its name; pass --format vscode .*--format claude-code .*--format claude-desktop/,
    );
    expect(() => readFileSync(join(dir, 'servers.json'))).toThrow();
    // Cursor's mcp.json is not VS Code's, whatever its name.
    mkdirSync(join(dir, '.cursor'));
    const cursor = await nfltr([...base, '--write-mcp-json', join(dir, '.cursor', 'mcp.json')]);
    expect(cursor.code).toBe(2);
    expect(cursor.stderr).toMatch(/cannot tell which client the file is for from its name; pass --format/);
    const badName = await nfltr([
      ...base,
      '--mcp-name',
      'my server',
      '--write-mcp-json',
      join(dir, 'mcp.json'),
    ]);
    expect(badName.code).not.toBe(0);
    expect(badName.stderr).toMatch(/--mcp-name.*"my server"/);
    const badFormat = await nfltr([...base, '--format', 'cursor', '--write-mcp-json', join(dir, 'mcp.json')]);
    expect(badFormat.stderr).toMatch(/--format.*cursor.*vscode, claude-code, claude-desktop/);
    const stray = await nfltr([...base, '--format', 'vscode']);
    expect(stray.stderr).toContain('--format only applies with --write-mcp-json FILE');
    // A file it cannot read as JSON is left as it was.
    writeFileSync(join(dir, 'mcp.json'), '{ not json');
    const broken = await nfltr([...base, '--write-mcp-json', join(dir, 'mcp.json')]);
    expect(broken.code).toBe(1);
    expect(broken.stderr).toMatch(
      /mcp\.json is not valid JSON with comments \(.* at line 1, column 3\); fix or move it/,
    );
    expect(readFileSync(join(dir, 'mcp.json'), 'utf8')).toBe('{ not json');
  });
});
