// 5. Fleet: N idle workers on one relay: relay RSS and CPU over an idle period, then the time until
// all N are back in presence after a relay restart (SIGKILL, same ports).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { kill, ROOT, spawnReady, startRelay } from './common.mjs';

const AGENTS = join(ROOT, 'bench', 'fleet-agents.mjs');
const PER_PROCESS = 2500;

const ticks = (pid) => {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return Number(f[11]) + Number(f[12]); // utime + stime, in clock ticks (100/s)
};
const rssMiB = (pid) => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))[1]) / 1024;

async function presenceCount(relay) {
  try {
    const res = await fetch(`${relay.httpUrl}/healthz`, { headers: { 'x-api-key': relay.key } });
    return (await res.json()).agents;
  } catch {
    return -1;
  }
}

export async function benchFleet({ workers = 1000, idleSeconds = 30 } = {}) {
  if (process.env.BENCH_FLEET_IDLE_S) idleSeconds = Number(process.env.BENCH_FLEET_IDLE_S);
  const relay = await startRelay({ args: ['--hold-window', '0'] });
  const holders = [];
  for (let first = 0; first < workers; first += PER_PROCESS) {
    holders.push(
      await spawnReady(
        [AGENTS, relay.grpcAddr, relay.key, String(first), String(Math.min(PER_PROCESS, workers - first))],
        {
          env: { ...process.env, NFLTR_LOG_LEVEL: 'error' },
        },
      ),
    );
  }
  const pid = relay.child.pid;
  const t0 = ticks(pid);
  const start = performance.now();
  await new Promise((r) => setTimeout(r, idleSeconds * 1000));
  const cpuPct = ((ticks(pid) - t0) / 100 / ((performance.now() - start) / 1000)) * 100;
  const rss = rssMiB(pid);

  relay.child.kill('SIGKILL');
  await new Promise((r) => relay.child.once('exit', r));
  const restartAt = performance.now();
  const again = await startRelay({
    args: ['--hold-window', '0'],
    dataDir: relay.dataDir,
    key: relay.key,
    grpcPort: relay.grpc,
    httpPort: relay.http,
  });
  // The new relay's own start (process, modules, store) is part of the figure; said apart.
  const readySeconds = (performance.now() - restartAt) / 1000;
  let back = 0;
  const deadline = restartAt + 60_000;
  while (performance.now() < deadline) {
    back = await presenceCount(again);
    if (back >= workers) break;
    await new Promise((r) => setTimeout(r, 20));
  }
  const backSeconds = (performance.now() - restartAt) / 1000;
  for (const h of holders) await kill(h.child);
  await kill(again.child);
  return {
    workers,
    idle_seconds: idleSeconds,
    relay_rss_mib: rss,
    relay_idle_cpu_pct: cpuPct,
    back_in_presence_s: backSeconds,
    relay_ready_s: readySeconds,
    back,
  };
}
