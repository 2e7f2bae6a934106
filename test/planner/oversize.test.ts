/**
 * `nfltr mcp` and an MCP message over the SDK's 10 MiB stdio buffer: the planner answers that request
 * with an error, stays responsive, and exits cleanly (lock released) when its client leaves.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { tempDir } from '../helpers/processes.js';
import { startPlanner } from './helpers.js';

describe('nfltr mcp - oversized messages', () => {
  const cleanup: (() => Promise<unknown>)[] = [];
  afterAll(async () => {
    for (const c of cleanup.reverse()) await c();
  });

  it('answers an 11 MiB call with an error naming the limit, then serves the next calls', async () => {
    const stateDir = tempDir();
    const planner = await startPlanner(['--state-dir', stateDir], 'nfk_unused');
    cleanup.push(() => planner.close());
    const huge = 'x'.repeat(11 * 1024 * 1024);
    await expect(
      planner.client.callTool({ name: 'get_task_status', arguments: { task_id: huge } }),
    ).rejects.toThrow(/exceeds nfltr mcp's limit of 8388608 bytes/);
    // Still responsive, on the same connection.
    expect(await planner.toolNames()).toContain('orchestrate_task');
    // (Without --server a task tool answers why it cannot run: an answer all the same.)
    expect(await planner.fails('list_active_tasks')).toMatch(/--server/);
    // And a replacement can take the state folder once this one's client leaves.
    await planner.close();
    const next = await startPlanner(['--state-dir', stateDir], 'nfk_unused');
    cleanup.push(() => next.close());
    expect(await next.toolNames()).toContain('orchestrate_task');
  }, 60_000);
});
