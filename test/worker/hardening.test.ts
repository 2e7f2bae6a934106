/**
 * Worker hardening against its own tasks, end to end (real relay, real `nfltr worker`, `nfltr shell-mcp`
 * as the executor): the relay key out of a task's reach, a task's processes gone with the task.
 */
import { chmodSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { create } from '@bufbuild/protobuf';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ArtifactInfoSchema, TaskStartSchema, taskStateName } from '../../src/protocol/a2a.js';
import { cgroupParent } from '../../src/worker/cgroup.js';
import { isAlive } from '../../src/worker/index.js';
import { eventually, type RelayProcess, tempDir, withRelay } from '../helpers/processes.js';
import { startWorker, TestPlanner, type WorkerProcess } from './helpers.js';

const fixture = withRelay({ accounts: ['acme'] });
let relay: RelayProcess;
let key: string;
let planner: TestPlanner;
const workers: WorkerProcess[] = [];
/** Closed last, after the workers: nothing is in flight then. */
const planners: TestPlanner[] = [];

beforeAll(async () => {
  ({ relay, key } = fixture);
  planner = await new TestPlanner(relay, key).start();
});

afterAll(async () => {
  await planner?.close();
  await Promise.all(workers.map((w) => w.stop()));
  await Promise.all(planners.map((p) => p.close()));
});

const shellWorker = async (name: string, opts: Parameters<typeof startWorker>[2] = { name }) => {
  const w = await startWorker(relay, key, {
    mcpCommand: "nfltr shell-mcp --cwd /tmp --allow '**'",
    ...opts,
    name,
  });
  workers.push(w);
  return w;
};

/** Runs shell commands as one task; resolves with the terminal event and the first command's output. */
async function run(worker: string, commands: string[]) {
  const id = await planner.startTask(worker, { objective: 'hardening', constraints: { commands } });
  const end = await planner.waitEnd(id, 30_000);
  const log = planner.artifact(id, 'command-1.log').toString('utf8');
  return { id, end, state: taskStateName(end.state), log };
}

/**
 * Prints FOUND <file> for each /proc/<pid>/cmdline or environ holding the key, and the NFLTR_ variables
 * the task sees. The key is assembled at run time so that no command line of the task itself holds it.
 */
const scan = () => {
  const half = Math.floor(key.length / 2);
  return [
    `printf '%s%s' '${key.slice(0, half)}' '${key.slice(half)}' > "$NFLTR_TASK_OUTPUT_DIR/.k"; ` +
      // One grep over every file (not one per file: hundreds of processes on a busy machine).
      'grep -laF -f "$NFLTR_TASK_OUTPUT_DIR/.k" /proc/[0-9]*/cmdline /proc/[0-9]*/environ 2>/dev/null | sed "s/^/FOUND /"; ' +
      'rm -f "$NFLTR_TASK_OUTPUT_DIR/.k"; env | grep ^NFLTR_ | cut -d= -f1 | sort | tr "\\n" " "; echo; id -u',
  ];
};

/** Pids of live processes whose command line is exactly `argv`. */
function pidsOf(...argv: string[]): number[] {
  const want = `${argv.join('\0')}\0`;
  const out: number[] = [];
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      if (readFileSync(`/proc/${e}/cmdline`, 'utf8') === want && isAlive(Number(e))) out.push(Number(e));
    } catch {}
  }
  return out;
}

/** The executor watchdog of a worker (reaper.ts): the sh whose script lists process groups. */
function watchdogOf(workerPid: number): number | undefined {
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const stat = readFileSync(`/proc/${e}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === workerPid && readFileSync(`/proc/${e}/cmdline`, 'utf8').includes('cgroups='))
        return Number(e);
    } catch {}
  }
  return undefined;
}

/** The setsid checks rely on cgroup v2 (docs/security.md); without it they fail saying so. */
function needCgroups(): void {
  const parent = cgroupParent();
  if (parent instanceof Error)
    throw new Error(`cgroup v2 is not usable here (${parent.message}); these checks need it`);
}

/**
 * A command that starts `sleep <marker>` in a session of its own, escaping the task's process group. It
 * waits until the sleep leads its session (field 6 of /proc/PID/stat): the command's group is killed when
 * its shell exits, which would otherwise race setsid() and kill the sleep before it escaped.
 */
const detached = (marker: string) =>
  `setsid sleep ${marker} >/dev/null 2>&1 </dev/null & ` +
  `until [ "$(cut -d' ' -f6 /proc/$!/stat)" = "$!" ]; do sleep 0.05; done`;

/** Waits for the task's detached `sleep <marker>`; on a timeout, says what the planner heard of the task. */
async function sleepStarted(p: TestPlanner, taskId: string, marker: string): Promise<void> {
  try {
    await eventually(
      () => pidsOf('sleep', marker).length === 1 || undefined,
      30_000,
      `sleep ${marker} started`,
    );
  } catch (err) {
    const heard = (p.events.get(taskId) ?? []).map((e) => `${taskStateName(e.state)} ${e.message}`);
    const refused = p.refusals.get(taskId);
    throw new Error(
      `${(err as Error).message}; task ${taskId}: events [${heard.join('; ')}]` +
        `${refused ? `, refused ${refused.reason}: ${refused.message}` : ''}` +
        `, failures [${p.failures.map((f) => `${f.code}: ${f.message}`).join('; ')}]`,
    );
  }
}

describe('worker hardening', () => {
  it("setsid - a process that left the task's process group dies when the task ends", async () => {
    needCgroups();
    const w = await shellWorker('w-setsid');
    const marker = `${1000 + (process.pid % 1000)}.1`;
    const r = await run(w.name, [detached(marker), 'sleep 0.3']);
    expect(r.state, r.log).toBe('completed');
    await eventually(() => pidsOf('sleep', marker).length === 0 || undefined, 10_000, `sleep ${marker} gone`);
  }, 60_000);

  it('setsid - a SIGKILLed worker takes them along (watchdog), or its next start does', async () => {
    needCgroups();
    const stateDir = tempDir('nfltr-worker-');
    let w = await shellWorker('w-kill9', { name: 'w-kill9', stateDir });
    const one = `${2000 + (process.pid % 1000)}.2`;
    const first = await planner.startTask(w.name, {
      objective: 'x',
      constraints: { commands: [detached(one), 'sleep 60'] },
    });
    await sleepStarted(planner, first, one);
    await w.stop('SIGKILL');
    await eventually(
      () => pidsOf('sleep', one).length === 0 || undefined,
      10_000,
      `sleep ${one} killed by the watchdog`,
    );

    // The watchdog killed too: what the task left is found on the worker's next start.
    w = await shellWorker('w-kill9', { name: 'w-kill9', stateDir });
    const two = `${3000 + (process.pid % 1000)}.3`;
    // A new planner: the old one's session with the killed worker is not what is tested here.
    const second = await new TestPlanner(relay, key).start();
    const next = await second.startTask(w.name, {
      objective: 'x',
      constraints: { commands: [detached(two), 'sleep 60'] },
    });
    await sleepStarted(second, next, two);
    const dog = watchdogOf(w.child.pid!);
    expect(dog).toBeDefined();
    process.kill(dog!, 'SIGKILL');
    await w.stop('SIGKILL');
    // Any worker that starts on this machine sweeps the cgroups of gone workers (tests of other files
    // may start one meanwhile); at the latest, the restart does.
    w = await shellWorker('w-kill9', { name: 'w-kill9', stateDir });
    expect(pidsOf('sleep', two)).toHaveLength(0);
    planners.push(second);
  }, 90_000);

  it('slot lease - a finished task whose files the planner never acknowledges fails and frees its slot', async () => {
    const w = await shellWorker('w-lease', { name: 'w-lease', args: ['--slot-lease', '3s'] });
    const deaf = await new TestPlanner(relay, key).start();
    planners.push(deaf);
    deaf.ackArtifacts = false;
    const id = await deaf.startTask(w.name, {
      objective: 'a result nobody takes',
      constraints: { commands: ['head -c 100000 /dev/zero > "$NFLTR_TASK_OUTPUT_DIR/result.bin"'] },
    });
    // The executor is done, the files are going out unacknowledged: the slot is held meanwhile.
    await eventually(() => deaf.chunks.get(id)?.length || undefined, 15_000, 'output chunks');
    expect((await deaf.probe(w.name)).freeSlots).toBe(0);
    const end = await deaf.waitEnd(id, 20_000);
    expect(taskStateName(end.state)).toBe('failed');
    expect(end.reason).toBe('lease_expired');
    expect(end.message).toMatch(/acknowledged none of the output files for 3s .*--slot-lease/);
    expect((await deaf.probe(w.name)).freeSlots).toBe(1);
    // The worker's log holds the same end for a planner that resumes.
    deaf.events.delete(id);
    await deaf.resume(w.name, id, 0);
    const again = await deaf.waitEnd(id);
    expect([taskStateName(again.state), again.reason]).toEqual(['failed', 'lease_expired']);

    // The other way: input files announced, never sent. The executor never starts; the slot comes back.
    const starved = 't-starved';
    await deaf.endpoint.send(w.name, starved, {
      case: 'taskStart',
      value: create(TaskStartSchema, {
        taskId: starved,
        objective: 'wait for files that never come',
        constraintsJson: JSON.stringify({ commands: ['true'] }),
        inputFiles: [create(ArtifactInfoSchema, { name: 'data.bin', size: 1000n, sha256: '0'.repeat(64) })],
      }),
    });
    const starvedEnd = await deaf.waitEnd(starved, 20_000);
    expect([taskStateName(starvedEnd.state), starvedEnd.reason]).toEqual(['failed', 'lease_expired']);
    expect(starvedEnd.message).toMatch(
      /input files stopped arriving: no byte came from the planner for 3s \(0 of 1000 bytes/,
    );
    expect((await deaf.probe(w.name)).freeSlots).toBe(1);
  }, 60_000);

  it('sizes - a 12 MB result text travels as a file; the event keeps its start; the slot is freed', async () => {
    const w = await startWorker(relay, key, { name: 'w-big' });
    workers.push(w);
    const bytes = 12_000_000;
    const id = await planner.startTask(w.name, {
      objective: 'a huge result',
      constraints: { result_bytes: bytes },
    });
    const end = await planner.waitEnd(id, 60_000);
    expect(taskStateName(end.state), end.message).toBe('completed');
    expect(Buffer.byteLength(end.resultText)).toBeLessThan(100_000);
    expect(end.resultText).toMatch(
      /^done: a huge resulta+… \[\d+ more bytes cut\]\n\n\[nfltr: the result text is 12000000 bytes; the whole text is the artifact nfltr-result-text\.txt\]$/,
    );
    const text = planner.artifact(id, 'nfltr-result-text.txt').toString('utf8');
    expect(text.length).toBe(bytes);
    expect(end.artifacts.map((a) => a.name)).toContain('nfltr-result-text.txt');

    // Over the 64 MiB an executor message may have: the executor is stopped, the task fails saying why.
    const over = await planner.startTask(w.name, {
      objective: 'too big',
      constraints: { result_bytes: 70_000_000 },
    });
    const failed = await planner.waitEnd(over, 60_000);
    expect([taskStateName(failed.state), failed.reason]).toEqual(['failed', 'executor_failed']);
    expect(failed.message).toMatch(/an MCP message of more than 67108864 bytes.*output_dir/);
    expect((await planner.probe(w.name)).freeSlots).toBe(1);

    // A question too large for one event is declined at once, saying so; the task goes on.
    const asks = await planner.startTask(w.name, {
      objective: 'ask hugely',
      constraints: { ask: true, schema_bytes: 2_000_000 },
    });
    const asked = await planner.waitEnd(asks, 30_000);
    expect(taskStateName(asked.state)).toBe('completed');
    expect(JSON.parse(asked.structuredJson).answer).toBe('(decline)');
    expect(
      planner.events
        .get(asks)!
        .map((e) => e.message)
        .join('\n'),
    ).toMatch(/a question whose schema is \d+ bytes, over the 1048576 a question can carry; it was declined/);
  }, 120_000);

  it('secrets - a task sees no NFLTR_ secret, and the key is in no command line, however it was passed', async () => {
    const [viaArgv, viaFile] = await Promise.all([
      shellWorker('w-key-argv'),
      shellWorker('w-key-file', { name: 'w-key-file', apiKeyVia: 'file' }),
    ]);
    expect(viaArgv.stderr()).toContain('--api-key on the command line was visible');
    for (const r of await Promise.all([viaArgv, viaFile].map((w) => run(w.name, scan())))) {
      expect(r.state, r.log).toBe('completed');
      expect(r.log).not.toContain('FOUND');
      expect(r.log).toContain('NFLTR_TASK_ID NFLTR_TASK_INPUT_DIR NFLTR_TASK_OUTPUT_DIR \n');
    }
    // Documented limit: a key in the worker's environment stays in /proc/<worker>/environ, readable by
    // tasks of the same OS user; nowhere else.
    const viaEnv = await shellWorker('w-key-env', { name: 'w-key-env', apiKeyVia: 'env' });
    const r = await run(viaEnv.name, scan());
    expect(r.log.match(/FOUND .*/g)).toEqual([`FOUND /proc/${viaEnv.child.pid}/environ`]);
    expect(r.log).not.toMatch(/NFLTR_API_KEY/);
  }, 90_000);

  it("--executor-user - executors run as that user and cannot read the worker's environment", async () => {
    if (process.getuid?.() !== 0) throw new Error('this check needs root (it runs executors as nobody)');
    const closed = tempDir('nfltr-worker-');
    chmodSync(closed, 0o700);
    await expect(
      startWorker(relay, key, {
        name: 'w-user-closed',
        stateDir: join(closed, 's'),
        args: ['--executor-user', 'nobody'],
      }),
    ).rejects.toThrow(/--executor-user nobody: .* cannot be entered by that user.*--state-dir/);
    const open = tempDir('nfltr-worker-');
    chmodSync(open, 0o755);
    // Its key in its environment, which only the worker's own user (root) may read.
    const w = await shellWorker('w-user', {
      name: 'w-user',
      apiKeyVia: 'env',
      stateDir: join(open, 's'),
      args: ['--executor-user', 'nobody'],
    });
    const r = await run(w.name, scan());
    expect(r.state, r.log).toBe('completed');
    expect(r.log).not.toContain('FOUND');
    expect(r.log.trim().split('\n').at(-1)).toBe('65534');
  }, 60_000);
});
