/**
 * @module `nfltr orch`: the Control Tower from a terminal. Task reads (`task list`, `task status`,
 * `task watch`) open the local planner's tasks.db read-only; the fleet comes from the relay's HTTP API;
 * `task cancel`, `task answer` and `dispatch` go to the running planner as sealed commands through the
 * relay (as the dashboard's do), and wait for the planner's sealed outcome; `dashboard` prints the link.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { type Command, InvalidArgumentError, Option } from 'commander';
import { type CommandBody, DashboardCrypto, dashboardLink, OUTCOMES_ID } from '../protocol/dashboard.js';
import { die, formatTable, parsePositiveInt } from './options.js';
import { addRelayApiOptions, type RelayApiFlags, relayCredentials } from './peers.js';

interface PlannerFlags {
  stateDir?: string;
  name?: string;
}
interface OrchFlags extends PlannerFlags, RelayApiFlags {
  json?: boolean;
  active?: boolean;
  events?: number;
  reason?: string;
  worker?: string;
  objectiveFile?: string;
  timeoutMs?: number;
  taskId?: string;
}

const TERMINAL = new Set(['completed', 'failed', 'cancelled']);
/** How long a command waits for the planner's outcome: a dispatch waits up to 15 s for the worker. */
const OUTCOME_WAIT_MS = 45_000;

const LOCAL = "Reads the local planner's tasks.db (read-only; a running planner is not disturbed).";
const RELAY = "Reads the relay's HTTP API (--proxy-url, or the planner's relay from its state dir).";
const COMMANDS =
  'Sent to the running planner as a command sealed with its dashboard key, through the relay (the planner\n' +
  'pulls commands every 2 s); waits for the planner to report the outcome. Exit 1 when it refuses.';

function plannerOptions(cmd: Command): Command {
  return cmd
    .option(
      '--state-dir <dir>',
      "the planner's state folder (default: this folder's, as nfltr mcp chooses it)",
    )
    .option('--name <id>', 'planner id whose default state folder is used (default: as nfltr mcp names it)');
}

const jsonOption = (what: string) => new Option('--json', `print ${what} as JSON`).env('NFLTR_JSON');

function parseJsonObject(value: string): Record<string, unknown> {
  let v: unknown;
  try {
    v = JSON.parse(value);
  } catch (err) {
    throw new InvalidArgumentError(
      `expected a JSON object, got ${JSON.stringify(value)} (${(err as Error).message})`,
    );
  }
  if (!v || typeof v !== 'object' || Array.isArray(v))
    throw new InvalidArgumentError(
      `expected a JSON object like '{"answer": "yes"}', got ${JSON.stringify(value)}`,
    );
  return v as Record<string, unknown>;
}

export function register(program: Command): void {
  const orch = program
    .command('orch')
    .description(
      "The planner's tasks and the fleet from a terminal: list, status, watch, answer, cancel, dispatch",
    );
  const task = orch.command('task').description("The local planner's tasks");

  plannerOptions(task.command('list').description('List tasks: active ones, then the 50 most recent others'))
    .option('--active', 'only tasks not completed, failed or cancelled')
    .addOption(jsonOption('{"tasks": [...]}'))
    .addHelpText('after', `\n${LOCAL}\n`)
    .action(async (o: OrchFlags) => taskList(o));

  plannerOptions(
    task
      .command('status')
      .argument('<task-id>')
      .description('One task: state, worker, timing, question, result, artifacts, events'),
  )
    .addOption(
      new Option('--events <n>', 'how many of the last events to show')
        .argParser(parsePositiveInt)
        .default(20),
    )
    .addOption(jsonOption('the task (the dashboard digest fields)'))
    .addHelpText('after', `\n${LOCAL}\n`)
    .action(async (id: string, o: OrchFlags) => taskStatus(id, o));

  plannerOptions(
    task
      .command('watch')
      .argument('<task-id>')
      .description("Print the task's events as they come, until it ends"),
  )
    .addHelpText('after', `\n${LOCAL} Exit 0 when the task completes, 1 when it fails or is cancelled.\n`)
    .action(async (id: string, o: OrchFlags) => taskWatch(id, o));

  addRelayApiOptions(
    plannerOptions(task.command('cancel').argument('<task-id>').description('Cancel a task')),
  )
    .option('--reason <text>', "why, shown in the task's events")
    .addOption(jsonOption('the outcome'))
    .addHelpText('after', `\n${COMMANDS}\n`)
    .action(async (id: string, o: OrchFlags) =>
      send(o, { type: 'cancel', task_id: id, ...(o.reason ? { reason: o.reason } : {}) }),
    );

  addRelayApiOptions(
    plannerOptions(
      task.command('answer').argument('<task-id>').description("Answer a task's pending question"),
    ),
  )
    .requiredOption(
      '--json <object>',
      "the answer, a JSON object that fits the question's schema",
      parseJsonObject,
    )
    .addHelpText(
      'after',
      `\n${COMMANDS}\nThe answer goes to the question pending now (its number is read from the local store).\n`,
    )
    .action(async (id: string, o: Omit<OrchFlags, 'json'> & { json: Record<string, unknown> }) => {
      const t = (await openReader(o)).get(id);
      const pending = t?.snapshot.pending;
      if (!t) die(`no task ${id} in this planner's store (nfltr orch task list)`, 2);
      if (t.snapshot.state !== 'waiting_input' || !pending)
        die(
          `task ${id} is ${t.snapshot.state ?? 'dispatching'}, not waiting_input: there is no question to answer`,
        );
      await send({ ...o, json: false }, { type: 'answer', task_id: id, seq: pending.seq, content: o.json });
    });

  const fleet = orch.command('fleet').description("The account's workers");
  addRelayApiOptions(
    plannerOptions(fleet.command('status').description("Workers, slots and this planner's active tasks")),
  )
    .addOption(jsonOption('the summary'))
    .addHelpText('after', `\n${RELAY} Busy slots are this planner's active tasks (local store).\n`)
    .action(async (o: OrchFlags) => fleetStatus(o));
  addRelayApiOptions(
    plannerOptions(fleet.command('workers').description('Each worker: labels, max tasks, load, last seen')),
  )
    .addOption(jsonOption('{"workers": [...]}'))
    .addHelpText('after', `\n${RELAY}\n`)
    .action(async (o: OrchFlags) => fleetWorkers(o));

  addRelayApiOptions(
    plannerOptions(
      orch.command('dispatch').description('Send a task to a worker through the running planner'),
    ),
  )
    .requiredOption('--worker <id>', 'the worker to run it')
    .requiredOption('--objective-file <file>', 'the objective, read from this file (- for stdin)')
    .addOption(new Option('--timeout-ms <n>', 'task timeout').argParser(parsePositiveInt))
    .option('--task-id <id>', 'the task id (default: generated, printed)')
    .addOption(jsonOption('{"task_id", "worker", "ok", "note"}'))
    .addHelpText('after', `\n${COMMANDS}\n`)
    .action(async (o: OrchFlags) => {
      let objective: string;
      try {
        objective = readFileSync(o.objectiveFile === '-' ? 0 : o.objectiveFile!, 'utf8').trim();
      } catch (err) {
        die(`--objective-file ${o.objectiveFile}: ${(err as Error).message}`, 2);
      }
      if (!objective) die(`--objective-file ${o.objectiveFile}: the objective is empty`, 2);
      const { generateTaskId } = await import('../planner/dispatch.js');
      const { taskIdProblem } = await import('../protocol/a2a.js');
      const taskId = o.taskId ?? generateTaskId();
      const problem = taskIdProblem(taskId);
      if (problem) die(`--task-id: ${problem}`, 2);
      await send(o, {
        type: 'dispatch',
        task_id: taskId,
        worker: o.worker!,
        objective,
        ...(o.timeoutMs ? { timeout_ms: o.timeoutMs } : {}),
      });
    });

  plannerOptions(
    orch.command('dashboard').description('Print the dashboard link again (its fragment holds the key)'),
  )
    .option('--task <id>', 'link straight to this task')
    .addHelpText(
      'after',
      '\nReads <state dir>/dashboard.json, which nfltr mcp writes. Anyone with the link reads the tasks: share it as a secret.\n',
    )
    .action(async (o: PlannerFlags & { task?: string }) => {
      const info = await dashboardOf(o);
      process.stdout.write(`${dashboardLink(info.proxy_url, Buffer.from(info.key, 'base64url'), o.task)}\n`);
    });
}

async function stateDirOf(o: PlannerFlags): Promise<string> {
  const { defaultPlannerName, defaultPlannerStateDir } = await import('./mcp.js');
  return resolve(o.stateDir ?? defaultPlannerStateDir(o.name ?? defaultPlannerName()));
}

async function dashboardOf(o: PlannerFlags) {
  const { readDashboard } = await import('../planner/dashboard/index.js');
  try {
    return readDashboard(await stateDirOf(o));
  } catch (err) {
    die(`${(err as Error).message} (--state-dir, --name)`, 2);
  }
}

async function openReader(o: PlannerFlags) {
  const dir = await stateDirOf(o);
  const db = join(dir, 'tasks.db');
  if (!existsSync(db)) die(`no planner state in ${dir} (no tasks.db): pass --state-dir or --name`, 2);
  const { TaskStoreReader } = await import('../planner/task-store.js');
  try {
    return new TaskStoreReader(db);
  } catch (err) {
    die(`cannot read ${db}: ${(err as Error).message}`);
  }
}

const age = (ms: number) => {
  const s = Math.max(0, Math.round(ms / 1000));
  return s < 60
    ? `${s}s`
    : s < 3600
      ? `${Math.floor(s / 60)}m${s % 60}s`
      : `${Math.floor(s / 3600)}h${Math.floor((s % 3600) / 60)}m`;
};

async function digestOf(
  t: import('../planner/task-store.js').StoredTask,
  events: import('../planner/task-state.js').TaskEventRecord[],
) {
  const { buildDigest } = await import('../planner/dashboard/digest.js');
  return buildDigest(t, events, 'full');
}

async function taskList(o: OrchFlags): Promise<void> {
  const r = await openReader(o);
  const tasks = r.list(!o.active);
  const digests = await Promise.all(
    tasks.map((t) => digestOf(t, r.events(t.snapshot.task_id, Math.max(0, t.snapshot.last_seq - 1), 1))),
  );
  if (o.json) {
    process.stdout.write(
      `${JSON.stringify({ source: 'local', tasks: digests.map(({ events: _e, ...d }) => d) })}\n`,
    );
    return;
  }
  const now = Date.now();
  const rows = [['TASK', 'STATE', 'WORKER', 'ELAPSED', 'LAST EVENT', 'OBJECTIVE']].concat(
    digests.map((d) => [
      d.task_id,
      d.state ?? 'dispatching',
      d.worker,
      age((TERMINAL.has(d.state ?? '') ? d.updated_at : now) - d.created_at),
      d.events?.at(-1)?.message?.replace(/\s+/g, ' ').slice(0, 40) ?? '',
      (d.objective ?? '').replace(/\s+/g, ' ').slice(0, 50),
    ]),
  );
  process.stdout.write(digests.length ? formatTable(rows) : 'no tasks\n');
}

const eventLine = (e: import('../planner/task-state.js').TaskEventRecord) =>
  `#${e.seq} ${new Date(e.time).toISOString()} ${e.state}${e.message ? ` ${e.message}` : ''}${e.total ? ` (${e.progress}/${e.total})` : ''}${e.question ? ` asks: ${e.question}` : ''}${e.reason ? ` [${e.reason}]` : ''}\n`;

async function taskStatus(id: string, o: OrchFlags): Promise<void> {
  const r = await openReader(o);
  const t = r.get(id);
  if (!t) die(`no task ${id} in this planner's store (nfltr orch task list)`, 2);
  const n = o.events ?? 20;
  const events = r.events(id, Math.max(0, t.snapshot.last_seq - n), n);
  const d = await digestOf(t, events);
  if (o.json) {
    process.stdout.write(
      `${JSON.stringify({ source: 'local', task: { ...d, events: events.map((e) => ({ ...e })) } })}\n`,
    );
    return;
  }
  const out = [
    `task ${d.task_id}: ${d.state ?? 'dispatching'} on ${d.worker}, ${d.counts.events} events${d.reason ? `, ${d.reason}` : ''}`,
    `objective: ${t.snapshot.objective}`,
  ];
  if (d.pending)
    out.push(
      `question #${d.pending.seq}: ${d.pending.question}`,
      `  schema: ${JSON.stringify(d.pending.schema)}`,
    );
  if (t.snapshot.result) out.push(`result: ${t.snapshot.result.text}`);
  for (const a of d.artifacts ?? []) out.push(`artifact: ${a.name} ${a.size} B sha256:${a.sha256}`);
  process.stdout.write(`${out.join('\n')}\n${events.map(eventLine).join('')}`);
}

async function taskWatch(id: string, o: OrchFlags): Promise<void> {
  const r = await openReader(o);
  if (!r.get(id)) die(`no task ${id} in this planner's store (nfltr orch task list)`, 2);
  let seq = 0;
  for (;;) {
    for (const e of r.events(id, seq, 500)) {
      process.stdout.write(eventLine(e));
      seq = e.seq;
    }
    const s = r.get(id)!.snapshot;
    if (TERMINAL.has(s.state ?? '') && seq >= s.last_seq) process.exit(s.state === 'completed' ? 0 : 1);
    await new Promise((res) => setTimeout(res, 500));
  }
}

async function relayOf(o: OrchFlags) {
  const proxyUrl = o.proxyUrl ?? (await dashboardOf(o)).proxy_url;
  const { apiKey, ca } = relayCredentials(o);
  const { DashboardApi } = await import('../planner/dashboard/index.js');
  return { api: new DashboardApi({ proxyUrl, apiKey, ca }) };
}

async function fleetWorkers(o: OrchFlags): Promise<void> {
  const { api } = await relayOf(o);
  const workers = await api.fleet().catch((err: Error) => die(err.message));
  if (o.json) {
    process.stdout.write(`${JSON.stringify({ source: 'relay', workers })}\n`);
    return;
  }
  const now = Date.now();
  const rows = [['WORKER', 'MAX TASKS', 'LOAD', 'LAST SEEN', 'LABELS']].concat(
    workers.map((w) => [
      w.agent_id,
      String(w.max_tasks ?? '?'),
      w.load_pct === null ? '?' : `${w.load_pct}%`,
      `${age(now - Date.parse(w.last_seen))} ago`,
      Object.entries(w.labels)
        .filter(([k]) => !k.startsWith('coord.') && !k.startsWith('nfltr.'))
        .map(([k, v]) => `${k}=${v}`)
        .join(','),
    ]),
  );
  process.stdout.write(workers.length ? formatTable(rows) : 'no workers connected\n');
}

async function fleetStatus(o: OrchFlags): Promise<void> {
  const { api } = await relayOf(o);
  const workers = await api.fleet().catch((err: Error) => die(err.message));
  const dir = await stateDirOf(o);
  const active = existsSync(join(dir, 'tasks.db')) ? (await openReader(o)).list(false) : [];
  const busy = new Map<string, number>();
  for (const t of active) busy.set(t.snapshot.agent_id, (busy.get(t.snapshot.agent_id) ?? 0) + 1);
  const slots = workers.reduce((n, w) => n + (w.max_tasks ?? 0), 0);
  const summary = {
    source: 'relay',
    workers: workers.length,
    slots,
    busy_slots: active.filter((t) => workers.some((w) => w.agent_id === t.snapshot.agent_id)).length,
    active_tasks: active.length,
    per_worker: workers.map((w) => ({
      agent_id: w.agent_id,
      max_tasks: w.max_tasks,
      active_tasks: busy.get(w.agent_id) ?? 0,
      free_slots: w.max_tasks === null ? null : Math.max(0, w.max_tasks - (busy.get(w.agent_id) ?? 0)),
      load_pct: w.load_pct,
    })),
  };
  if (o.json) {
    process.stdout.write(`${JSON.stringify(summary)}\n`);
    return;
  }
  process.stdout.write(
    `${summary.workers} worker(s), ${summary.slots} slot(s), ${summary.busy_slots} busy with this planner's tasks; ${summary.active_tasks} active task(s)\n`,
  );
  if (workers.length)
    process.stdout.write(
      formatTable(
        [['WORKER', 'FREE', 'MAX', 'LOAD']].concat(
          summary.per_worker.map((w) => [
            w.agent_id,
            String(w.free_slots ?? '?'),
            String(w.max_tasks ?? '?'),
            `${w.load_pct ?? '?'}%`,
          ]),
        ),
      ),
    );
}

/** Queues one sealed command for the planner and waits for its sealed outcome. */
async function send(o: OrchFlags, body: CommandBody): Promise<void> {
  const { api } = await relayOf(o);
  const info = await dashboardOf(o);
  const crypto = new DashboardCrypto(Buffer.from(info.key, 'base64url'), info.planner_id);
  // Only outcomes written after the command was queued are read.
  let rev = 0;
  for (let more = true; more; ) {
    const page = await api.tasks(info.planner_id, rev).catch((err: Error) => die(err.message));
    rev = page.rev;
    more = page.more;
  }
  const { id, sealed } = crypto.sealCommand(body);
  await api.queue(info.planner_id, sealed).catch((err: Error) => die(err.message));
  const deadline = Date.now() + OUTCOME_WAIT_MS;
  while (Date.now() < deadline) {
    await new Promise((res) => setTimeout(res, 500));
    const page = await api.tasks(info.planner_id, rev).catch(() => undefined);
    if (!page) continue;
    rev = page.rev;
    for (const rec of page.tasks) {
      if (rec.task_id !== OUTCOMES_ID) continue;
      const outcome = crypto.openOutcomes(rec.sealed)?.find((x) => x.id === id);
      if (!outcome) continue;
      if (o.json)
        process.stdout.write(
          `${JSON.stringify({ ...outcome, worker: 'worker' in body ? body.worker : undefined })}\n`,
        );
      else
        process.stdout.write(
          `${body.type} ${outcome.task_id ?? ''}: ${outcome.ok ? 'done' : 'refused'}: ${outcome.note}\n`,
        );
      process.exit(outcome.ok ? 0 : 1);
    }
  }
  die(
    `planner ${info.planner_id} did not report on the ${body.type} within ${OUTCOME_WAIT_MS / 1000} s: is nfltr mcp running, with its dashboard on (--proxy-url, --dashboard-digest full|status)?`,
  );
}
