/**
 * @module The `nfltr` entry: registers one command per file and parses argv. Nothing else lives here.
 * Only the named command's module is loaded (each pulls in its whole layer: ~0.5 s of module loading
 * for the planner or the relay), so an executor started per task pays for its own code alone. Top-level
 * help, and anything that names no known command (but `--version`), loads them all.
 */
import { type Command, Option } from 'commander';
import { VERSION } from '../util/version.js';
import { NfltrCommand, normalizeEnv } from './env.js';

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
  p2p: () => import('./p2p.js'),
  status: () => import('./status.js'),
  orch: () => import('./orch.js'),
  login: () => import('./login.js'),
  logout: () => import('./login.js'),
};

/** Global options, accepted before or after the command name; they reach loggers (ours and executors') as env. */
const GLOBAL: Record<string, { env: string; choices: string[] }> = {
  '--log-level': { env: 'NFLTR_LOG_LEVEL', choices: ['debug', 'info', 'warn', 'error'] },
  '--log-format': { env: 'NFLTR_LOG_FORMAT', choices: ['text', 'json'] },
};

/** Takes the global options out of argv into the environment; a bad value is a usage error (exit 2). */
function takeGlobalOptions(argv: string[]): string[] {
  const rest: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--') {
      rest.push(...argv.slice(i)); // a command line for someone else (`nfltr ai -- CMD …`)
      break;
    }
    const [flag, inline] = argv[i]!.split(/=(.*)/s, 2) as [string, string | undefined];
    const g = Object.hasOwn(GLOBAL, flag) && i >= 2 ? GLOBAL[flag]! : undefined;
    if (!g) {
      rest.push(argv[i]!);
      continue;
    }
    const value = inline ?? argv[++i];
    if (value === undefined || !g.choices.includes(value)) {
      process.stderr.write(
        `error: option '${flag}' argument '${value ?? ''}' is invalid: choose one of ${g.choices.join(', ')}\n`,
      );
      process.exit(2);
    }
    process.env[g.env] = value;
  }
  return rest;
}
const argv = takeGlobalOptions(process.argv);

const program = new NfltrCommand('nfltr')
  .description('Coordination transport for AI agents: relay, planner (MCP server) and workers')
  .version(VERSION)
  // A usage error is one line, a hint, and exit 2 (runtime failures exit 1).
  .showHelpAfterError('(add --help for usage)')
  .exitOverride((err) => {
    const done = err.code === 'commander.helpDisplayed' || err.code === 'commander.version';
    process.exit(done ? err.exitCode : 2);
  })
  // Shown in every command's help; parsed by takeGlobalOptions.
  .addOption(
    new Option('--log-level <level>', 'least severe log line written to stderr')
      .choices(GLOBAL['--log-level']!.choices)
      .env('NFLTR_LOG_LEVEL')
      .default('info'),
  )
  .addOption(
    new Option('--log-format <format>', 'log lines as text or one JSON object each')
      .choices(GLOBAL['--log-format']!.choices)
      .env('NFLTR_LOG_FORMAT')
      .default('text'),
  )
  .configureHelp({ showGlobalOptions: true })
  .configureOutput({ writeOut: (s) => process.stdout.write(s), writeErr: (s) => process.stderr.write(s) });

/** Loads the named command (or all of them) and runs it. No top-level await: the bundle is CommonJS. */
async function main(): Promise<void> {
  const named = argv[2] ?? '';
  const load = Object.hasOwn(COMMANDS, named)
    ? [COMMANDS[named]!]
    : named === '--version' || named === '-V'
      ? []
      : Object.values(COMMANDS);
  for (const { register } of new Set(await Promise.all(load.map((l) => l())))) register(program);
  normalizeEnv(program);
  await program.parseAsync(argv);
}
// A rejection stays unhandled, as a top-level await's would: Node prints it and exits 1.
void main();
