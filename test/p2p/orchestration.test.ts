/**
 * Task files on the direct path, with real processes on loopback: relay, `nfltr worker` running
 * test/fixtures/artifact-executor.mjs and `nfltr mcp`, both with `--p2p-threshold 1MiB`. An input file
 * above the threshold goes planner → worker direct, the executor copies it back, and the copy comes
 * worker → planner direct; the task's events name the path of each, and the file verifies. A planner
 * with direct links off answers the worker's offer with no address: the files take the relay and the
 * task still completes, byte-identical. Between network namespaces (bench/netns.mjs: planner in `a`,
 * worker in `b`, the relay in `r`): direct, then with the direct link dropped (nftables) the relay path
 * with its reason, both verified.
 */
import { createHash, randomFillSync } from 'node:crypto';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Lab, makeLab, netnsProblem, watch } from '../../bench/netns.mjs';
import { waitFinal } from '../durability/helpers.js';
import { fixturePath } from '../helpers/fixtures.js';
import { createKey, eventually, tempDir, withRelay } from '../helpers/processes.js';
import { type Planner, startPlanner, startWorker, type WorkerProcess } from '../planner/helpers.js';

const EXECUTOR = fixturePath('artifact-executor.mjs');
const MIB = 1024 * 1024;

interface Status {
  state: string;
  last_seq: number;
  artifacts?: { name: string; sha256: string; path: string }[];
  events: { seq: number; state: string; message?: string }[];
}

/** Sends `big` to the worker, which copies it back; the task's end. */
async function roundTrip(p: Planner, taskId: string, big: string): Promise<Status> {
  await p.ok('orchestrate_task', {
    agent_id: 'w-p2p',
    task_id: taskId,
    objective: 'copy the input back',
    artifact_files: [big],
    constraints: { copy_inputs: true },
  });
  return waitFinal<Status>(p, taskId, 60_000);
}

const messages = (s: Status) => s.events.map((e) => e.message ?? '');
const sha256 = (path: string) => createHash('sha256').update(readFileSync(path)).digest('hex');

/** A random file of `mib` MiB in `dir`, and its SHA-256. */
function bigFile(dir: string, mib: number): { path: string; sha: string } {
  const path = join(dir, 'big.bin');
  writeFileSync(path, randomFillSync(Buffer.alloc(mib * MIB)));
  return { path, sha: sha256(path) };
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

  beforeAll(async () => {
    ({ path: big, sha: bigSha } = bigFile(tmp(), 3));
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
    const done = await roundTrip(p, 'direct-trip', big);
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
    expect(sha256(a!.path)).toBe(bigSha);
  }, 90_000);

  it('p2p orchestration - with no direct path the files take the relay, the event says why, the copy verifies', async () => {
    const { p, state } = await planner('p-relay', 'off');
    const done = await roundTrip(p, 'relay-trip', big);
    expect(done.state, JSON.stringify(done)).toBe('completed');
    const m = messages(done);
    expect(m).toContain('output files big.bin: relay path (p-relay offered no direct address)');
    expect(m.some((x) => x.includes('direct path'))).toBe(false);
    const a = done.artifacts?.find((x) => x.name === 'big.bin');
    expect(a?.path).toBe(join(state, 'artifacts', 'relay-trip', 'big.bin'));
    expect(sha256(a!.path)).toBe(bigSha);
  }, 90_000);
});

const problem = netnsProblem();
if (problem) process.stderr.write(`test/p2p/orchestration.test.ts: namespace cases skipped (${problem})\n`);

describe.skipIf(problem !== undefined)('task files between network namespaces', () => {
  let lab: Lab;
  const dirs: string[] = [];
  const tmp = () => {
    const d = tempDir();
    dirs.push(d);
    return d;
  };
  let relay: Awaited<ReturnType<Lab['startRelay']>>;
  let worker: ReturnType<typeof watch>;
  let planner: Planner;
  let plannerState = '';
  let big = { path: '', sha: '' };

  beforeAll(async () => {
    lab = makeLab();
    const dataDir = tmp();
    relay = await lab.startRelay(dataDir);
    const port = relay.grpcPort;
    const key = await createKey(dataDir, 'lab');
    big = bigFile(tmp(), 8);
    worker = watch(
      lab.nfltr(lab.ns.b, [
        'worker',
        '--server',
        `${lab.relayFrom.b}:${port}`,
        '--api-key',
        key,
        '--name',
        'w-p2p',
        '--state-dir',
        tmp(),
        '--mcp-command',
        `'${process.execPath}' '${EXECUTOR}'`,
        '--p2p-threshold',
        '1MiB',
      ]),
    );
    await eventually(() => worker.stderr().includes('nfltr worker ready'), 20_000, 'worker ready');
    plannerState = tmp();
    planner = await startPlanner(
      [
        '--server',
        `${lab.relayFrom.a}:${port}`,
        '--name',
        'p-lab',
        '--state-dir',
        plannerState,
        '--p2p-threshold',
        '1MiB',
      ],
      key,
      { wrap: ['ip', 'netns', 'exec', lab.ns.a] },
    );
    await eventually(async () => (await planner.toolNames()).includes('orchestrate_task'), 15_000, 'tools');
  }, 90_000);

  afterAll(async () => {
    await planner?.close();
    for (const c of [worker, relay]) {
      c?.child.kill('SIGTERM');
      await c?.exited;
    }
    lab?.destroy();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  const verified = (done: Status, taskId: string) => {
    expect(done.state, JSON.stringify(done)).toBe('completed');
    const a = done.artifacts?.find((x) => x.name === 'big.bin');
    expect(a?.path).toBe(join(plannerState, 'artifacts', taskId, 'big.bin'));
    expect(sha256(a!.path)).toBe(big.sha);
  };

  it('p2p orchestration netns - input and result files go over the direct link between the namespaces', async () => {
    const done = await roundTrip(planner, 'lab-direct', big.path);
    verified(done, 'lab-direct');
    const m = messages(done);
    // The worker's events: the remote end is the planner, in `a` on the direct link.
    expect(
      m.some((x) => x.startsWith('input files: direct path (peer to peer, 10.77.1.1:')),
      m.join('\n'),
    ).toBe(true);
    expect(
      m.some((x) => x.startsWith('output files big.bin: direct path (peer to peer, 10.77.1.1:')),
      m.join('\n'),
    ).toBe(true);
  }, 90_000);

  it('p2p orchestration netns - with the direct link dropped the files take the relay, the events say why', async () => {
    lab.block();
    try {
      const done = await roundTrip(planner, 'lab-blocked', big.path);
      verified(done, 'lab-blocked');
      const m = messages(done);
      expect(
        m.some((x) => x.startsWith('input files: relay path (no direct connection within')),
        m.join('\n'),
      ).toBe(true);
      expect(
        m.some((x) => x.startsWith('output files big.bin: relay path (no direct connection within')),
        m.join('\n'),
      ).toBe(true);
      expect(m.some((x) => x.includes('direct path'))).toBe(false);
    } finally {
      lab.unblock();
    }
  }, 90_000);
});
