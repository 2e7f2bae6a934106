/**
 * @module `nfltr status`: one look at what this machine's key sees: the relay's health, the account's
 * agents, and the active tasks of the local planner (its tasks.db, read-only), if it has state here.
 */
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { type Command, Option } from 'commander';
import { die, formatTable } from './options.js';
import { addRelayApiOptions, peersTable, type RelayApiFlags, relayApiFrom } from './peers.js';

interface StatusFlags extends RelayApiFlags {
  json?: boolean;
  stateDir?: string;
  name?: string;
}

export function register(program: Command): void {
  addRelayApiOptions(
    program
      .command('status')
      .description(
        "Relay health, this account's agents and the local planner's active tasks (exit 1 if the relay cannot be reached)",
      ),
  )
    .option(
      '--state-dir <dir>',
      "planner state folder whose tasks.db is read (default: this folder's, as nfltr mcp chooses it)",
    )
    .option('--name <id>', 'planner id whose default state folder is read (default: as nfltr mcp names it)')
    .addOption(new Option('--json', 'print {"relay", "peers", "planner"} as JSON').env('NFLTR_JSON'))
    .addHelpText(
      'after',
      'The planner\'s tasks.db is opened read-only, so a running planner is not disturbed. Active tasks: not\ncompleted, failed or cancelled ("dispatching" until the worker accepted).\n',
    )
    .action(async (o: StatusFlags) => process.exit(await status(o)));
}

async function status(o: StatusFlags): Promise<number> {
  const directory = await relayApiFrom(o);
  const [health, peers] = await Promise.allSettled([directory.health(), directory.list()]);
  const planner = await localPlanner(o);
  const failure = [health, peers].find((r) => r.status === 'rejected')?.reason as Error | undefined;
  const relay =
    health.status === 'fulfilled' ? health.value : { status: 'unreachable', error: failure?.message };
  const agents = peers.status === 'fulfilled' ? peers.value : [];
  if (o.json) {
    process.stdout.write(
      `${JSON.stringify({ relay: { url: o.proxyUrl, ...relay }, peers: agents, planner })}\n`,
    );
  } else {
    const about = Object.entries(relay)
      .filter(([k]) => k !== 'status' && k !== 'error')
      .map(([k, v]) => `${k}=${v}`)
      .join(' ');
    process.stdout.write(`relay ${o.proxyUrl}: ${relay.status}${failure ? ` (${failure.message})` : ''}\n`);
    if (about) process.stdout.write(`  ${about}\n`);
    if (!failure) process.stdout.write(`\nagents (${agents.length}):\n${peersTable(agents)}`);
    if (!planner) process.stdout.write('\nplanner: no local state folder (--state-dir)\n');
    else if ('error' in planner) process.stdout.write(`\nplanner ${planner.state_dir}: ${planner.error}\n`);
    else {
      process.stdout.write(`\nplanner ${planner.state_dir}: ${planner.tasks.length} active task(s)\n`);
      if (planner.tasks.length > 0) {
        const rows = [['TASK', 'STATE', 'WORKER', 'UPDATED', 'OBJECTIVE']].concat(
          planner.tasks.map((t) => [
            t.task_id,
            t.state ?? 'dispatching',
            t.agent_id,
            new Date(t.updated_at).toISOString(),
            t.objective.replace(/\s+/g, ' ').slice(0, 60),
          ]),
        );
        process.stdout.write(formatTable(rows));
      }
    }
  }
  return failure ? 1 : 0;
}

/** The planner state folder given or found here, with its active tasks; undefined when there is none. */
async function localPlanner(o: StatusFlags) {
  const { defaultPlannerName, defaultPlannerStateDir } = await import('./mcp.js');
  const stateDir = resolve(o.stateDir ?? defaultPlannerStateDir(o.name ?? defaultPlannerName()));
  const db = join(stateDir, 'tasks.db');
  if (!existsSync(db)) {
    if (o.stateDir) die(`--state-dir ${o.stateDir}: no tasks.db there; is it a planner's state folder?`, 2);
    return undefined;
  }
  const { readActiveTasks } = await import('../planner/task-store.js');
  try {
    return { state_dir: stateDir, tasks: readActiveTasks(db) };
  } catch (err) {
    return { state_dir: stateDir, error: `cannot read tasks.db: ${(err as Error).message}` };
  }
}
