/**
 * @module The `nfltr` entry: registers one command per file and parses argv. Nothing else lives here.
 * Only the named command's module is loaded (each pulls in its whole layer: ~0.5 s of module loading
 * for the planner or the relay), so an executor started per task pays for its own code alone. Top-level
 * help, and anything that names no known command (but `--version`), loads them all.
 */
import { Command } from 'commander';
import { VERSION } from '../version.js';

type Register = (program: Command) => void;

/** Top-level command name → its module, in the order `nfltr --help` lists them. */
const COMMANDS: Record<string, () => Promise<{ register: Register }>> = {
  relay: () => import('./relay.js'),
  keys: () => import('./keys.js'),
  'shell-mcp': () => import('./shell-mcp.js'),
  'claude-mcp': () => import('./claude-mcp.js'),
  'copilot-mcp': () => import('./copilot-mcp.js'),
  'codex-mcp': () => import('./codex-mcp.js'),
  mcp: () => import('./mcp.js'),
  worker: () => import('./worker.js'),
  http: () => import('./http.js'),
  demo: () => import('./demo.js'),
  ai: () => import('./ai.js'),
  peers: () => import('./peers.js'),
  status: () => import('./status.js'),
  login: () => import('./login.js'),
  logout: () => import('./login.js'),
};

const program = new Command('nfltr')
  .description('Coordination transport for AI agents: relay, planner (MCP server) and workers')
  .version(VERSION)
  // A usage error is one line, a hint, and exit 2 (runtime failures exit 1).
  .showHelpAfterError('(add --help for usage)')
  .exitOverride((err) => {
    const done = err.code === 'commander.helpDisplayed' || err.code === 'commander.version';
    process.exit(done ? err.exitCode : 2);
  })
  .configureOutput({ writeOut: (s) => process.stdout.write(s), writeErr: (s) => process.stderr.write(s) });

const named = process.argv[2] ?? '';
const load = Object.hasOwn(COMMANDS, named)
  ? [COMMANDS[named]!]
  : named === '--version' || named === '-V'
    ? []
    : Object.values(COMMANDS);
for (const { register } of new Set(await Promise.all(load.map((l) => l())))) register(program);

await program.parseAsync(process.argv);
