/**
 * Task files on the direct path, with real processes on loopback: relay, `nfltr worker` running
 * test/fixtures/artifact-executor.mjs and `nfltr mcp`, both with `--p2p-threshold 1MiB`. An input file
 * above the threshold goes planner → worker direct, the executor copies it back, and the copy comes
 * worker → planner direct; the task's events name the path of each, and the file verifies. A planner
 * with direct links off answers the worker's offer with no address: the files take the relay and the
 * task still completes, byte-identical.
 */
import { createHash, randomFillSync } from 'node:crypto';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, tempDir, withRelay } from '../helpers/processes.js';
import { type Planner, startPlanner, startWorker, type WorkerProcess } from '../planner/helpers.js';

const EXECUTOR = resolve(import.meta.dirname, '../fixtures/artifact-executor.mjs');
const MIB = 1024 * 1024;

interface Status {
  state: string;
  artifacts?: { name: string; sha256: string; path: string }[];
  events: { state: string; message?: string }[];
}

describe('task files on the direct path', () => {
  const fixture = withRelay({ accounts: ['p2porch'] });
  const dirs: string[] = [];
  const tmp = () => {
    const d = tempDir();
    dirs.push(d);
    return d;
  };
  let worker: WorkerProcess;
  const planners: Planner[] = [];
  let big = '';
  let bigSha = '';

  const planner = async (name: string, threshold: string) => {
    const state = tmp();
    const p = await startPlanner(
      [
        '--proxy-url',
        fixture.relay.httpUrl,
        '--server',
        fixture.relay.grpcAddr,
        '--name',
        name,
        '--state-dir',
        state,
        '--p2p-threshold',
        threshold,
      ],
      fixture.key,
    );
    planners.push(p);
    await eventually(async () => (await p.toolNames()).includes('orchestrate_task'), 10_000, 'tools');
    return { p, state };
  };

  /** Sends `big` to the worker, which copies it back; the task's end. */
  const roundTrip = async (p: Planner, taskId: string): Promise<Status> => {
    await p.ok('orchestrate_task', {
      agent_id: 'w-p2p',
      task_id: taskId,
      objective: 'copy the input back',
      artifact_files: [big],
      constraints: { copy_inputs: true },
    });
    return (await eventually<Status | undefined>(
      async () => {
        const s = await p.ok<Status>('get_task_status', { task_id: taskId });
        return ['completed', 'failed', 'cancelled'].includes(s.state) ? s : undefined;
      },
      60_000,
      `task ${taskId} to end`,
    )) as Status;
  };

  const messages = (s: Status) => s.events.map((e) => e.message ?? '');

  beforeAll(async () => {
    const src = tmp();
    big = join(src, 'big.bin');
    writeFileSync(big, randomFillSync(Buffer.alloc(3 * MIB)));
    bigSha = createHash('sha256').update(readFileSync(big)).digest('hex');
    worker = await startWorker({
      server: fixture.relay.grpcAddr,
      apiKey: fixture.key,
      name: 'w-p2p',
      stateDir: tmp(),
      mcpCommand: `'${process.execPath}' '${EXECUTOR}'`,
      args: ['--p2p-threshold', '1MiB'],
    });
  }, 60_000);

  afterAll(async () => {
    for (const p of planners) await p.close();
    await worker?.stop();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  it('p2p orchestration - files above the threshold go direct both ways, the events say so, the copy verifies', async () => {
    const { p, state } = await planner('p-direct', '1MiB');
    const { workers } = await p.ok<{ workers: { agent_id: string; labels: Record<string, string> }[] }>(
      'list_worker_peers',
      { selector: 'coord.transfer=p2p' },
    );
    expect(workers.map((w) => w.agent_id)).toContain('w-p2p');
    const done = await roundTrip(p, 'direct-trip');
    expect(done.state, JSON.stringify(done)).toBe('completed');
    const m = messages(done);
    expect(
      m.some((x) => /^input files: direct path \(peer to peer, /.test(x)),
      m.join('\n'),
    ).toBe(true);
    expect(
      m.some((x) => /^output files big\.bin: direct path \(peer to peer, /.test(x)),
      m.join('\n'),
    ).toBe(true);
    expect(m.some((x) => x.includes('relay path'))).toBe(false);
    const a = done.artifacts?.find((x) => x.name === 'big.bin');
    expect(a?.path).toBe(join(state, 'artifacts', 'direct-trip', 'big.bin'));
    expect(a?.sha256).toBe(bigSha);
    expect(createHash('sha256').update(readFileSync(a!.path)).digest('hex')).toBe(bigSha);
  }, 90_000);

  it('p2p orchestration - with no direct path the files take the relay, the event says why, the copy verifies', async () => {
    const { p, state } = await planner('p-relay', 'off');
    const done = await roundTrip(p, 'relay-trip');
    expect(done.state, JSON.stringify(done)).toBe('completed');
    const m = messages(done);
    expect(m).toContain('output files big.bin: relay path (p-relay offered no direct address)');
    expect(m.some((x) => x.includes('direct path'))).toBe(false);
    const a = done.artifacts?.find((x) => x.name === 'big.bin');
    expect(a?.path).toBe(join(state, 'artifacts', 'relay-trip', 'big.bin'));
    expect(createHash('sha256').update(readFileSync(a!.path)).digest('hex')).toBe(bigSha);
  }, 90_000);
});
