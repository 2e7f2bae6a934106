/**
 * `npm run abuse` (not part of `npm test`): every abuse case, larger than in `npm test`, against one
 * relay process with its default bounds. Loopback only, bounded in count and time. Prints one table: cases tried, crashes,
 * relay RSS before / peak / after, bypasses. `ABUSE_SCALE` multiplies the counts (default 4).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_HOLD_WINDOW_MS, DEFAULT_LIMITS } from '../../src/relay/index.js';
import { createKey, type RelayProcess, startRelayProcess, tempDir } from '../helpers/processes.js';
import { type AbuseContext, CASES, type CaseResult, closeAgents } from './cases.js';
import { MiB, rssMiB, rssSampler, sleep } from './harness.js';

const SCALE = Number(process.env.ABUSE_SCALE ?? 4);
const HOLD_WINDOW_MS = DEFAULT_HOLD_WINDOW_MS;

interface Row extends CaseResult {
  name: string;
  crashed: boolean;
  before: number;
  peak: number;
  after: number;
  seconds: number;
}

describe('abuse suite', () => {
  let relay: RelayProcess;
  let ctx: AbuseContext;
  const rows: Row[] = [];

  beforeAll(async () => {
    const dataDir = tempDir();
    const key = await createKey(dataDir, 'abuse');
    relay = await startRelayProcess({ dataDir, args: ['--hold-window', `${HOLD_WINDOW_MS}ms`] });
    ctx = {
      relay,
      key,
      limits: {
        agentBuffer: DEFAULT_LIMITS.agentBufferBytes,
        accountBuffer: DEFAULT_LIMITS.accountBufferBytes,
        holdBytes: DEFAULT_LIMITS.holdBytes,
        headersTimeoutMs: DEFAULT_LIMITS.httpHeadersTimeoutMs,
        connsPerIp: DEFAULT_LIMITS.httpConnsPerIp,
      },
      holdWindowMs: HOLD_WINDOW_MS,
      scale: SCALE,
    };
    await sleep(HOLD_WINDOW_MS);
  });

  afterAll(async () => {
    await closeAgents();
    const fmt = (n: number) => n.toFixed(0);
    const lines = [
      `relay abuse suite (ABUSE_SCALE=${SCALE}, default bounds)`,
      '',
      '| case | tried | crashes | relay RSS MiB before / peak / after | bypasses | s | what held |',
      '| --- | ---: | ---: | --- | ---: | ---: | --- |',
      ...rows.map(
        (r) =>
          `| ${r.name} | ${r.tried} | ${r.crashed ? 1 : 0} | ${fmt(r.before)} / ${fmt(r.peak)} / ${fmt(r.after)} | ${r.bypasses} | ${r.seconds.toFixed(1)} | ${r.detail} |`,
      ),
      `| **total** | ${rows.reduce((n, r) => n + r.tried, 0)} | ${rows.filter((r) => r.crashed).length} | ${fmt(rows[0]?.before ?? 0)} / ${fmt(Math.max(...rows.map((r) => r.peak)))} / ${fmt(rows.at(-1)?.after ?? 0)} | ${rows.reduce((n, r) => n + r.bypasses, 0)} | | |`,
    ];
    process.stdout.write(`\n${lines.join('\n')}\n\n`);
    await relay?.stop();
  });

  for (const [name, run] of Object.entries(CASES)) {
    it(`abuse - ${name}`, { timeout: 180_000 }, async () => {
      const pid = relay.child.pid!;
      const before = rssMiB(pid);
      const sampler = rssSampler(relay);
      const t0 = performance.now();
      let result: CaseResult;
      try {
        result = await run(ctx);
      } catch (err) {
        result = { tried: 0, bypasses: 1, detail: `case failed: ${(err as Error).message}` };
      }
      await closeAgents();
      const seconds = (performance.now() - t0) / 1000;
      // What the offender left behind, once the relay's two collections after a drain have run.
      await sleep(7_000);
      sampler.stop();
      const crashed = relay.child.exitCode !== null;
      const after = crashed ? 0 : rssMiB(pid);
      rows.push({ name, ...result, crashed, before, peak: sampler.peak, after, seconds });
      expect(crashed, relay.stderr().slice(-2000)).toBe(false);
      expect(result.bypasses, result.detail).toBe(0);
      // Bounded: the relay never grew past its account bound plus its own working set.
      expect(sampler.peak - before).toBeLessThan(DEFAULT_LIMITS.accountBufferBytes / MiB + 200);
    });
  }
});
