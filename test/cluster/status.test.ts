/**
 * `nfltr status`: a real relay and worker, and a planner state folder whose tasks.db holds one task being
 * dispatched, one running and one completed (written through the planner's own TaskStore).
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { TaskStore } from '../../src/planner/task-store.js';
import { createKey, nfltr, spawnNfltr, startRelayProcess, tempDir } from '../helpers/processes.js';

const env = { XDG_CONFIG_HOME: tempDir(), NFLTR_SERVER: '', NFLTR_API_KEY: '', NFLTR_PROXY_URL: '' };

/** A planner state folder with tasks t-dispatch (no event yet), t-run (running) and t-done (completed). */
function plannerState(): string {
  const dir = tempDir();
  const store = new TaskStore(join(dir, 'tasks.db'));
  const task = (id: string) => ({
    task_id: id,
    agent_id: 'st-w1',
    objective: `objective of ${id}`,
    created_at: Date.now(),
    request: {},
  });
  store.begin(task('t-dispatch'));
  store.create(task('t-run'), { seq: 1, state: 'running', time: Date.now(), origin: 'worker' });
  store.create(task('t-done'), { seq: 1, state: 'completed', time: Date.now(), origin: 'worker' });
  store.close();
  return dir;
}

describe('nfltr status', () => {
  it('relay health, the agents and the local planner active tasks; exit 1 when the relay is down', async () => {
    const relay = await startRelayProcess();
    const apiKey = await createKey(relay.dataDir, 'acct');
    const worker = await spawnNfltr(
      'worker',
      ['--server', relay.grpcAddr, '--name', 'st-w1'],
      /nfltr worker ready/,
      { env: { ...process.env, ...env, NFLTR_API_KEY: apiKey, NFLTR_MCP_COMMAND: 'nfltr shell-mcp' } },
    );
    const stateDir = plannerState();
    const senv = { ...env, NFLTR_API_KEY: apiKey, NFLTR_PROXY_URL: relay.httpUrl };
    try {
      const json = await nfltr(['status', '--json', '--state-dir', stateDir], { env: senv });
      expect(json.stderr).toBe('');
      expect(json.code).toBe(0);
      const s = JSON.parse(json.stdout);
      expect(s.relay).toMatchObject({ url: relay.httpUrl, status: 'ok', agents: 1, store: 'sqlite' });
      expect(s.peers).toEqual([expect.objectContaining({ agent_id: 'st-w1', kind: 'worker' })]);
      expect(s.planner.state_dir).toBe(stateDir);
      expect(
        s.planner.tasks.map((t: { task_id: string; state: string | null }) => [t.task_id, t.state]),
      ).toEqual([
        ['t-dispatch', null],
        ['t-run', 'running'],
      ]);

      const text = await nfltr(['status', '--state-dir', stateDir], { env: senv });
      expect(text.code).toBe(0);
      expect(text.stdout).toContain(`relay ${relay.httpUrl}: ok`);
      expect(text.stdout).toMatch(/agents \(1\):\nAGENT\s+KIND.*\nst-w1\s+worker/);
      expect(text.stdout).toContain(`planner ${stateDir}: 2 active task(s)`);
      expect(text.stdout).toMatch(/t-dispatch\s+dispatching\s+st-w1/);
      expect(text.stdout).toMatch(/t-run\s+running\s+st-w1/);
      expect(text.stdout).not.toContain('t-done');

      const bad = await nfltr(['status', '--state-dir', tempDir()], { env: senv });
      expect(bad.code).toBe(2);
      expect(bad.stderr).toMatch(/--state-dir .*: no tasks\.db there/);
    } finally {
      await worker.stop();
      await relay.stop();
    }
    // The relay gone: still the planner's tasks, and exit 1 naming the address.
    const down = await nfltr(['status', '--state-dir', stateDir], { env: senv });
    expect(down.code).toBe(1);
    expect(down.stdout).toMatch(
      /relay .*: unreachable \(relay HTTP API unreachable at .*healthz: ECONNREFUSED\)/,
    );
    expect(down.stdout).toContain('2 active task(s)');
  });
});
