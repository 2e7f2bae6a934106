/**
 * @module A planner that cannot start still answers its MCP client. A process that exits before
 * `initialize` shows up in VS Code, Claude Code and the SDKs as "Connection closed", its reason lost on
 * stderr; one that answers `initialize` (and every later request) with a JSON-RPC error has its message
 * shown where the client reports a server that failed to start, and raised by the SDK clients.
 */
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';
import { ErrorCode, isJSONRPCRequest } from '@modelcontextprotocol/sdk/types.js';

/** A client sends `initialize` right after starting the server: this long without a request, nobody will. */
const IDLE_EXIT_MS = 3_000;

/**
 * Answers every request on stdin with an error carrying `message` (and `data`, for programs), then
 * exits with code 1 once the client closes stdin or sends nothing more for a few seconds (a shell or a
 * script that sends nothing gets the message on stderr and the exit code at once). Notifications are
 * ignored.
 */
export async function serveRefusal(message: string, data?: Record<string, unknown>): Promise<never> {
  process.stderr.write(`nfltr: ${message}\n`);
  const transport = new StdioServerTransport();
  let idle: NodeJS.Timeout | undefined;
  await new Promise<void>((resolve) => {
    const wait = () => {
      clearTimeout(idle);
      idle = setTimeout(resolve, IDLE_EXIT_MS);
    };
    transport.onmessage = (m) => {
      if (!isJSONRPCRequest(m)) return;
      wait();
      transport
        .send({ jsonrpc: '2.0', id: m.id, error: { code: ErrorCode.InternalError, message, data } })
        .catch(resolve);
    };
    process.stdin.once('end', resolve);
    process.stdin.once('close', resolve);
    process.stdout.once('error', resolve);
    void transport.start().then(wait);
  });
  process.exit(1);
}
