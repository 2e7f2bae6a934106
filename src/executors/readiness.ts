/**
 * @module The optional `check_ready` tool of an AI executor: whether it could run a task now (its CLI
 * starts and has credentials), checked cheaply and without a model call. The worker calls it at start
 * and on probes; the contract is `{ready, reason?, fix?}` in structuredContent, no arguments.
 */
import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { z } from 'zod';

/** The answer of `check_ready`. */
export interface Readiness {
  [key: string]: unknown;
  ready: boolean;
  /** Why not, in the CLI's words where it gave any. */
  reason?: string;
  /** What the operator should do (a login command, an env var, a worker flag). */
  fix?: string;
}

/** Registers `check_ready` on `server`, answering with `check()` (which must not throw). */
export function registerCheckReady(
  server: McpServer,
  cliName: string,
  check: () => Promise<Readiness>,
): void {
  server.registerTool(
    'check_ready',
    {
      title: `Is ${cliName} ready to run a task?`,
      description: `Checks, without a model call, that ${cliName} starts and has credentials. Returns ready, and when not ready the reason and the fix.`,
      inputSchema: {},
      outputSchema: {
        ready: z.boolean(),
        reason: z.string().optional(),
        fix: z.string().optional(),
      },
      annotations: { readOnlyHint: true, openWorldHint: false },
    },
    async () => {
      const r = await check();
      const text = r.ready
        ? `${cliName} is ready`
        : `${cliName} is not ready: ${r.reason}${r.fix ? `. Fix: ${r.fix}` : ''}`;
      return { content: [{ type: 'text', text }], structuredContent: r };
    },
  );
}
