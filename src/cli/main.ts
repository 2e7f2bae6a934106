/**
 * @module The `nfltr` entry: registers one command per file and parses argv. Nothing else lives here.
 */
import { Command } from 'commander';
import { VERSION } from '../version.js';
import { register as registerAi } from './ai.js';
import { register as registerClaudeMcp } from './claude-mcp.js';
import { register as registerCodexMcp } from './codex-mcp.js';
import { register as registerCopilotMcp } from './copilot-mcp.js';
import { register as registerDemo } from './demo.js';
import { register as registerHttp } from './http.js';
import { register as registerKeys } from './keys.js';
import { register as registerMcp } from './mcp.js';
import { register as registerRelay } from './relay.js';
import { register as registerShellMcp } from './shell-mcp.js';
import { register as registerWorker } from './worker.js';

const program = new Command('nfltr')
  .description('Coordination transport for AI agents: relay, planner (MCP server) and workers')
  .version(VERSION)
  .showHelpAfterError()
  .configureOutput({ writeOut: (s) => process.stdout.write(s), writeErr: (s) => process.stderr.write(s) });

for (const register of [
  registerRelay,
  registerKeys,
  registerShellMcp,
  registerClaudeMcp,
  registerCopilotMcp,
  registerCodexMcp,
  registerMcp,
  registerWorker,
  registerHttp,
  registerDemo,
  registerAi,
])
  register(program);

await program.parseAsync(process.argv);
