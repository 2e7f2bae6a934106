// The trivial executor of the dispatch benchmark: run_task answers at once.
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';
import { z } from 'zod';

const server = new McpServer({ name: 'bench-trivial', version: '1.0.0' });
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
