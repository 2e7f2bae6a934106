/**
 * @module `nfltr demo`: the whole planner ↔ worker cycle on this machine, no AI account, no external
 * service. The timeline goes to stderr; the report's path is the one line on stdout.
 */
import { resolve } from 'node:path';
import type { Command } from 'commander';
import { type EmbeddedRelay, runDemo } from '../demo/demo.js';
import { openStore, startRelay } from '../relay/index.js';
import { createLogger } from '../util/log.js';
import { die } from './options.js';

/** The demo's relay: in this process, on free loopback ports, with a fresh `demo` account key. */
export async function startEmbeddedRelay(dataDir: string): Promise<EmbeddedRelay> {
  const store = openStore({ dataDir });
  try {
    const relay = await startRelay({
      store,
      logger: createLogger('demo.relay', { level: 'error' }),
      grpcAddr: '127.0.0.1:0',
      httpAddr: '127.0.0.1:0',
    });
    const { key } = await store.createKey('demo');
    return {
      server: `127.0.0.1:${relay.grpcPort}`,
      proxyUrl: `http://127.0.0.1:${relay.httpPort}`,
      apiKey: key,
      stop: async () => {
        await relay.drain('demo finished');
        await store.close();
      },
    };
  } catch (err) {
    await store.close();
    throw err;
  }
}

export interface DemoCommandOptions {
  dir?: string;
  json?: boolean;
}

export function register(program: Command): void {
  program
    .command('demo')
    .description(
      'Run the orchestration cycle locally: embedded relay, two shell workers, a planner driven over MCP',
    )
    .option('--dir <dir>', 'folder for the demo state, logs and report (default: a new temp folder)')
    .option(
      '--json',
      'print {"dir", "report", "duration_ms", "tasks": [{"task_id", "agent_id", "state"}]} instead of the report path',
    )
    .addHelpText(
      'after',
      '\nNeeds no AI account and no network: everything listens on 127.0.0.1 and is stopped at the end.\n' +
        'The folder (relay data, worker and planner state, logs, artifacts, report.md) is kept.\n',
    )
    .action(async (o: DemoCommandOptions) => {
      const script = process.argv[1] ? resolve(process.argv[1]) : undefined;
      if (!script) die('cannot tell how nfltr was started (no script path in argv)');
      try {
        const r = await runDemo({
          startRelay: startEmbeddedRelay,
          execPath: process.execPath,
          script,
          dir: o.dir,
        });
        process.stdout.write(
          o.json
            ? `${JSON.stringify({ dir: r.dir, report: r.reportPath, duration_ms: r.durationMs, tasks: r.tasks })}\n`
            : `${r.reportPath}\n`,
        );
        process.exit(0);
      } catch (err) {
        die(`demo failed: ${(err as Error).message}`);
      }
    });
}
