// 2. Dispatch: orchestrate_task → accepted and → completed through `nfltr mcp` over stdio, with a
// trivial executor, against calling the same executor's run_task directly over MCP stdio.
// 3. Peer comparison: the same trivial task as a direct A2A call (@a2a-js/sdk over HTTP on loopback).
import { closeSync, fdatasyncSync, openSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { directClient } from './a2a-direct.mjs';
import { kill, NFLTR_BIN, percentile, ROOT, spawnReady, startNfltr, startRelay, tempDir } from './common.mjs';
import { ECHO, grpcTransport } from './routing.mjs';

const TRIVIAL = join(ROOT, 'bench', 'trivial-executor.mjs');
const A2A = join(ROOT, 'bench', 'a2a-direct.mjs');

const stats = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return { p50: percentile(s, 50), p99: percentile(s, 99), n: s.length };
};

async function time(n, fn) {
  const out = [];
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    await fn(i);
    out.push(performance.now() - t);
  }
  return out;
}

/** `onStderr`: the server's stderr, as text (else ignored). */
async function mcpClient(command, args, env = process.env, onStderr = undefined) {
  const client = new Client({ name: 'bench', version: '1.0.0' });
  const transport = new StdioClientTransport({ command, args, env, stderr: onStderr ? 'pipe' : 'ignore' });
  transport.stderr?.setEncoding('utf8').on('data', onStderr);
  await client.connect(transport);
  return client;
}

/** Epoch ms with µs precision, comparable across the processes of one machine (as src/util/trace.ts). */
const now = () => performance.timeOrigin + performance.now();
const TRACE_LINE = /^nfltr-trace (\S+) (\S+) ([\d.]+)$/gm;

export const json = (r) => JSON.parse(r.content.map((c) => c.text ?? '').join(''));

/** `warm`: --warm-executors; `reuse`: the trivial executor declares reusable sessions. */
async function startWorker(relay, e2ee, { warm = 0, reuse = false } = {}) {
  const { child } = await startNfltr(
    'worker',
    [
      '--server',
      relay.grpcAddr,
      '--name',
      'bench-worker',
      '--max-tasks',
      '8',
      '--state-dir',
      tempDir(),
      '--mcp-command',
      `"${process.execPath}" "${TRIVIAL}"${reuse ? ' --session reuse' : ''}`,
      `--a2a-e2ee=${e2ee}`,
      ...(warm ? ['--warm-executors', String(warm)] : []),
    ],
    /nfltr worker ready/,
    { NFLTR_API_KEY: relay.key },
  );
  return child;
}

/** `nfltr mcp` on `relay` as an MCP client sees it, with a fresh state folder; `onStderr` as mcpClient's. */
export const startPlanner = (relay, args = [], onStderr = undefined) =>
  mcpClient(
    process.execPath,
    [
      NFLTR_BIN,
      'mcp',
      '--proxy-url',
      relay.httpUrl,
      '--server',
      relay.grpcAddr,
      '--name',
      'bench-planner',
      '--state-dir',
      tempDir(),
      ...args,
    ],
    { ...process.env, NFLTR_API_KEY: relay.key, NFLTR_LOG_LEVEL: 'warn' },
    onStderr,
  );

/**
 * One configuration of the relayed path: returns accepted and completed latencies. `pauseMs` between
 * tasks lets a warm pool refill (a session used once is replaced by a process that takes ~0.5 s to start).
 */
async function relayed({ tasks, e2ee, warm = 0, reuse = false, pauseMs = 0, trace = false }) {
  // With `trace`, every process writes its hops (NFLTR_TRACE, src/util/trace.ts) to stderr.
  let traced = '';
  const collect = (d) => {
    traced += d;
  };
  if (trace) process.env.NFLTR_TRACE = '1';
  const relay = await startRelay();
  const worker = await startWorker(relay, e2ee, { warm, reuse });
  if (trace) {
    relay.child.stderr.on('data', collect);
    worker.stderr.on('data', collect);
  }
  const planner = await startPlanner(relay, [`--a2a-e2ee=${e2ee}`], trace ? collect : undefined);
  delete process.env.NFLTR_TRACE;
  for (let i = 0; i < 100; i++) {
    const tools = (await planner.listTools()).tools.map((t) => t.name);
    if (tools.includes('orchestrate_task')) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  const accepted = [];
  const completed = [];
  const calls = [];
  const run = async (i) => {
    if (pauseMs) await new Promise((r) => setTimeout(r, pauseMs));
    const t0 = performance.now();
    const at = now();
    const r = await planner.callTool({
      name: 'orchestrate_task',
      arguments: { agent_id: 'bench-worker', objective: `task ${i}` },
    });
    if (r.isError) throw new Error(r.content[0].text);
    accepted.push(performance.now() - t0);
    const id = json(r).task_id;
    calls.push({ id, at, back: now() });
    // Waits in get_task_status (wait_ms) for each next event instead of spinning on the planner.
    for (let after = 0; ; ) {
      const s = json(
        await planner.callTool({
          name: 'get_task_status',
          arguments: { task_id: id, after_seq: after, wait_ms: 10_000 },
        }),
      );
      after = s.last_seq;
      if (s.state === 'completed') break;
      if (s.state === 'failed' || s.state === 'cancelled')
        throw new Error(`task ${id} ${s.state}: ${s.reason}`);
    }
    completed.push(performance.now() - t0);
    calls.at(-1).done = now();
  };
  for (let i = 0; i < 10; i++) await run(-i); // warm-up (and the one handshake)
  accepted.length = 0;
  completed.length = 0;
  for (let i = 0; i < tasks; i++) await run(i);
  await planner.close();
  await kill(worker);
  await kill(relay.child);
  const out = { accepted: stats(accepted), completed: stats(completed) };
  if (trace) {
    out.trace = hopTrace(traced, calls.slice(-tasks), 'back');
    out.completedTrace = hopTrace(traced, calls.slice(-tasks), 'done');
  }
  return out;
}

/**
 * The hops of one dispatch, from its orchestrate_task call to its answer (`end` = 'back') or to the
 * get_task_status that saw it completed ('done'), for the dispatch whose time is the median: each step
 * is `from → to` with the ms between them.
 */
function hopTrace(text, calls, end) {
  const byTask = new Map();
  for (const [, hop, channel, t] of text.matchAll(TRACE_LINE)) {
    if (!byTask.has(channel)) byTask.set(channel, []);
    byTask.get(channel).push({ hop, t: Number(t) });
  }
  const sorted = [...calls].sort((a, b) => a[end] - a.at - (b[end] - b.at));
  const c = sorted[Math.floor(sorted.length / 2)];
  const marks = [
    { hop: 'bench: orchestrate_task sent', t: c.at },
    ...(byTask.get(c.id) ?? []).filter((m) => m.t >= c.at && m.t <= c[end]),
    ...(end === 'done' ? [{ hop: 'bench: orchestrate_task answer read', t: c.back }] : []),
    { hop: end === 'done' ? 'bench: completed read' : 'bench: answer read', t: c[end] },
  ].sort((a, b) => a.t - b.t);
  const steps = marks.slice(1).map((m, i) => ({ from: marks[i].hop, to: m.hop, ms: m.t - marks[i].t }));
  return { task_id: c.id, total_ms: c[end] - c.at, steps };
}

export async function benchDispatch({ tasks = 200 } = {}) {
  // Baseline: the same executor's run_task called directly over MCP stdio.
  const direct = await mcpClient(process.execPath, [TRIVIAL]);
  const args = (i) => ({ task_id: `t${i}`, objective: `task ${i}`, input_dir: '/tmp', output_dir: '/tmp' });
  await time(20, (i) => direct.callTool({ name: 'run_task', arguments: args(i) }));
  const directMcp = stats(
    await time(tasks, (i) => direct.callTool({ name: 'run_task', arguments: args(i) })),
  );
  await direct.close();

  // Peer comparison baseline: a direct A2A call, no relay.
  const a2a = await spawnReady([A2A, 'server']);
  const call = await directClient(a2a.info.port);
  await time(20, (i) => call(`task ${i}`));
  const directA2a = stats(await time(tasks, (i) => call(`task ${i}`)));
  await kill(a2a.child);

  // The floor under a relayed dispatch here: one raw grpc-js round trip between two processes idle
  // for 10 ms before it, as planner, relay and worker are between tasks. → accepted takes two
  // (planner ⇄ relay ⇄ worker) plus the MCP stdio hop.
  const g = await spawnReady([ECHO, 'grpc']);
  const echo = grpcTransport(g.info.port);
  let replied = () => {};
  echo.onReply(() => replied());
  const idleRoundTrips = [];
  for (let i = 0; i < tasks + 20; i++) {
    await new Promise((r) => setTimeout(r, 10));
    const t = performance.now();
    await new Promise((r) => {
      replied = r;
      echo.send(i);
    });
    if (i >= 20) idleRoundTrips.push(performance.now() - t);
  }
  echo.close();
  await kill(g.child);
  const grpcIdle = stats(idleRoundTrips);

  // The planner answers orchestrate_task once its task row is on disk (docs/durability.md): one
  // fdatasync of a small write on the disk its state dir is on (tempDir, as the planner's) is a floor.
  const fd = openSync(join(tempDir(), 'sync-probe'), 'a');
  const fsync = stats(
    await time(tasks, () => {
      writeSync(fd, 'x'.repeat(200));
      fdatasyncSync(fd);
    }),
  );
  closeSync(fd);

  const encrypted = await relayed({ tasks, e2ee: true });
  // Its own short run: the trace lines cost each process a stderr write per hop.
  const { trace, completedTrace: freshTrace } = await relayed({ tasks: 11, e2ee: true, trace: true });
  const plain = await relayed({ tasks, e2ee: false });
  const warmReused = await relayed({ tasks, e2ee: true, warm: 1, reuse: true });
  // Traced: the steps that remain between a warm session's result and `completed`.
  const warmSingle = await relayed({
    tasks: Math.min(tasks, 20),
    e2ee: true,
    warm: 2,
    pauseMs: 800,
    trace: true,
  });
  return {
    directMcp,
    directA2a,
    grpcIdle,
    fsync,
    encrypted,
    plain,
    warmReused,
    warmSingle,
    trace,
    freshTrace,
    tasks,
  };
}
