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
  const agentTicks0 = holders.reduce((n, h) => n + ticks(h.child.pid), 0);
  const relayTicks0 = ticks(again.child.pid);
  // Seconds since the kill when the first agent, half and all were back in presence.
  const phases = {};
  const since = () => (performance.now() - restartAt) / 1000;
  let back = 0;
  const deadline = restartAt + 60_000;
  while (performance.now() < deadline) {
    back = await presenceCount(again);
    if (back > 0) phases.first_back_s ??= since();
    if (back >= workers / 2) phases.half_back_s ??= since();
    if (back >= workers) break;
    await new Promise((r) => setTimeout(r, 20));
  }
  const backSeconds = since();
  // CPU spent from the relay's ready line to the last agent back: the work a reconnect costs, which a
  // loaded machine stretches less than it stretches the wall clock.
  const relayCpuS = (ticks(again.child.pid) - relayTicks0) / 100;
  const agentsCpuS = (holders.reduce((n, h) => n + ticks(h.child.pid), 0) - agentTicks0) / 100;
  for (const h of holders) await kill(h.child);
  await kill(again.child);
  return {
    workers,
    idle_seconds: idleSeconds,
    relay_rss_mib: rss,
    relay_idle_cpu_pct: cpuPct,
    back_in_presence_s: backSeconds,
    relay_ready_s: readySeconds,
    ...phases,
    reconnect_relay_cpu_s: relayCpuS,
    reconnect_agents_cpu_s: agentsCpuS,
    back,
  };
}
