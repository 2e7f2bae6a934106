/**
 * @module The permission bridge: how Claude Code's permission prompts reach the planner.
 *
 * Claude Code in print mode asks an MCP tool named by `--permission-prompt-tool mcp__<server>__<tool>`
 * whenever a tool use needs approval. Claude can only call tools of MCP servers it starts itself (from
 * `--mcp-config`), so the executor cannot serve that tool on its own stdio. Instead, per task:
 *
 * ```
 *  nfltr claude-mcp (executor) ── unix socket ──▶ nfltr claude-mcp --permission-bridge SOCKET
 *        │  ▲                     (JSON lines)            ▲ stdio MCP (spawned by claude from
 *        │  └ elicitation ◀── planner                     │ the generated --mcp-config)
 *        └──── spawns ─────────────────────────▶ claude -p --permission-prompt-tool mcp__nfltr_bridge__permission_prompt
 * ```
 *
 * 1. The executor listens on a unix socket in a fresh 0700 temporary folder and writes an MCP config
 *    naming one stdio server, `nfltr_bridge`: this same `nfltr` binary in its hidden bridge mode.
 * 2. Claude starts the bridge; the bridge connects to the socket and serves one tool, `permission_prompt`.
 * 3. On each call the bridge forwards `{id, tool_name, input, tool_use_id}` as a JSON line; the executor
 *    asks the planner (MCP elicitation → `waiting_input`) and answers `{id, result}`; the bridge returns
 *    `result` as the tool's JSON text: `{"behavior":"allow","updatedInput":…}` or
 *    `{"behavior":"deny","message":…}`, as Claude Code requires.
 * If the bridge loses the executor, it denies, so nothing runs unapproved.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';
import { z } from 'zod';
import type { Logger } from '../../util/log.js';
import { VERSION } from '../../util/version.js';

/** The MCP server name in the generated config; with the tool it makes the `--permission-prompt-tool` name. */
export const BRIDGE_SERVER_NAME = 'nfltr_bridge';
export const BRIDGE_TOOL_NAME = 'permission_prompt';
export const PERMISSION_PROMPT_TOOL = `mcp__${BRIDGE_SERVER_NAME}__${BRIDGE_TOOL_NAME}`;

/** What Claude Code passes to the permission prompt tool. */
export interface PermissionRequest {
  tool_name: string;
  input: Record<string, unknown>;
  tool_use_id?: string;
}

/** What the permission prompt tool must answer (as JSON text). */
export type PermissionDecision =
  | { behavior: 'allow'; updatedInput: Record<string, unknown> }
  | { behavior: 'deny'; message: string };

export interface PermissionBridge {
  /** Path of the generated MCP config, for `--mcp-config`. */
  mcpConfigPath: string;
  socketPath: string;
  /** Stops listening and removes the temporary folder. */
  close(): Promise<void>;
}

/** Splits a socket's bytes into JSON lines; a line that is not JSON is handed over as undefined. */
function onJsonLines(socket: Socket, handle: (msg: unknown) => void): void {
  let pending = '';
  socket.setEncoding('utf8');
  socket.on('data', (chunk: string) => {
    pending += chunk;
    let nl = pending.indexOf('\n');
    while (nl !== -1) {
      const line = pending.slice(0, nl);
      pending = pending.slice(nl + 1);
      nl = pending.indexOf('\n');
      if (line.trim() === '') continue;
      let msg: unknown;
      try {
        msg = JSON.parse(line);
      } catch {
        msg = undefined;
      }
      handle(msg);
    }
  });
}

/**
 * Executor side: listens for the bridge and writes the MCP config that makes Claude start it.
 * `bridgeArgv` is how to start `nfltr claude-mcp --permission-bridge` (the socket path is appended).
 */
export async function startPermissionBridge(opts: {
  bridgeArgv: readonly string[];
  decide: (req: PermissionRequest) => Promise<PermissionDecision>;
  log: Logger;
}): Promise<PermissionBridge> {
  const dir = await mkdtemp(join(tmpdir(), 'nfltr-claude-'));
  const socketPath = join(dir, 'bridge.sock');
  const sockets = new Set<Socket>();
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    onJsonLines(socket, (msg) => {
      const m = msg as
        | { id?: unknown; tool_name?: unknown; input?: unknown; tool_use_id?: unknown }
        | undefined;
      if (!m || (typeof m.id !== 'number' && typeof m.id !== 'string')) return;
      const req: PermissionRequest = {
        tool_name: typeof m.tool_name === 'string' ? m.tool_name : 'unknown tool',
        input: m.input && typeof m.input === 'object' ? (m.input as Record<string, unknown>) : {},
        ...(typeof m.tool_use_id === 'string' ? { tool_use_id: m.tool_use_id } : {}),
      };
      opts
        .decide(req)
        .catch((err): PermissionDecision => ({ behavior: 'deny', message: `nfltr could not decide: ${err}` }))
        .then((result) => {
          if (!socket.destroyed) socket.write(`${JSON.stringify({ id: m.id, result })}\n`);
        });
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(socketPath, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const [command, ...args] = opts.bridgeArgv;
  const mcpConfigPath = join(dir, 'mcp-config.json');
  const config = {
    mcpServers: { [BRIDGE_SERVER_NAME]: { type: 'stdio', command, args: [...args, socketPath], env: {} } },
  };
  await writeFile(mcpConfigPath, `${JSON.stringify(config, null, 2)}\n`, { mode: 0o600 });
  opts.log.debug('permission bridge listening', { socket: socketPath });
  return {
    mcpConfigPath,
    socketPath,
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/**
 * Bridge side (`nfltr claude-mcp --permission-bridge SOCKET`): serves `permission_prompt` over stdio to
 * the claude CLI and forwards each call to the executor listening on `socketPath`.
 */
export async function runPermissionBridge(socketPath: string, log: Logger): Promise<McpServer> {
  const waiting = new Map<number, (d: PermissionDecision) => void>();
  let nextId = 1;
  let lost: string | undefined;
  const socket = connect(socketPath);
  const loseAll = (why: string) => {
    lost ??= why;
    for (const [id, resolve] of waiting) {
      waiting.delete(id);
      resolve({ behavior: 'deny', message: `nfltr could not ask the planner: ${why}` });
    }
  };
  socket.on('error', (err) => loseAll(`the executor is gone (${err.message})`));
  socket.on('close', () => loseAll('the executor closed the connection'));
  onJsonLines(socket, (msg) => {
    const m = msg as { id?: unknown; result?: PermissionDecision } | undefined;
    if (typeof m?.id !== 'number' || !m.result) return;
    waiting.get(m.id)?.(m.result);
    waiting.delete(m.id);
  });

  const server = new McpServer({ name: 'nfltr-permission-bridge', version: VERSION });
  server.registerTool(
    BRIDGE_TOOL_NAME,
    {
      description:
        'Permission prompt for Claude Code (--permission-prompt-tool): forwards the request to the nfltr planner and returns its decision. Not for direct use.',
      inputSchema: {
        tool_name: z.string().describe('The tool that wants to run'),
        input: z.record(z.unknown()).default({}).describe('Its input'),
        tool_use_id: z.string().optional(),
      },
    },
    async (args) => {
      const decision = await new Promise<PermissionDecision>((resolve) => {
        if (lost) return resolve({ behavior: 'deny', message: `nfltr could not ask the planner: ${lost}` });
        const id = nextId++;
        waiting.set(id, resolve);
        socket.write(`${JSON.stringify({ id, ...args })}\n`);
      });
      log.debug('permission decided', { tool: args.tool_name, behavior: decision.behavior });
      return { content: [{ type: 'text', text: JSON.stringify(decision) }] };
    },
  );
  await server.connect(new StdioServerTransport());
  return server;
}
