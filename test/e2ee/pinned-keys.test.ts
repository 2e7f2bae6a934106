import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createKey, eventually, nfltr, startRelayProcess, tempDir } from '../helpers/processes.js';
import { type Planner, scriptedExecutor, startPlanner, startWorker } from '../planner/helpers.js';

/** The fingerprint an agent logs at start (`static key fingerprint=…`). */
const loggedFingerprint = (stderr: string): string => {
  const m = /static key fingerprint="?([^"\s]+)/.exec(stderr);
  if (!m?.[1]) throw new Error(`no fingerprint logged:\n${stderr}`);
  return m[1];
};

// Real relay, workers and planners: a worker's key changes, the planner refuses it naming the worker,
// both fingerprints and the fix; the fix works; the same on the worker's side for a planner's key.
describe('e2ee - pinned keys', () => {
  const cleanup: (() => Promise<unknown>)[] = [];
  afterAll(async () => {
    for (const c of cleanup.reverse()) await c();
  });

  it('pinning - a worker restarted with a new key is refused until accepted; a planner with a new key likewise', async () => {
    const dir = tempDir();
    const key = await createKey(dir, 'acct');
    const relay = await startRelayProcess({ dataDir: dir });
    cleanup.push(() => relay.stop());
    const worker = (stateDir: string) =>
      startWorker({
        server: relay.grpcAddr,
        apiKey: key,
        name: 'w-pin',
        stateDir,
        mcpCommand: scriptedExecutor(),
      });
    const planner = async (stateDir: string): Promise<Planner> => {
      const p = await startPlanner(
        [
          '--proxy-url',
          relay.httpUrl,
          '--server',
          relay.grpcAddr,
          '--name',
          'p-pin',
          '--state-dir',
          stateDir,
        ],
        key,
      );
      await eventually(() => /static key fingerprint=/.test(p.stderr()), 15_000, 'planner started');
      return p;
    };

    const w1 = await worker(tempDir());
    cleanup.push(() => w1.stop());
    const plannerDir = tempDir();
    const p1 = await planner(plannerDir);
    cleanup.push(() => p1.close());
    await eventually(() => p1.ok('probe_worker', { agent_id: 'w-pin' }), 15_000, 'first probe');
    const fp1 = loggedFingerprint(w1.stderr());
    const knownWorkers = join(plannerDir, 'known_workers');
    expect(readFileSync(knownWorkers, 'utf8')).toMatch(/^w-pin \S+\n$/);

    // The worker comes back on a new state dir: a new static key under the same id.
    await w1.stop();
    const workerDir = tempDir();
    const w2 = await worker(workerDir);
    cleanup.push(() => w2.stop());
    const fp2 = loggedFingerprint(w2.stderr());
    expect(fp2).not.toBe(fp1);
    const refused = await eventually(async () => {
      const r = await p1.call('probe_worker', { agent_id: 'w-pin' });
      const text = r.content.map((c) => (c.type === 'text' ? c.text : '')).join('');
      return r.isError && text.includes('presented a different key') ? text : undefined;
    }, 20_000);
    expect(refused).toContain('worker w-pin presented a different key');
    expect(refused).toContain(`pinned ${fp1}, presented ${fp2}`);
    expect(refused).toContain(`nfltr mcp --state-dir ${plannerDir} --accept-worker-key w-pin`);
    expect(refused).toContain(`delete the line for w-pin in ${knownWorkers}`);
    // Dispatching is refused the same way, before any task content is sent.
    const dispatch = await p1.fails('orchestrate_task', { agent_id: 'w-pin', objective: 'never sent' });
    expect(dispatch).toContain('worker w-pin presented a different key');

    // The documented fix, while the planner runs; the next handshake pins the new key.
    const accepted = await nfltr(['mcp', '--state-dir', plannerDir, '--accept-worker-key', 'w-pin']);
    expect(accepted.code).toBe(0);
    expect(accepted.stderr).toContain('forgot the pinned key of worker w-pin');
    await eventually(() => p1.ok('probe_worker', { agent_id: 'w-pin' }), 15_000, 'probe after accept');

    // A planner with the same id and a new key (its state dir replaced): the worker refuses it.
    await p1.close();
    await eventually(async () => {
      const r = await fetch(`${relay.httpUrl}/api/v1/peers`, { headers: { authorization: `Bearer ${key}` } });
      return !(await r.text()).includes('"p-pin"');
    }, 15_000);
    const p2 = await planner(tempDir());
    cleanup.push(() => p2.close());
    const byWorker = await eventually(async () => {
      const r = await p2.call('probe_worker', { agent_id: 'w-pin' });
      const text = r.content.map((c) => (c.type === 'text' ? c.text : '')).join('');
      return r.isError && text.includes('presented a different key') ? text : undefined;
    }, 20_000);
    expect(byWorker).toContain('w-pin refused: planner p-pin presented a different key');
    expect(byWorker).toContain(`presented ${loggedFingerprint(p2.stderr())}`);
    expect(byWorker).toContain(`nfltr worker --state-dir ${workerDir} --accept-planner-key p-pin`);
    const acceptedByWorker = await nfltr([
      'worker',
      '--state-dir',
      workerDir,
      '--accept-planner-key',
      'p-pin',
    ]);
    expect(acceptedByWorker.code).toBe(0);
    await eventually(
      () => p2.ok('probe_worker', { agent_id: 'w-pin' }),
      15_000,
      'probe after the worker accepts',
    );
  });
});
