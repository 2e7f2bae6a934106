// The trivial executor of the dispatch benchmark: run_task answers at once.
// `node trivial-executor.mjs [--session reuse]`
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';
import { z } from 'zod';

// `--session reuse` declares that one session may run task after task (docs/executor-contract.md §1).
const reuse = process.argv.includes('--session') && process.argv.at(-1) === 'reuse';
const server = new McpServer(
  { name: 'bench-trivial', version: '1.0.0' },
  reuse ? { capabilities: { experimental: { 'nfltr/session': { reuse: true } } } } : {},
);
server.registerTool(
  'run_task',
  {
    description: 'Answers at once',
    inputSchema: {
      task_id: z.string(),
      objective: z.string(),
      context: z.record(z.unknown()).optional(),
      constraints: z.record(z.unknown()).optional(),
      input_dir: z.string().optional(),
      output_dir: z.string().optional(),
    },
  },
  async ({ objective }) => ({ content: [{ type: 'text', text: `done: ${objective}` }] }),
);
await server.connect(new StdioServerTransport());
