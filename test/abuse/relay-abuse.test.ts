/**
 * The abuse cases at small size, against a relay with small bounds so each case reaches them fast
 * (`npm run abuse` runs them larger, against the defaults, and prints RSS). Every case must end with
 * no bypass and the relay alive and serving.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AgentClient } from '../../src/agent/index.js';
import { createKey, type RelayProcess, startRelayProcess, tempDir } from '../helpers/processes.js';
import { type AbuseContext, CASES, closeAgents } from './cases.js';
import { MiB, sleep } from './harness.js';

const LIMITS = {
  agentBuffer: 4 * MiB,
  accountBuffer: 12 * MiB,
  holdBytes: 8 * MiB,
  headersTimeoutMs: 1_000,
  connsPerIp: 20,
};
const HOLD_WINDOW_MS = 1_500;

describe('abuse - relay', () => {
  let relay: RelayProcess;
  let ctx: AbuseContext;

  beforeAll(async () => {
    const dataDir = tempDir();
    const key = await createKey(dataDir, 'abuse');
    relay = await startRelayProcess({
      dataDir,
      args: [
        '--agent-buffer',
        '4MiB',
        '--account-buffer',
        '12MiB',
        '--hold-bytes',
        '8MiB',
        '--control-backlog',
        '256KiB',
        '--http-headers-timeout',
        '1s',
        '--http-max-conns-per-ip',
        '20',
        '--hold-window',
        `${HOLD_WINDOW_MS}ms`,
      ],
    });
    ctx = { relay, key, limits: LIMITS, holdWindowMs: HOLD_WINDOW_MS, scale: 1 };
    // Past the window after start, in which any id counts as reconnecting and is held.
    await sleep(HOLD_WINDOW_MS);
  });

  afterAll(async () => {
    await closeAgents();
    await relay?.stop();
  });

  for (const [name, run] of Object.entries(CASES)) {
    it(`abuse - ${name}: no bypass, the relay keeps serving`, async () => {
      const r = await run(ctx);
      expect(r.bypasses, r.detail).toBe(0);
      expect(r.tried).toBeGreaterThan(0);
      expect(relay.child.exitCode, relay.stderr().slice(-2000)).toBeNull();
      // Still serving: a fresh pair of agents exchanges an envelope.
      const a = new AgentClient({
        servers: [relay.grpcAddr],
        apiKey: ctx.key,
        agentId: 'probe-a',
        kind: 'worker',
      });
      const b = new AgentClient({
        servers: [relay.grpcAddr],
        apiKey: ctx.key,
        agentId: 'probe-b',
        kind: 'worker',
      });
      await Promise.all([a.start().waitConnected(), b.start().waitConnected()]);
      const got = new Promise((res) => b.once('envelope', res));
      a.send({ to: 'probe-b', channel: 'c', kind: 'k', payload: Buffer.from('alive') });
      await got;
      await Promise.all([a.close(), b.close()]);
      await closeAgents();
    });
  }
});
