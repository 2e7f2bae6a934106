/**
 * What an executor command owns and waits for on shutdown: its process groups (counted from spawn until
 * the group is gone, its kill grace included) and its tasks with their pending cleanups. Each command
 * owns its registries; nothing is shared through module state.
 */
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { AgentTasks } from '../../src/executors/common/index.js';
import { runCommand } from '../../src/executors/shell-mcp/index.js';
import { ProcessGroups, processGroupAlive } from '../../src/util/process-group.js';

const until = async (done: () => boolean, ms = 5_000) => {
  const deadline = Date.now() + ms;
  while (!done()) {
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 20));
  }
};

describe('process groups', () => {
  it('a registry counts its own groups while alive, and none of another registry', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'nfltr-groups-'));
    const mine = new ProcessGroups();
    const other = new ProcessGroups();
    const stop = new AbortController();
    const lines: string[] = [];
    // A background job keeps the group alive after the shell has been killed; the ladder reaches it too.
    const run = runCommand({
      command: 'sleep 30 & echo started; wait',
      cwd: dir,
      env: process.env,
      groups: mine,
      timeoutMs: 60_000,
      signal: stop.signal,
      logPath: join(dir, 'log'),
      onLine: (l) => lines.push(l),
    });
    await until(() => lines.includes('started'));
    expect(mine.live).toBe(1);
    expect(other.live).toBe(0);

    stop.abort();
    const outcome = await run;
    expect(outcome.aborted).toBe(true);
    await until(() => mine.live === 0);
    expect(other.live).toBe(0);
  });

  it('a group whose leader exits leaves the registry with its leftover members killed', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'nfltr-groups-'));
    const groups = new ProcessGroups();
    const g = groups.spawn('/bin/sh', ['-c', 'sleep 30 & echo $!'], {
      cwd: dir,
      env: process.env,
      stdin: 'ignore',
    });
    const pid = g.child.pid!;
    expect(groups.live).toBe(1);
    await g.exited;
    expect(groups.live).toBe(0);
    await until(() => !processGroupAlive(pid));
  });
});

describe('agent tasks', () => {
  it('counts a task until it settles, and runs a pending cleanup once, whoever comes first', async () => {
    const tasks = new AgentTasks();
    const other = new AgentTasks();
    let release!: () => void;
    let removed = 0;
    let cleanup!: () => Promise<void>;
    const run = tasks.run(async () => {
      cleanup = tasks.trackCleanup(async () => {
        removed += 1;
      });
      await new Promise<void>((r) => {
        release = r;
      });
      await cleanup();
      return 'done';
    });
    expect(tasks.active).toBe(1);
    expect(other.active).toBe(0);

    await other.runPendingCleanups();
    expect(removed).toBe(0);
    await tasks.runPendingCleanups(); // the command stops before the task removes its things
    expect(removed).toBe(1);

    release();
    await expect(run).resolves.toBe('done');
    expect(removed).toBe(1);
    expect(tasks.active).toBe(0);
  });
});
