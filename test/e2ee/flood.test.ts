/**
 * No sequenced frame is lost between agents under a flood: a real relay, worker (`nfltr shell-mcp`) and
 * planner (`nfltr mcp`), a command printing 100,000 lines, each of which becomes a progress notification.
 * The task must complete with every line in its log, however the progress was paced or coalesced.
 */
import { readFileSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { waitState } from '../durability/helpers.js';
import { createKey, eventually, startRelayProcess, tempDir } from '../helpers/processes.js';
import { startPlanner, startWorker } from '../planner/helpers.js';

const LINES = 100_000;

describe('e2ee - flood', () => {
  const cleanup: (() => Promise<unknown>)[] = [];
  afterAll(async () => {
    for (const c of cleanup.reverse()) await c();
  });

  it(`a task printing ${LINES} lines completes with every line in its log`, async () => {
    const dir = tempDir();
    const key = await createKey(dir, 'acct');
    const relay = await startRelayProcess({ dataDir: dir });
    cleanup.push(() => relay.stop());
    const worker = await startWorker({
      server: relay.grpcAddr,
      apiKey: key,
      name: 'w-flood',
      stateDir: tempDir(),
      mcpCommand: `nfltr shell-mcp --cwd "${tempDir()}" --allow 'seq *'`,
    });
    cleanup.push(() => worker.stop());
    const planner = await startPlanner(
      [
        '--proxy-url',
        relay.httpUrl,
        '--server',
        relay.grpcAddr,
        '--name',
        'p-flood',
        '--state-dir',
        tempDir(),
      ],
      key,
    );
    cleanup.push(() => planner.close());
    await eventually(async () => (await planner.toolNames()).includes('orchestrate_task'), 15_000);
    await planner.ok('orchestrate_task', {
      agent_id: 'w-flood',
      task_id: 'flood-1',
      objective: 'print many lines',
      constraints: { commands: [`seq 1 ${LINES}`] },
      timeout_ms: 50_000,
    });
    const done = await waitState(planner, 'flood-1', ['completed', 'failed', 'cancelled', 'timeout'], 55_000);
    expect(done!.state, JSON.stringify(done)).toBe('completed');
    const log = done!.artifacts!.find((a) => a.path.endsWith('command-1.log'))!;
    const lines = readFileSync(log.path, 'utf8').trimEnd().split('\n');
    expect(lines.length).toBe(LINES);
    expect(lines[LINES - 1]).toBe(String(LINES));
  }, 60_000);
});
