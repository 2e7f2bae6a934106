/**
 * Worker hardening against its own tasks, end to end (real relay, real `nfltr worker`, `nfltr shell-mcp`
 * as the executor): the relay key out of a task's reach, a task's processes gone with the task.
 */
import { chmodSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { taskStateName } from '../../src/protocol/a2a.js';
import { createKey, type RelayProcess, startRelayProcess, tempDir } from '../helpers/processes.js';
import { startWorker, TestPlanner, type WorkerProcess } from './helpers.js';

let relay: RelayProcess;
let key: string;
let planner: TestPlanner;
const workers: WorkerProcess[] = [];

beforeAll(async () => {
  relay = await startRelayProcess();
  key = await createKey(relay.dataDir, 'acme');
  planner = await new TestPlanner(relay, key).start();
});

afterAll(async () => {
  await planner?.close();
  await Promise.all(workers.map((w) => w.stop()));
  await relay?.stop();
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
      'for f in /proc/[0-9]*/cmdline /proc/[0-9]*/environ; do ' +
      'grep -qaF -f "$NFLTR_TASK_OUTPUT_DIR/.k" "$f" 2>/dev/null && echo "FOUND $f"; done; ' +
      'rm -f "$NFLTR_TASK_OUTPUT_DIR/.k"; env | grep ^NFLTR_ | cut -d= -f1 | sort | tr "\\n" " "; echo; id -u',
  ];
};

describe('worker hardening', () => {
  it('secrets - a task sees no NFLTR_ secret, and the key is in no command line, however it was passed', async () => {
    const viaArgv = await shellWorker('w-key-argv');
    const viaFile = await shellWorker('w-key-file', { name: 'w-key-file', apiKeyVia: 'file' });
    expect(viaArgv.stderr()).toContain('--api-key on the command line was visible');
    for (const w of [viaArgv, viaFile]) {
      const r = await run(w.name, scan());
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
