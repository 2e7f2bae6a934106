/**
 * @module `nfltr demo`: the whole orchestration cycle on this machine, with no AI account and no
 * external service. An embedded relay, two `nfltr worker` processes (executor `nfltr shell-mcp`) with
 * different labels, and `nfltr mcp` driven through the MCP client SDK exactly as an LLM planner would:
 * discover, probe, fan out, answer a question, cancel, and collect the results into one report.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import {
  createWriteStream,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { getDefaultEnvironment, StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { generatePairingKey } from '../protocol/e2ee.js';
import { writableDir } from '../util/fs-check.js';
import { VERSION } from '../util/version.js';

/** A relay running inside the demo process, with a key for the demo account. */
export interface EmbeddedRelay {
  /** Control address (`host:port`) for --server. */
  server: string;
  /** HTTP API address for --proxy-url. */
  proxyUrl: string;
  apiKey: string;
  stop(): Promise<void>;
}

export interface DemoOptions {
  /** Starts the embedded relay with its data in `dataDir` (the CLI passes one built on src/relay). */
  startRelay: (dataDir: string) => Promise<EmbeddedRelay>;
  /** How to run nfltr: `execPath script …`. */
  execPath: string;
  script: string;
  /** Folder for everything the demo makes (default: a new temp folder). Kept afterwards. */
  dir?: string;
  /** Where the timeline goes (default stderr). */
  write?: (text: string) => void;
}

export interface DemoResult {
  dir: string;
  reportPath: string;
  durationMs: number;
  /** Every task the planner tracked, with its final state. */
  tasks: { task_id: string; agent_id: string; state: string }[];
}

interface WorkerSpec {
  name: string;
  labels: Record<string, string>;
}

const WORKERS: WorkerSpec[] = [
  { name: 'demo-eu-build', labels: { zone: 'eu', role: 'build' } },
  { name: 'demo-us-test', labels: { zone: 'us', role: 'test' } },
];

/** Commands the shell executors run without asking; anything else is put to the planner first. */
const ALLOW = ['echo *', 'uname *', 'node --version', 'ls *', 'node "$NFLTR_TASK_INPUT_DIR/sysinfo.mjs"'];

/** Sent with the first task as an input file; writes facts about the worker machine as an output file. */
const SYSINFO_SCRIPT = `import { writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
const facts = {
  hostname: os.hostname(),
  platform: os.platform(),
  release: os.release(),
  arch: os.arch(),
  cpus: os.cpus().length,
  memory_gib: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
  load_average: os.loadavg().map((n) => Math.round(n * 100) / 100),
  uptime_hours: Math.round((os.uptime() / 3600) * 10) / 10,
  node: process.version,
};
writeFileSync(join(process.env.NFLTR_TASK_OUTPUT_DIR, 'sysinfo.json'), JSON.stringify(facts, null, 2) + '\\n');
console.log('wrote sysinfo.json:', facts.platform, facts.arch, facts.cpus + ' cpus');
`;

/** A failure of the demo, said in one sentence. */
export class DemoError extends Error {
  override name = 'DemoError';
}

const shellQuote = (s: string) => (/^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replaceAll("'", "'\\''")}'`);

interface TaskStatus {
  task_id: string;
  agent_id: string;
  state: string;
  last_seq: number;
  events: { seq: number; state: string; message?: string; question?: string; reason?: string }[];
  pending_question?: { seq: number; question: string; answered: boolean };
  result?: { text: string; structured?: unknown };
  artifacts?: { name: string; size: number; sha256: string; path: string }[];
  reason?: string;
  message?: string;
}

interface ShellResult {
  ok?: boolean;
  results?: {
    command: string;
    status: string;
    exit_code: number | null;
    duration_ms: number;
    log: string | null;
  }[];
  error?: string;
}

/** What a demo run makes in its folder (besides its workers' logs). */
const DEMO_FILES = ['relay', 'planner', 'workers', 'workspaces', 'inputs', 'pairing.key', 'report.md'];

export async function runDemo(opts: DemoOptions): Promise<DemoResult> {
  const write = opts.write ?? ((t: string) => process.stderr.write(t));
  const started = Date.now();
  const dir = writableDir(opts.dir ?? mkdtempSync(join(tmpdir(), 'nfltr-demo-')), '--dir');
  // A demo run before in this folder (its planner.log says so) left durable state: its task ids, which
  // planner and workers never accept twice, and keys pinned to each other. This run starts afresh; only
  // what the demo itself makes is removed.
  if (existsSync(join(dir, 'planner.log')))
    for (const f of DEMO_FILES) rmSync(join(dir, f), { recursive: true, force: true });
  const elapsed = () => `+${((Date.now() - started) / 1000).toFixed(1)}s`.padStart(7);
  const line = (who: string, worker: string, what: string, detail = '') => {
    const text = `${elapsed()}  ${who.padEnd(10)} ${worker.padEnd(14)} ${what.padEnd(13)} ${detail}`;
    write(`${text.trimEnd()}\n`);
  };

  const children: ChildProcess[] = [];
  let relay: EmbeddedRelay | undefined;
  let client: Client | undefined;

  write(`nfltr demo ${VERSION}: relay, 2 workers and a planner on this machine, driven over MCP\n`);
  write(`  folder: ${dir}\n\n`);
  try {
    // ── relay, key, pairing key ──────────────────────────────────────────────────────────────────────
    mkdirSync(join(dir, 'relay'), { recursive: true });
    relay = await opts.startRelay(join(dir, 'relay'));
    const { server, proxyUrl, apiKey } = relay;
    const pairingFile = join(dir, 'pairing.key');
    writeFileSync(pairingFile, `${generatePairingKey()}\n`, { mode: 0o600 });
    line(
      'relay',
      '',
      'started',
      `grpc ${server}, http ${proxyUrl}; A2A end-to-end encrypted with a pairing key`,
    );

    // ── workers ──────────────────────────────────────────────────────────────────────────────────────
    const env = { ...process.env, NFLTR_API_KEY: apiKey, NFLTR_LOG_LEVEL: 'info' };
    await Promise.all(
      WORKERS.map(async (w) => {
        const cwd = join(dir, 'workspaces', w.name);
        mkdirSync(cwd, { recursive: true });
        writeFileSync(join(cwd, 'README.md'), `# ${w.name}\n\nA scratch workspace for the nfltr demo.\n`);
        writeFileSync(join(cwd, 'notes.txt'), `labels: ${JSON.stringify(w.labels)}\n`);
        const mcpCommand = ['nfltr', 'shell-mcp', '--cwd', cwd, ...ALLOW.flatMap((p) => ['--allow', p])]
          .map(shellQuote)
          .join(' ');
        const labels = Object.entries(w.labels)
          .map(([k, v]) => `${k}=${v}`)
          .join(',');
        const child = spawn(
          opts.execPath,
          [
            opts.script,
            'worker',
            '--server',
            server,
            '--name',
            w.name,
            '--labels',
            labels,
            '--max-tasks',
            '2',
            '--state-dir',
            join(dir, 'workers', w.name),
            '--e2ee-key-file',
            pairingFile,
            '--shutdown-grace',
            '2s',
            '--mcp-command',
            mcpCommand,
          ],
          { env, stdio: ['ignore', 'ignore', 'pipe'] },
        );
        children.push(child);
        await waitForLine(
          child,
          /nfltr worker ready/,
          join(dir, `${w.name}.log`),
          `worker ${w.name}`,
          20_000,
        );
        line('worker', w.name, 'ready', `${labels}, executor: ${mcpCommand.slice(0, 60)}…`);
      }),
    );

    // ── planner, over MCP ────────────────────────────────────────────────────────────────────────────
    const transport = new StdioClientTransport({
      command: opts.execPath,
      args: [
        opts.script,
        'mcp',
        '--proxy-url',
        proxyUrl,
        '--server',
        server,
        '--name',
        'demo-planner',
        '--state-dir',
        join(dir, 'planner'),
        '--e2ee-key-file',
        pairingFile,
      ],
      env: { ...getDefaultEnvironment(), NFLTR_API_KEY: apiKey, NFLTR_LOG_LEVEL: 'info' },
      stderr: 'pipe',
    });
    const plannerLog = createWriteStream(join(dir, 'planner.log'));
    transport.stderr?.pipe(plannerLog);
    client = new Client({ name: 'nfltr-demo', version: VERSION });
    await client.connect(transport);
    const c = client;
    // Every tool is there from the first tools/list; one that needs the relay waits for the link.
    const tools = (await c.listTools()).tools.map((t) => t.name);
    line('planner', 'demo-planner', 'mcp', `tools: ${tools.join(', ')}`);

    const call = async <T>(name: string, args: Record<string, unknown>): Promise<T> => {
      const r = (await c.callTool({ name, arguments: args })) as CallToolResult;
      if (r.isError) {
        const text = r.content.map((x) => (x.type === 'text' ? x.text : '')).join(' ');
        throw new DemoError(`${name} failed: ${text}`);
      }
      return r.structuredContent as T;
    };

    // ── discover ─────────────────────────────────────────────────────────────────────────────────────
    type Workers = { workers: { agent_id: string; labels: Record<string, string> }[] };
    const all = await waitFor(
      async () => {
        const r = await call<Workers>('list_worker_peers', {});
        return r.workers.length >= WORKERS.length ? r : undefined;
      },
      10_000,
      'both workers in list_worker_peers',
    );
    line('discover', '', 'list_worker_peers', all.workers.map((w) => w.agent_id).join(', '));
    const pick = async (selector: string) => {
      const r = await call<Workers>('list_worker_peers', { selector });
      const w = r.workers[0];
      if (!w) throw new DemoError(`no worker matches ${selector}`);
      line('discover', w.agent_id, 'selected', `selector ${selector}`);
      return w.agent_id;
    };
    const build = await pick('role=build');
    const test = await pick('role=test,zone!=eu');

    // ── probe ────────────────────────────────────────────────────────────────────────────────────────
    type Probe = {
      available: boolean;
      free_slots?: number;
      max_tasks?: number;
      round_trip_ms: number | null;
    };
    const probes: Record<string, Probe> = {};
    for (const id of [build, test]) {
      const p = await call<Probe>('probe_worker', { agent_id: id });
      probes[id] = p;
      line(
        'probe',
        id,
        p.available ? 'available' : 'unavailable',
        `${p.free_slots}/${p.max_tasks} slots free, ${p.round_trip_ms} ms round trip`,
      );
      if (!p.available) throw new DemoError(`worker ${id} is not available`);
    }

    // ── fan out ──────────────────────────────────────────────────────────────────────────────────────
    const inputs = join(dir, 'inputs');
    mkdirSync(inputs, { recursive: true });
    const script = join(inputs, 'sysinfo.mjs');
    writeFileSync(script, SYSINFO_SCRIPT);
    const dispatch = async (args: Record<string, unknown>) => {
      const r = await call<{ task_id: string; agent_id: string; input_files: { name: string }[] }>(
        'orchestrate_task',
        args,
      );
      const files = r.input_files.length ? `, sent ${r.input_files.map((f) => f.name).join(', ')}` : '';
      line(r.task_id, r.agent_id, 'dispatched', `${String(args.objective)}${files}`);
      return r.task_id;
    };
    const sysinfo = await dispatch({
      agent_id: build,
      task_id: 'sysinfo',
      objective: 'Collect facts about the build machine',
      context: { purpose: 'nfltr demo', report: 'machine facts' },
      constraints: {
        commands: ['uname -a', 'node --version', 'node "$NFLTR_TASK_INPUT_DIR/sysinfo.mjs"'],
      },
      artifact_files: [script],
      timeout_ms: 60_000,
    });
    const workspace = await dispatch({
      agent_id: test,
      task_id: 'workspace',
      objective: 'Inspect the test machine workspace',
      constraints: { commands: ['echo inspecting the workspace', 'ls -la', 'id -un'] },
      timeout_ms: 60_000,
    });

    const seen = new Map<string, number>();
    const follow = async (taskId: string): Promise<TaskStatus> => {
      const s = await call<TaskStatus>('get_task_status', {
        task_id: taskId,
        after_seq: seen.get(taskId) ?? 0,
      });
      for (const e of s.events) {
        const detail = e.question ?? e.message ?? '';
        line(taskId, s.agent_id, e.state, `${detail.length > 90 ? `${detail.slice(0, 90)}…` : detail}`);
      }
      seen.set(taskId, s.last_seq);
      return s;
    };
    const answer = async (s: TaskStatus) => {
      if (s.state !== 'waiting_input' || !s.pending_question || s.pending_question.answered) return;
      await call('respond_to_worker', { task_id: s.task_id, content: { approve: true } });
      line(s.task_id, s.agent_id, 'answered', 'respond_to_worker {"approve": true}');
    };
    // wait_for_tasks blocks until a task asks a question or ends, and reports each such event once.
    const finals = new Map<string, TaskStatus>();
    const deadline = Date.now() + 60_000;
    while (finals.size < 2) {
      if (Date.now() > deadline) throw new DemoError('timed out after 60 s waiting for the fan-out tasks');
      const w = await call<{ events: { task_id: string }[] }>('wait_for_tasks', {
        task_ids: [sysinfo, workspace],
        wait_ms: 20_000,
      });
      for (const id of new Set(w.events.map((e) => e.task_id))) {
        const s = await follow(id);
        await answer(s);
        if (['completed', 'failed', 'cancelled'].includes(s.state)) finals.set(id, s);
      }
    }
    for (const [id, s] of finals) {
      if (s.state !== 'completed') {
        throw new DemoError(`task ${id} ended ${s.state}: ${s.reason ?? ''} ${s.message ?? ''}`.trim());
      }
    }
    // The full status (all events) for the report.
    const full = new Map<string, TaskStatus>();
    for (const id of [sysinfo, workspace])
      full.set(id, await call<TaskStatus>('get_task_status', { task_id: id }));

    // ── start a long task, then change course ────────────────────────────────────────────────────────
    const longJob = await dispatch({
      agent_id: build,
      task_id: 'long-job',
      objective: 'A long job the planner will change its mind about',
      constraints: { commands: ['sleep 30'] },
      timeout_ms: 120_000,
    });
    let sleeping = false;
    await waitFor(
      async () => {
        const s = await follow(longJob);
        await answer(s);
        sleeping ||= s.events.some((e) => e.state === 'running' && e.message?.includes('$ sleep 30'));
        if (['completed', 'failed', 'cancelled'].includes(s.state)) {
          throw new DemoError(
            `the long job ended ${s.state} before it could be cancelled: ${s.message ?? ''}`,
          );
        }
        return sleeping || undefined;
      },
      20_000,
      'the long job to start running',
      200,
    );
    const cancelled = await call<{ state: string; confirmed_by_worker: boolean; note: string }>(
      'cancel_task',
      {
        task_id: longJob,
        reason: 'the planner changed course',
      },
    );
    await follow(longJob);
    line(longJob, build, `cancel → ${cancelled.state}`, cancelled.note);
    if (cancelled.state !== 'cancelled') throw new DemoError(`cancel_task left the task ${cancelled.state}`);

    const tracked = await call<{ tasks: DemoResult['tasks'] }>('list_active_tasks', {
      all: true,
    });
    line('inspect', '', 'list_active', tracked.tasks.map((t) => `${t.task_id}=${t.state}`).join(', '));

    // ── collect ──────────────────────────────────────────────────────────────────────────────────────
    const reportPath = join(dir, 'report.md');
    writeFileSync(
      reportPath,
      buildReport({
        started,
        workers: all.workers,
        probes,
        tasks: [...full.values()],
        cancelled: { task_id: longJob, agent_id: build, ...cancelled },
      }),
    );
    line('collect', '', 'report', `combined ${full.size} results and their artifacts into ${reportPath}`);
    write(`\nreport: ${reportPath}\n`);
    const tasks = tracked.tasks.map(({ task_id, agent_id, state }) => ({ task_id, agent_id, state }));
    return { dir, reportPath, durationMs: Date.now() - started, tasks };
  } finally {
    await client?.close().catch(() => {});
    await Promise.all(children.map((c) => stopChild(c)));
    await relay?.stop().catch(() => {});
  }
}

/** Resolves once `child` writes a line matching `re` to stderr; its stderr is also copied to `logFile`. */
function waitForLine(
  child: ChildProcess,
  re: RegExp,
  logFile: string,
  what: string,
  ms: number,
): Promise<void> {
  const log = createWriteStream(logFile);
  let text = '';
  return new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new DemoError(`${what} did not start within ${ms / 1000} s; see ${logFile}`)),
      ms,
    );
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (d: string) => {
      log.write(d);
      if (text.length < 100_000) text += d;
      if (re.test(text)) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      const tail = text.trim().split('\n').slice(-3).join(' | ');
      reject(new DemoError(`${what} exited with code ${code}: ${tail}`));
    });
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(new DemoError(`${what} could not start: ${err.message}`));
    });
  });
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, 'exit').catch(() => {});
  child.kill('SIGTERM');
  const t = setTimeout(() => child.kill('SIGKILL'), 5_000);
  await exited;
  clearTimeout(t);
}

/** Polls `fn` until it returns a value. */
async function waitFor<T>(
  fn: () => Promise<T | undefined>,
  ms: number,
  what: string,
  intervalMs = 100,
): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new DemoError(`timed out after ${ms / 1000} s waiting for ${what}`);
    await new Promise<void>((r) => setTimeout(r, intervalMs));
  }
}

function readSmall(path: string, max = 4_000): string {
  try {
    const text = readFileSync(path, 'utf8');
    return text.length > max ? `${text.slice(0, max)}\n…` : text;
  } catch {
    return '';
  }
}

/** The machine facts a task returned in sysinfo.json, if it did. */
function factsOf(t: TaskStatus): Record<string, unknown> | undefined {
  const file = t.artifacts?.find((a) => a.name === 'sysinfo.json');
  if (!file) return undefined;
  try {
    return JSON.parse(readFileSync(file.path, 'utf8')) as Record<string, unknown>;
  } catch {
    return undefined;
  }
}

/** The collector step: one markdown report from the fan-out results and their verified artifacts. */
export function buildReport(r: {
  started: number;
  workers: { agent_id: string; labels: Record<string, string> }[];
  probes: Record<string, { free_slots?: number; max_tasks?: number; round_trip_ms: number | null }>;
  tasks: TaskStatus[];
  cancelled: { task_id: string; agent_id: string; state: string; confirmed_by_worker: boolean; note: string };
}): string {
  const out: string[] = [];
  out.push('# nfltr demo report', '');
  out.push(
    `Generated ${new Date().toISOString()} by the demo planner after ${((Date.now() - r.started) / 1000).toFixed(1)} s. ` +
      'Every result below travelled end-to-end encrypted from a worker to the planner; every file was ' +
      'verified by SHA-256 before the task was reported completed.',
    '',
  );
  out.push('## Summary', '');
  let ran = 0;
  let ok = 0;
  let approved = 0;
  for (const t of r.tasks) {
    const results = ((t.result?.structured ?? {}) as ShellResult).results ?? [];
    ran += results.length;
    ok += results.filter((c) => c.status === 'succeeded').length;
    approved += t.events.filter((e) => e.state === 'waiting_input').length;
    const facts = factsOf(t);
    const what = facts
      ? `${facts.platform} ${facts.arch}, ${facts.cpus} CPUs, ${facts.memory_gib} GiB, Node ${facts.node}`
      : results.map((c) => `\`${c.command}\``).join(', ');
    out.push(
      `- **${t.agent_id}** (task ${t.task_id}): ${t.state}; ${what}; ` +
        `${t.artifacts?.length ?? 0} files returned and verified.`,
    );
  }
  out.push(
    `- ${ok} of ${ran} commands succeeded; ${approved} outside the workers' allowlists ran only after the ` +
      'planner approved them with respond_to_worker.',
    `- **${r.cancelled.agent_id}** (task ${r.cancelled.task_id}): ${r.cancelled.state} by the planner with cancel_task.`,
    '',
  );
  out.push(
    '## Workers',
    '',
    '| worker | zone | role | cpu cores | free slots | probe round trip |',
    '|---|---|---|---|---|---|',
  );
  for (const w of r.workers) {
    const p = r.probes[w.agent_id];
    out.push(
      `| ${w.agent_id} | ${w.labels.zone ?? ''} | ${w.labels.role ?? ''} | ${w.labels['coord.cpu_cores'] ?? ''} | ` +
        `${p ? `${p.free_slots}/${p.max_tasks}` : ''} | ${p?.round_trip_ms ?? ''} ms |`,
    );
  }
  out.push('');
  for (const t of r.tasks) {
    const structured = (t.result?.structured ?? {}) as ShellResult;
    out.push(`## Task \`${t.task_id}\` on ${t.agent_id}: ${t.state}`, '');
    out.push(
      `${t.events.length} events, from \`${t.events[0]?.state}\` to \`${t.events.at(-1)?.state}\`.`,
      '',
    );
    const asked = t.events.filter((e) => e.state === 'waiting_input');
    for (const q of asked) out.push(`- asked: ${q.question ?? '(question)'} → answered {"approve": true}`);
    if (asked.length) out.push('');
    if (structured.results?.length) {
      out.push('| command | status | exit | ms |', '|---|---|---|---|');
      for (const c of structured.results) {
        out.push(`| \`${c.command}\` | ${c.status} | ${c.exit_code ?? ''} | ${c.duration_ms} |`);
      }
      out.push('');
    }
    const artifacts = t.artifacts ?? [];
    const facts = factsOf(t);
    if (facts) {
      out.push('Machine facts (from sysinfo.json):', '', '| fact | value |', '|---|---|');
      for (const [k, v] of Object.entries(facts))
        out.push(`| ${k} | ${Array.isArray(v) ? v.join(', ') : String(v)} |`);
      out.push('');
    }
    for (const a of artifacts.filter((x) => /^command-\d+\.log$/.test(x.name))) {
      const cmd = structured.results?.find((c) => c.log === a.name)?.command ?? a.name;
      out.push(`Output of \`${cmd}\`:`, '', '```', readSmall(a.path).trimEnd(), '```', '');
    }
    out.push('Artifacts (verified):', '', '| file | bytes | sha256 | local path |', '|---|---|---|---|');
    for (const a of artifacts)
      out.push(`| ${a.name} | ${a.size} | \`${a.sha256.slice(0, 16)}…\` | ${a.path} |`);
    out.push('');
  }
  const c = r.cancelled;
  out.push(`## Task \`${c.task_id}\` on ${c.agent_id}: ${c.state}`, '');
  out.push(
    `Started, approved, then cancelled by the planner with cancel_task (${c.confirmed_by_worker ? 'confirmed by the worker' : 'marked locally'}): ${c.note}.`,
    '',
  );
  return `${out.join('\n')}\n`;
}
