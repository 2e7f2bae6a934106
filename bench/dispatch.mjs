// 2. Dispatch: orchestrate_task → accepted and → completed through `nfltr mcp` over stdio, with a
// trivial executor, against calling the same executor's run_task directly over MCP stdio.
// 3. Peer comparison: the same trivial task as a direct A2A call (@a2a-js/sdk over HTTP on loopback).
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { directClient } from './a2a-direct.mjs';
import { kill, NFLTR_BIN, percentile, ROOT, spawnReady, startRelay, tempDir } from './common.mjs';
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

async function mcpClient(command, args, env = process.env) {
  const client = new Client({ name: 'bench', version: '1.0.0' });
  await client.connect(new StdioClientTransport({ command, args, env, stderr: 'ignore' }));
  return client;
}

export const json = (r) => JSON.parse(r.content.map((c) => c.text ?? '').join(''));

async function startWorker(relay, e2ee) {
  const child = spawn(
    process.execPath,
    [
      NFLTR_BIN,
      'worker',
      '--server',
      relay.grpcAddr,
      '--name',
      'bench-worker',
      '--max-tasks',
      '8',
      '--state-dir',
      tempDir(),
      '--mcp-command',
      `"${process.execPath}" "${TRIVIAL}"`,
      `--a2a-e2ee=${e2ee}`,
    ],
    {
      stdio: ['ignore', 'ignore', 'pipe'],
      env: { ...process.env, NFLTR_API_KEY: relay.key, NFLTR_LOG_LEVEL: 'warn' },
    },
  );
  await new Promise((res, rej) => {
    let err = '';
    child.stderr.setEncoding('utf8').on('data', (d) => {
      err += d;
      if (/nfltr worker ready/.test(err)) res();
    });
    child.once('exit', (code) => rej(new Error(`worker exited ${code}: ${err}`)));
  });
  return child;
}

/** `nfltr mcp` on `relay` as an MCP client sees it, with a fresh state folder. */
export const startPlanner = (relay, args = []) =>
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
  );

/** One configuration of the relayed path: returns accepted and completed latencies. */
async function relayed({ tasks, e2ee }) {
  const relay = await startRelay();
  const worker = await startWorker(relay, e2ee);
  const planner = await startPlanner(relay, [`--a2a-e2ee=${e2ee}`]);
  for (let i = 0; i < 100; i++) {
    const tools = (await planner.listTools()).tools.map((t) => t.name);
    if (tools.includes('orchestrate_task')) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  const accepted = [];
  const completed = [];
  const run = async (i) => {
    const t0 = performance.now();
    const r = await planner.callTool({
      name: 'orchestrate_task',
      arguments: { agent_id: 'bench-worker', objective: `task ${i}` },
    });
    if (r.isError) throw new Error(r.content[0].text);
    accepted.push(performance.now() - t0);
    const id = json(r).task_id;
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
  };
  for (let i = 0; i < 10; i++) await run(-i); // warm-up (and the one handshake)
  accepted.length = 0;
  completed.length = 0;
  for (let i = 0; i < tasks; i++) await run(i);
  await planner.close();
  await kill(worker);
  await kill(relay.child);
  return { accepted: stats(accepted), completed: stats(completed) };
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

  const encrypted = await relayed({ tasks, e2ee: true });
  const plain = await relayed({ tasks, e2ee: false });
  return { directMcp, directA2a, grpcIdle, encrypted, plain, tasks };
}
