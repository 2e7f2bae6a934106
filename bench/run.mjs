// `npm run bench`: every figure next to a baseline measured in the same run, and the ratio.
// Flags: --only routing,dispatch,artifacts,p2p,fleet,cluster,ai,proxy,handshake  --workers N  --artifact-mib N  --tasks N  --repeats N
//        --cluster adds the cluster section, which needs PostgreSQL and NATS (bench/cluster.mjs)
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { fmt, machine, ROOT } from './common.mjs';

const { values: flags } = parseArgs({
  options: {
    only: { type: 'string' },
    repeats: { type: 'string', default: '3' },
    workers: { type: 'string', default: '1000' },
    'artifact-mib': { type: 'string', default: '1024' },
    tasks: { type: 'string', default: '50' },
    cluster: { type: 'boolean', default: false },
  },
});
const only = flags.only?.split(',');
// The cluster section needs PostgreSQL and NATS, so it runs only when asked for.
const wanted = (name) =>
  name === 'cluster' ? flags.cluster || !!only?.includes('cluster') : !only || only.includes(name);
const repeats = Number(flags.repeats);

const m = machine();
process.stderr.write(`machine: ${m.cores} cores (${m.cpu}), ${m.memory_gib} GiB, Node ${m.node}\n`);
const rows = [];
/** Printed after the table (the per-hop trace of one dispatch). */
const notes = [];
const results = { machine: m, date: new Date().toISOString(), sections: {} };
const spread = (s, d = 0) => `${fmt(s.median, d)} (${fmt(s.min, d)}–${fmt(s.max, d)})`;
/** A single measurement in the spread shape `row` takes. */
const one = (v) => ({ median: v, min: v, max: v });
const row = (figure, ours, baselineName, base, target, d = 0) =>
  rows.push({
    figure,
    ours: spread(ours, d),
    baseline: `${baselineName}: ${spread(base, d)}`,
    ratio: ours.median / base.median,
    target,
  });

if (wanted('routing')) {
  process.stderr.write('routing: 200 B envelopes agent → relay → agent …\n');
  const { benchRouting } = await import('./routing.mjs');
  const r = await benchRouting({ repeats });
  results.sections.routing = r;
  row('routing round trips/s (window 1000)', r.nfltr.rate, 'raw grpc-js echo', r.grpcRaw.rate, '≥ 3×');
  row('routing round trips/s (window 1000)', r.nfltr.rate, 'raw ws echo', r.wsRaw.rate, '≥ 0.5×');
  row('routing ping-pong p50 ms', r.nfltr.p50_ms, 'raw grpc-js echo', r.grpcRaw.p50_ms, '', 3);
  row('routing ping-pong p99 ms', r.nfltr.p99_ms, 'raw grpc-js echo', r.grpcRaw.p99_ms, '', 3);
}

if (wanted('dispatch')) {
  process.stderr.write(
    'dispatch: orchestrate_task through nfltr mcp, direct MCP and direct A2A baselines …\n',
  );
  const { benchDispatch } = await import('./dispatch.mjs');
  const d = await benchDispatch({ tasks: Number(flags.tasks) });
  results.sections.dispatch = d;
  // Single measurements (no spread): [figure, ours, baseline, its value, target, digits].
  const mcp = 'direct MCP run_task';
  const a2a = 'direct A2A call p50';
  for (const [figure, ours, baseline, base, target, digits] of [
    [
      'dispatch → accepted p50 ms (e2ee on)',
      d.encrypted.accepted.p50,
      `${mcp} p50`,
      d.directMcp.p50,
      '≤ 3 ms',
      2,
    ],
    [
      'dispatch → accepted p99 ms (e2ee on)',
      d.encrypted.accepted.p99,
      `${mcp} p99`,
      d.directMcp.p99,
      '≤ 8 ms',
      2,
    ],
    ['dispatch → accepted p50 ms (e2ee off)', d.plain.accepted.p50, `${mcp} p50`, d.directMcp.p50, '', 2],
    [
      'dispatch → completed p50 ms (e2ee on)',
      d.encrypted.completed.p50,
      `${mcp} p50`,
      d.directMcp.p50,
      '',
      1,
    ],
    ['relayed round trip (→ accepted) p50 ms', d.encrypted.accepted.p50, a2a, d.directA2a.p50, '≤ 1.5×', 2],
    [
      'relayed round trip (→ accepted) p50 ms',
      d.encrypted.accepted.p50,
      'raw grpc-js round trip after 10 ms idle p50',
      d.grpcIdle.p50,
      '',
      2,
    ],
    [
      'relayed round trip (→ accepted) p50 ms',
      d.encrypted.accepted.p50,
      'fdatasync of 200 B on the state dir disk p50',
      d.fsync.p50,
      '',
      2,
    ],
    ['relayed task (→ completed) p50 ms', d.encrypted.completed.p50, a2a, d.directA2a.p50, '≤ 1×', 1],
    [
      'dispatch → completed p50 ms, fresh executor per task',
      d.encrypted.completed.p50,
      'warm, reused session p50',
      d.warmReused.completed.p50,
      '≤ 150 ms',
      1,
    ],
    [
      'dispatch → completed p50 ms, --warm-executors (reuse declared)',
      d.warmReused.completed.p50,
      'fresh executor per task p50',
      d.encrypted.completed.p50,
      '≤ 50 ms',
      1,
    ],
    [
      'dispatch → completed p50 ms, --warm-executors (one task each)',
      d.warmSingle.completed.p50,
      'fresh executor per task p50',
      d.encrypted.completed.p50,
      '≤ 50 ms',
      1,
    ],
  ]) {
    row(figure, one(ours), baseline, one(base), target, digits);
  }
  // One hop a line: the ms since the hop before.
  const traced = (what, t) =>
    notes.push(
      `trace of one dispatch → ${what}, ${t.total_ms.toFixed(2)} ms in all):`,
      ...t.steps.map((s) => `  ${s.ms.toFixed(3).padStart(7)} ms  ${s.from} → ${s.to}`),
    );
  traced('accepted (e2ee on; the median of 11', d.trace);
  traced('completed with a fresh executor process (the median of 11', d.freshTrace);
  traced(
    `completed with --warm-executors, one task each (the median of ${d.warmSingle.completed.n}`,
    d.warmSingle.completedTrace,
  );
}

if (wanted('artifacts')) {
  const mib = Number(flags['artifact-mib']);
  process.stderr.write(`artifacts: one ${mib} MiB file through the relay, e2ee on and off, and raw TCP …\n`);
  const { benchArtifacts } = await import('./artifacts.mjs');
  // A GiB takes tens of seconds per configuration here: one run each unless --repeats asks for more.
  const a = await benchArtifacts({ mib, repeats: flags.repeats === '3' ? 1 : repeats });
  results.sections.artifacts = a;
  row(`artifact ${mib} MiB MB/s (e2ee on)`, a.encrypted.mb_s, 'raw loopback TCP', a.tcpRaw.mb_s, '≥ 0.5×', 1);
  row(`artifact ${mib} MiB MB/s (e2ee off)`, a.plain.mb_s, 'raw loopback TCP', a.tcpRaw.mb_s, '', 1);
}

if (wanted('p2p')) {
  const mib = Number(flags['artifact-mib']);
  process.stderr.write(`p2p: one ${mib} MiB file between two network namespaces: direct, relay, raw TCP …\n`);
  const { benchP2p } = await import('./p2p.mjs');
  const p = await benchP2p({ mib, repeats: flags.repeats === '3' ? 1 : repeats });
  results.sections.p2p = p;
  if (p.skipped) process.stderr.write(`p2p: skipped: ${p.skipped}\n`);
  else {
    row(`p2p ${mib} MiB MB/s direct`, p.direct, 'raw TCP between the namespaces', p.tcpRaw, '', 1);
    row(`p2p ${mib} MiB MB/s direct`, p.direct, 'nfltr p2p through the relay', p.relay, '> 1×', 1);
  }
}

if (wanted('proxy')) {
  process.stderr.write(
    'proxy: HTTP through nfltr http + /browse and proxy_request, and the same server directly …\n',
  );
  const { benchProxy } = await import('./proxy.mjs');
  const p = await benchProxy();
  results.sections.proxy = p;
  const d = 'direct to the local server';
  row('proxy: 100 B GET p50 ms', one(p.proxied.p50_ms), d, one(p.direct.p50_ms), '', 2);
  row('proxy: 100 B GET p99 ms', one(p.proxied.p99_ms), d, one(p.direct.p99_ms), '', 2);
  row('proxy: 64 MiB download MB/s', one(p.proxied.mb_s), d, one(p.direct.mb_s), '', 1);
  row('proxy: 64 MiB upload MB/s', one(p.proxied.up_mb_s), d, one(p.direct.up_mb_s), '', 1);
  const pr = p.proxy_request;
  row('proxy_request: 100 B GET p50 ms', one(pr.p50_ms), d, one(p.direct.p50_ms), '', 2);
  row('proxy_request: 100 B GET p99 ms', one(pr.p99_ms), d, one(p.direct.p99_ms), '', 2);
  row('proxy_request: 64 MiB download MB/s', one(pr.mb_s), d, one(p.direct.mb_s), '', 1);
  row('proxy_request: 64 MiB upload MB/s', one(pr.up_mb_s), d, one(p.direct.up_mb_s), '', 1);
}

if (wanted('handshake')) {
  process.stderr.write(
    'handshake: A2A handshakes with pinned static keys (Noise IX) and without (Noise NN) …\n',
  );
  const { benchHandshake } = await import('./handshake.mjs');
  const h = await benchHandshake({ repeats });
  results.sections.handshake = h;
  row('handshakes/s, IX + pin check (both ends)', h.ix, 'NN, no static keys (before)', h.nn, '≥ 0.4×');
}

if (wanted('fleet')) {
  const workers = Number(flags.workers);
  process.stderr.write(
    `fleet: ${workers} idle workers, ${process.env.BENCH_FLEET_IDLE_S ?? 30} s idle, then a relay restart …\n`,
  );
  const { benchFleet } = await import('./fleet.mjs');
  const f = await benchFleet({ workers });
  results.sections.fleet = f;
  rows.push({
    figure: `fleet: relay RSS MiB, ${workers} idle workers`,
    ours: fmt(f.relay_rss_mib),
    baseline: 'target 400 MiB at 10 000',
    ratio: f.relay_rss_mib / 400,
    target: '≤ 400 MiB',
  });
  rows.push({
    figure: `fleet: relay idle CPU %, ${workers} workers`,
    ours: fmt(f.relay_idle_cpu_pct, 2),
    baseline: 'target 1 %',
    ratio: f.relay_idle_cpu_pct / 1,
    target: '≤ 1 %',
  });
  rows.push({
    figure: `fleet: all ${workers} back after restart, s`,
    // The wait ends after 60 s: then it says how many came back.
    ours: `${fmt(f.back_in_presence_s, 2)}${f.back < workers ? ` (only ${f.back} back)` : ''}, relay up at ${fmt(f.relay_ready_s, 2)}, first back ${fmt(f.first_back_s, 2)}, half ${fmt(f.half_back_s, 2)}; CPU s relay ${fmt(f.reconnect_relay_cpu_s, 2)}, agents ${fmt(f.reconnect_agents_cpu_s, 2)}`,
    baseline: `target ${workers >= 10_000 ? 10 : 2} s at ${workers >= 10_000 ? '10 000' : '1 000'}`,
    ratio: f.back_in_presence_s / (workers >= 10_000 ? 10 : 2),
    target: workers >= 10_000 ? '≤ 10 s' : '≤ 2 s',
  });
}

if (wanted('cluster')) {
  process.stderr.write('cluster: 200 B envelopes within one replica and across two (PostgreSQL + NATS) …\n');
  const { benchCluster } = await import('./cluster.mjs');
  const c = await benchCluster({ repeats });
  if (c) {
    results.sections.cluster = c;
    row(
      'cluster round trips/s (window 1000), across 2 replicas',
      c.across.rate,
      'within 1 replica',
      c.within.rate,
      '',
    );
    row(
      'cluster ping-pong p50 ms, across 2 replicas',
      c.across.p50_ms,
      'within 1 replica',
      c.within.p50_ms,
      '',
      3,
    );
    row(
      'cluster ping-pong p99 ms, across 2 replicas',
      c.across.p99_ms,
      'within 1 replica',
      c.within.p99_ms,
      '',
      3,
    );
  }
}

if (wanted('ai')) {
  process.stderr.write(
    'ai: keystroke to echo, browser-side viewer through relay and nfltr ai, vs a local PTY …\n',
  );
  const { benchAi } = await import('./ai.mjs');
  const a = await benchAi();
  results.sections.ai = a;
  row(
    'nfltr ai keystroke→echo p50 ms',
    one(a.relayed.p50_ms),
    'local PTY echo p50',
    one(a.local.p50_ms),
    '',
    2,
  );
  row(
    'nfltr ai keystroke→echo p99 ms',
    one(a.relayed.p99_ms),
    'local PTY echo p99',
    one(a.local.p99_ms),
    '',
    2,
  );
}

const table = [['figure', 'nfltr median (min–max)', 'baseline median (min–max)', 'ratio', 'target']].concat(
  rows.map((r) => [r.figure, r.ours, r.baseline, `${r.ratio.toFixed(2)}×`, r.target]),
);
const widths = table[0].map((_, i) => Math.max(...table.map((t) => t[i].length)));
const lines = table.map((t) => `| ${t.map((c, i) => c.padEnd(widths[i])).join(' | ')} |`);
lines.splice(1, 0, `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`);
process.stdout.write(
  `\nmachine: ${m.cores} cores, ${m.memory_gib} GiB, Node ${m.node}\n${lines.join('\n')}\n`,
);
if (notes.length) process.stdout.write(`\n${notes.join('\n')}\n`);
results.table = rows;
writeFileSync(join(ROOT, 'bench', 'results.json'), `${JSON.stringify(results, null, 2)}\n`);
process.stderr.write('wrote bench/results.json\n');
process.exit(0);
