/**
 * @module `--write-mcp-json`: adds (or replaces) the entry that starts this planner in the MCP
 * configuration of VS Code, Claude Code or Claude Desktop. The file is JSON with comments; every byte
 * outside the entry (comments, other servers, their formatting) is kept: the entry is inserted as text
 * at a place found with `jsonc-parser` (its parse tree and scanner), never by rewriting the document.
 * Not with its `modify()`: that formats the whole lines around its edit, so a neighbour's one-line
 * object would come back spread over several lines. The API key is never written: the entry names where
 * the client gets it.
 */
import {
  existsSync,
  lstatSync,
  mkdirSync,
  readFileSync,
  realpathSync,
  renameSync,
  writeFileSync,
} from 'node:fs';
import { basename, dirname } from 'node:path';
import {
  createScanner,
  findNodeAtLocation,
  getNodeValue,
  type Node,
  type ParseError,
  parseTree,
  printParseErrorCode,
  SyntaxKind,
} from 'jsonc-parser';

export type ClientFormat = 'vscode' | 'claude-code' | 'claude-desktop';

interface FormatSpec {
  client: string;
  /** The file name each client reads, by which the format is recognised. */
  fileName: string;
  /** The object holding the servers. */
  serversKey: 'servers' | 'mcpServers';
}

export const CLIENT_FORMATS: Record<ClientFormat, FormatSpec> = {
  vscode: { client: 'VS Code', fileName: 'mcp.json', serversKey: 'servers' },
  'claude-code': { client: 'Claude Code', fileName: '.mcp.json', serversKey: 'mcpServers' },
  'claude-desktop': {
    client: 'Claude Desktop',
    fileName: 'claude_desktop_config.json',
    serversKey: 'mcpServers',
  },
};

export const DEFAULT_MCP_NAME = 'nfltr';
const KEY_ENV = 'NFLTR_API_KEY';

/**
 * The format a file is for, from its name; undefined when the name says nothing. Cursor's
 * `.cursor/mcp.json` shares VS Code's file name but not its shape (`mcpServers`), so it is not guessed.
 */
export function formatFromPath(path: string): ClientFormat | undefined {
  const name = basename(path);
  if (basename(dirname(path)) === '.cursor') return undefined;
  return (Object.keys(CLIENT_FORMATS) as ClientFormat[]).find((f) => CLIENT_FORMATS[f].fileName === name);
}

/** How the client starts the planner. */
export interface PlannerLaunch {
  command: string;
  args: string[];
}

/** The id of the VS Code input that prompts for the key of entry `name`. */
export const vscodeKeyInputId = (name: string) => `${name}-api-key`;

/** The entry, and for VS Code the input it needs, in the client's own shape. */
export function clientEntry(
  format: ClientFormat,
  name: string,
  launch: PlannerLaunch,
): { entry: Record<string, unknown>; input?: Record<string, unknown> } {
  const run = { command: launch.command, args: launch.args };
  switch (format) {
    case 'vscode':
      // VS Code asks once (password field), keeps the answer in its secret storage, and passes it.
      return {
        entry: { type: 'stdio', ...run, env: { [KEY_ENV]: `\${input:${vscodeKeyInputId(name)}}` } },
        input: {
          type: 'promptString',
          id: vscodeKeyInputId(name),
          description: `API key of your nfltr relay account, for the MCP server "${name}"`,
          password: true,
        },
      };
    case 'claude-code':
      // Claude Code expands ${VAR} from its own environment in .mcp.json (what `claude mcp add` writes).
      return { entry: { type: 'stdio', ...run, env: { [KEY_ENV]: `\${${KEY_ENV}}` } } };
    case 'claude-desktop':
      // Claude Desktop expands no variables and passes no shell environment: the key comes from
      // --api-key-file in the args, or from the environment it was started with.
      return { entry: run };
  }
}

export class ConfigFileError extends Error {
  override name = 'ConfigFileError';
}

/** Whitespace, line breaks and comments. */
const TRIVIA = new Set([
  SyntaxKind.Trivia,
  SyntaxKind.LineBreakTrivia,
  SyntaxKind.LineCommentTrivia,
  SyntaxKind.BlockCommentTrivia,
]);

interface Layout {
  eol: string;
  /** One level of indentation. */
  unit: string;
}

function layoutOf(text: string): Layout {
  const indent = /^([ \t]+)["/{[\]}]/m.exec(text)?.[1];
  return { eol: text.includes('\r\n') ? '\r\n' : '\n', unit: indent ?? '  ' };
}

/** `value` as pretty JSON whose lines after the first start with `base`. */
function pretty(value: unknown, base: string, l: Layout): string {
  return JSON.stringify(value, null, l.unit)
    .split('\n')
    .join(l.eol + base);
}

/** The whitespace a line starts with, for the line holding `offset`. */
function lineIndent(text: string, offset: number): { indent: string; startsLine: boolean } {
  const start = text.lastIndexOf('\n', offset - 1) + 1;
  const indent = /^[ \t]*/.exec(text.slice(start, offset))![0];
  return { indent, startsLine: start + indent.length === offset };
}

interface Edit {
  offset: number;
  length: number;
  content: string;
}

const applyEdit = (text: string, e: Edit) =>
  text.slice(0, e.offset) + e.content + text.slice(e.offset + e.length);

/**
 * The insertions that append a member (`"key": value`, or an array element when `key` is undefined)
 * to `container`, matching the indentation of its members. Pure insertions: no byte of the file moves
 * or changes. A comma missing after the last member is added right after it; the new member goes on
 * its own line after that member's line (and after any comment on it).
 */
function appendMember(
  text: string,
  container: Node,
  key: string | undefined,
  value: unknown,
  l: Layout,
): Edit[] {
  const head = key === undefined ? '' : `${JSON.stringify(key)}: `;
  const closeAt = container.offset + container.length - 1;
  const own = lineIndent(text, container.offset);
  const last = container.children?.at(-1);
  if (!last) {
    const inner = own.indent + l.unit;
    const close = lineIndent(text, closeAt);
    if (close.startsLine && closeAt > container.offset + 1) {
      const lineStart = closeAt - close.indent.length;
      return [{ offset: lineStart, length: 0, content: `${inner}${head}${pretty(value, inner, l)}${l.eol}` }];
    }
    return [
      {
        offset: closeAt,
        length: 0,
        content: `${l.eol}${inner}${head}${pretty(value, inner, l)}${l.eol}${own.indent}`,
      },
    ];
  }
  const lastAt = lineIndent(text, last.offset);
  const indent = lastAt.startsLine ? lastAt.indent : own.indent + l.unit;
  const end = last.offset + last.length;
  // Past the last member: its comma (if any) and whatever shares its line, up to the line break or the
  // closing bracket.
  const scanner = createScanner(text.slice(end, closeAt), false);
  let comma = false;
  let stop = closeAt;
  for (let kind = scanner.scan(); kind !== SyntaxKind.EOF; kind = scanner.scan()) {
    if (kind === SyntaxKind.CommaToken) comma = true;
    else if (kind === SyntaxKind.LineBreakTrivia) {
      stop = end + scanner.getTokenOffset();
      break;
    } else if (!TRIVIA.has(kind)) break;
  }
  const member = `${l.eol}${indent}${head}${pretty(value, indent, l)}`;
  // The member first: when both go at one offset, the comma applied after it lands before it.
  const edits: Edit[] = [
    { offset: stop, length: 0, content: stop === closeAt ? `${member}${l.eol}${own.indent}` : member },
  ];
  if (!comma) edits.push({ offset: end, length: 0, content: ',' });
  return edits;
}

/**
 * Applies edits computed on one text, last first, so earlier offsets stay valid; of two at one offset,
 * the one listed later ends up first.
 */
const applyAll = (text: string, edits: Edit[]) =>
  [...edits].sort((a, b) => b.offset - a.offset).reduce(applyEdit, text);

/** Whether the text holds nothing but whitespace and comments. */
function blank(text: string): boolean {
  const scanner = createScanner(text, false);
  for (let kind = scanner.scan(); kind !== SyntaxKind.EOF; kind = scanner.scan()) {
    if (!TRIVIA.has(kind)) return false;
  }
  return true;
}

function parseObject(text: string, what: string): Node | undefined {
  if (blank(text)) return undefined;
  const errors: ParseError[] = [];
  const root = parseTree(text, errors, { allowTrailingComma: true, disallowComments: false });
  const first = errors[0];
  if (first) {
    const before = text.slice(0, first.offset);
    const line = before.split('\n').length;
    const column = first.offset - before.lastIndexOf('\n');
    throw new ConfigFileError(
      `${what} is not valid JSON with comments (${printParseErrorCode(first.error)} at line ${line}, column ${column}); fix or move it`,
    );
  }
  if (root && root.type !== 'object') throw new ConfigFileError(`${what} does not hold a JSON object`);
  return root;
}

export interface MergeResult {
  text: string;
  /** An entry of that name was there and has been replaced. */
  replaced: boolean;
  /** VS Code: the key input was added (false: one with its id was already there and is kept). */
  inputAdded?: boolean;
}

/**
 * Puts the planner's entry under `<servers key>.<name>` of a client's config text, replacing an entry
 * of that name, and for VS Code adds the key's input unless one with its id exists. Pure.
 */
export function mergeClientConfig(
  text: string,
  format: ClientFormat,
  name: string,
  launch: PlannerLaunch,
  what = 'the file',
): MergeResult {
  const spec = CLIENT_FORMATS[format];
  const l = layoutOf(text);
  const { entry, input } = clientEntry(format, name, launch);
  let out = text;
  let root = parseObject(out, what);
  if (!root) {
    // Empty, or comments only: the object goes after them.
    out = `${out}${out === '' || out.endsWith('\n') ? '' : l.eol}{${l.eol}}${l.eol}`;
    root = parseObject(out, what)!;
  }
  let replaced = false;
  const servers = findNodeAtLocation(root, [spec.serversKey]);
  if (servers && servers.type !== 'object') {
    throw new ConfigFileError(`"${spec.serversKey}" in ${what} is not an object`);
  }
  const existing = servers && findNodeAtLocation(servers, [name]);
  if (existing) {
    replaced = true;
    const base = lineIndent(out, existing.parent!.offset).indent;
    out = applyEdit(out, {
      offset: existing.offset,
      length: existing.length,
      content: pretty(entry, base, l),
    });
  } else if (servers) {
    out = applyAll(out, appendMember(out, servers, name, entry, l));
  } else {
    out = applyAll(out, appendMember(out, root, spec.serversKey, { [name]: entry }, l));
  }
  if (!input) return { text: out, replaced };

  root = parseObject(out, what)!;
  const inputs = findNodeAtLocation(root, ['inputs']);
  if (inputs && inputs.type !== 'array') throw new ConfigFileError(`"inputs" in ${what} is not an array`);
  const have = inputs?.children?.some((c) => (getNodeValue(c) as { id?: unknown } | null)?.id === input.id);
  if (have) return { text: out, replaced, inputAdded: false };
  out = applyAll(
    out,
    inputs ? appendMember(out, inputs, undefined, input, l) : appendMember(out, root, 'inputs', [input], l),
  );
  return { text: out, replaced, inputAdded: true };
}

/**
 * Merges the entry into the file at `path` (created with its folder if missing), written whole and
 * renamed into place; a symlinked config is written through its link. Throws {@link ConfigFileError}
 * for a file it cannot read as a JSON object, leaving it untouched.
 */
export function writeClientConfig(
  path: string,
  format: ClientFormat,
  name: string,
  launch: PlannerLaunch,
): MergeResult & { created: boolean; path: string } {
  const created = !existsSync(path);
  const target = created ? path : realpathSync(path);
  const text = created ? '' : readFileSync(target, 'utf8');
  const result = mergeClientConfig(text, format, name, launch, path);
  mkdirSync(dirname(target), { recursive: true });
  const tmp = `${target}.tmp-${process.pid}`;
  writeFileSync(tmp, result.text, { mode: created ? 0o644 : lstatSync(target).mode & 0o777 });
  renameSync(tmp, target);
  return { ...result, created, path: target };
}
