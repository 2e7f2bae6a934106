/**
 * @module `--write-mcp-json`: writes or merges the VS Code `mcp.json` entry that starts this planner.
 * The API key is never written: the entry reads it from the environment.
 */
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';

export const MCP_JSON_SERVER_NAME = 'nfltr';

export interface McpServerEntry {
  type: 'stdio';
  command: string;
  args: string[];
  env: Record<string, string>;
}

/** Strips // and /* *\/ comments and trailing commas (VS Code writes JSONC), leaving strings intact. */
export function stripJsonc(text: string): string {
  let out = '';
  let i = 0;
  while (i < text.length) {
    const c = text[i]!;
    if (c === '"') {
      let j = i + 1;
      while (j < text.length && text[j] !== '"') j += text[j] === '\\' ? 2 : 1;
      out += text.slice(i, j + 1);
      i = j + 1;
    } else if (c === '/' && text[i + 1] === '/') {
      while (i < text.length && text[i] !== '\n') i++;
    } else if (c === '/' && text[i + 1] === '*') {
      const end = text.indexOf('*/', i + 2);
      i = end === -1 ? text.length : end + 2;
    } else {
      out += c;
      i++;
    }
  }
  return out.replace(/,(\s*[}\]])/g, '$1');
}

/**
 * Puts `entry` under `servers.nfltr` in the file at `path`, keeping every other server and top-level
 * key. Refuses (throws) a file it cannot parse rather than overwrite it.
 */
export function writeMcpJson(path: string, entry: McpServerEntry): { created: boolean } {
  let doc: Record<string, unknown> = {};
  const created = !existsSync(path);
  if (!created) {
    const text = readFileSync(path, 'utf8');
    if (text.trim() !== '') {
      try {
        doc = JSON.parse(stripJsonc(text));
      } catch (err) {
        throw new Error(
          `--write-mcp-json: ${path} is not valid JSON (${(err as Error).message}); fix or move it`,
        );
      }
      if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) {
        throw new Error(`--write-mcp-json: ${path} does not hold a JSON object`);
      }
    }
  }
  const servers = doc.servers;
  if (servers !== undefined && (typeof servers !== 'object' || servers === null || Array.isArray(servers))) {
    throw new Error(`--write-mcp-json: "servers" in ${path} is not an object`);
  }
  doc.servers = { ...(servers as Record<string, unknown> | undefined), [MCP_JSON_SERVER_NAME]: entry };
  mkdirSync(dirname(path), { recursive: true });
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, `${JSON.stringify(doc, null, 2)}\n`, { mode: 0o644 });
  renameSync(tmp, path);
  return { created };
}
