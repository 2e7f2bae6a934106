/**
 * @module The `check_ready` tool of docs/executor-contract.md: no arguments; structuredContent
 * `{ready, reason?, fix?}` says whether the executor can do AI work right now (credentials present, CLI
 * runnable). The worker asks it at start and on probes, so it must be cheap: no model call.
 */
import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { z } from 'zod';

export const CHECK_READY_TOOL = 'check_ready';

export interface Readiness {
  [key: string]: unknown;
  ready: boolean;
  /** Why not, when not ready. */
  reason?: string;
  /** What the user does about it: a command, an environment variable, a worker flag. */
  fix?: string;
}

/** Registers `check_ready` on an executor's server, answering with `check()`. */
export function registerCheckReady(
  server: McpServer,
  cliName: string,
  check: () => Promise<Readiness>,
): void {
  server.registerTool(
    CHECK_READY_TOOL,
    {
      title: `Is ${cliName} ready?`,
      description: `Cheap check (no model call) that ${cliName} can run tasks here: the CLI starts and credentials are present. Returns {ready, reason?, fix?}.`,
      inputSchema: {},
      outputSchema: {
        ready: z.boolean(),
        reason: z.string().optional().describe('why not, when not ready'),
        fix: z.string().optional().describe('what to do about it'),
      },
      annotations: { readOnlyHint: true, openWorldHint: false },
    },
    async () => {
      const r = await check();
      const text = r.ready
        ? `${cliName} is ready`
        : `${cliName} is not ready: ${r.reason}${r.fix ? `\nFix: ${r.fix}` : ''}`;
      return { content: [{ type: 'text', text }], structuredContent: r };
    },
  );
}
