/**
 * @module A short JSON-RPC conversation with a freshly started CLI (Codex's app-server, Copilot's ACP
 * server) for checks that make no model call: start it, talk, stop its process group. The CLI's
 * requests are refused; its notifications are ignored.
 */
import type { ProcessGroups } from '../util/process-group.js';
import { type AgentExit, spawnAgentProcess } from './common/index.js';
import { JsonRpcPeer, METHOD_NOT_FOUND, RpcError } from './copilot-mcp/json-rpc.js';
import { formatDuration } from './shell-mcp/index.js';

export interface RpcProcessOptions {
  argv: readonly string[];
  cwd: string;
  env: NodeJS.ProcessEnv;
  /** Where the CLI's process group is registered (the executor command's registry). */
  groups: ProcessGroups;
  /** How long the whole conversation may take. */
  timeoutMs: number;
  /** Words for an exit: what the CLI said (from its stderr tail) when it stopped early. */
  exitText(exit: AgentExit, stderr: string): string;
}

/**
 * Runs `fn` against the started CLI and stops it afterwards. Rejects with `exitText` when the CLI exits
 * before answering, with a timeout message, or with the {@link RpcError} it answered.
 */
export async function withRpcProcess<T>(
  opts: RpcProcessOptions,
  fn: (peer: JsonRpcPeer) => Promise<T>,
): Promise<T> {
  let peer: JsonRpcPeer | undefined;
  const proc = spawnAgentProcess({
    argv: opts.argv,
    cwd: opts.cwd,
    env: opts.env,
    groups: opts.groups,
    onStdoutLine: (l) => peer?.line(l),
  });
  const p = new JsonRpcPeer(
    (line) => {
      if (!proc.child.stdin.destroyed) proc.child.stdin.write(line);
    },
    {
      request: async (method) => {
        throw new RpcError(METHOD_NOT_FOUND, `method not found: ${method}`);
      },
      notification: () => {},
    },
  );
  peer = p;
  void proc.exited.then((exit) => p.close(new Error(opts.exitText(exit, proc.stderrTail()))));
  const timer = setTimeout(() => {
    p.close(new Error(`${opts.argv[0]} did not answer within ${formatDuration(opts.timeoutMs)}`));
  }, opts.timeoutMs);
  try {
    return await fn(p);
  } catch (err) {
    // When the CLI exited, wait for the exit so that the message carries its whole stderr.
    if (!(err instanceof RpcError))
      await Promise.race([proc.exited, new Promise((r) => setTimeout(r, 1000))]);
    throw err;
  } finally {
    clearTimeout(timer);
    proc.child.stdin.end();
    proc.kill();
    await proc.exited;
  }
}
