#!/usr/bin/env node
/**
 * Runs a command and reports the CPU every process on the machine used meanwhile, grouped by what it is
 * (`nfltr worker`, a vitest fork, a test fixture, …), from /proc read every 100 ms (Linux). How the
 * figures in the README's "Development" section were taken:
 *
 *   node scripts/cpu-by-process.mjs -- npx vitest run
 *
 * A process is counted with the CPU it had at its last reading, so one that lived under 100 ms is missed
 * and each loses up to 100 ms: the totals are a floor. Processes that were running before the command
 * count only what they used during it.
 */
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';

const argv = process.argv.slice(process.argv.indexOf('--') + 1);
if (process.argv.indexOf('--') < 0 || argv.length === 0) {
  process.stderr.write('usage: node scripts/cpu-by-process.mjs -- COMMAND [ARGS...]\n');
  process.exit(2);
}

const TICK_S = 0.01; // USER_HZ is 100 on Linux
/** @type {Map<string, {what: string, first: number, last: number}>} pid:starttime → readings */
const seen = new Map();

function what(pid) {
  const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
  if (cmd.length === 0) return `[${readFileSync(`/proc/${pid}/comm`, 'utf8').trim()}]`;
  const line = cmd.join(' ');
  const nfltr = /(?:bin\/nfltr\.js|nfltr\.cjs|\/nfltr)\s+([a-z][\w-]*)/.exec(line);
  if (nfltr) return `nfltr ${nfltr[1]}`;
  if (line.includes('tinypool') || line.startsWith('node (vitest')) return 'vitest fork';
  if (line.includes('vitest')) return 'vitest';
  const fixture = /test\/(?:\S*\/)?fixtures\/(\S+)|nfltr-test-fixtures\/(\S+)/.exec(line);
  if (fixture) return `fixture ${fixture[1] ?? fixture[2]}`;
  return cmd[0].split('/').pop() === 'node' && cmd[1]
    ? `node ${cmd[1].split('/').pop()}`
    : cmd[0].split('/').pop();
}

/** Reads every process; one first seen now counts from 0, or (`baseline`) from what it has used so far. */
function sample(baseline = false) {
  for (const pid of readdirSync('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      const cpu = (Number(f[11]) + Number(f[12])) * TICK_S;
      const key = `${pid}:${f[19]}`;
      const had = seen.get(key);
      if (had) had.last = cpu;
      else if (f[0] !== 'Z') seen.set(key, { what: what(pid), first: baseline ? cpu : 0, last: cpu });
    } catch {
      // gone between readdir and read
    }
  }
}

sample(true); // what already runs counts from here
const timer = setInterval(() => sample(), 100);
const started = Date.now();
const child = spawn(argv[0], argv.slice(1), { stdio: 'inherit' });
child.on('exit', (code, signal) => {
  clearInterval(timer);
  sample();
  const groups = new Map();
  for (const { what: w, first, last } of seen.values()) {
    const g = groups.get(w) ?? { n: 0, cpu: 0 };
    g.n += 1;
    g.cpu += last - first;
    groups.set(w, g);
  }
  const rows = [...groups].filter(([, g]) => g.cpu >= 0.05).sort((a, b) => b[1].cpu - a[1].cpu);
  const total = rows.reduce((s, [, g]) => s + g.cpu, 0);
  const out = [`${((Date.now() - started) / 1000).toFixed(1)} s wall, ${total.toFixed(1)} CPU-s`];
  for (const [w, g] of rows) out.push(`${g.cpu.toFixed(1).padStart(8)} s ${String(g.n).padStart(5)}  ${w}`);
  process.stderr.write(`${out.join('\n')}\n`);
  process.exit(code ?? (signal ? 1 : 0));
});
