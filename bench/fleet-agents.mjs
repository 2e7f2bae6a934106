// Holds N idle worker agents on one relay: node fleet-agents.mjs <relayAddr> <apiKey> <first> <count>
// Prints `ready {...}` once all are connected. Each agent has its own connection, as separate workers do.
import { AgentClient } from '../dist/agent/index.js';

const [addr, apiKey, first, count] = process.argv.slice(2);
const agents = [];
for (let i = Number(first); i < Number(first) + Number(count); i++) {
  const a = new AgentClient({
    servers: [addr],
    apiKey,
    agentId: `fleet-${i}`,
    kind: 'worker',
    labels: { fleet: 'bench' },
  });
  agents.push(a.start());
}
await Promise.all(agents.map((a) => a.waitConnected()));
process.stdout.write(`ready ${JSON.stringify({ count: agents.length })}\n`);
process.stdin.on('end', () => process.exit(0)).resume();
// An orderly exit on SIGTERM, so that BENCH_CPU_PROF gets this process's profile too.
process.on('SIGTERM', () => process.exit(0));
setInterval(() => {}, 1 << 30);
