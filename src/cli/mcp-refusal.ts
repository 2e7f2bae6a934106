/**
 * @module A planner that cannot start still answers its MCP client. A process that exits before
 * `initialize` shows up in VS Code, Claude Code and the SDKs as "Connection closed", its reason lost on
 * stderr; one that answers `initialize` (and every later request) with a JSON-RPC error has its message
 * shown where the client reports a server that failed to start, and raised by the SDK clients.
 */
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';
import { ErrorCode, isJSONRPCRequest } from '@modelcontextprotocol/sdk/types.js';

/**
 * Answers every request on stdin with an error carrying `message` (and `data`, for programs), until
 * the client closes stdin; then exits with code 1. Notifications are ignored.
 */
export async function serveRefusal(message: string, data?: Record<string, unknown>): Promise<never> {
  process.stderr.write(`nfltr: ${message}\n`);
  const transport = new StdioServerTransport();
  transport.onmessage = (m) => {
    if (!isJSONRPCRequest(m)) return;
    transport
      .send({ jsonrpc: '2.0', id: m.id, error: { code: ErrorCode.InternalError, message, data } })
      .catch(() => process.exit(1));
  };
  await transport.start();
  await new Promise<void>((resolve) => {
    process.stdin.once('end', resolve);
    process.stdin.once('close', resolve);
    process.stdout.once('error', resolve);
  });
  process.exit(1);
}
