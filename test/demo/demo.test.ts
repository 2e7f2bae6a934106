import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { nfltr, tempDir } from '../helpers/processes.js';

describe('nfltr demo', () => {
  it('demo - runs the whole cycle locally, writes the report, exits 0 and leaves no process behind', async () => {
    const dir = tempDir('nfltr-demo-test-');
    const r = await nfltr(['demo', '--dir', dir]);
    expect(r.code, r.stderr).toBe(0);
    const reportPath = join(dir, 'report.md');
    expect(r.stdout.trim()).toBe(reportPath);
    expect(r.stderr).toContain(`report: ${reportPath}`);
    for (const step of [
      'list_worker_peers',
      'available',
      'dispatched',
      'waiting_input',
      'answered',
      'completed',
      'cancelled',
    ]) {
      expect(r.stderr).toContain(step);
    }
    expect(existsSync(reportPath)).toBe(true);
    const report = readFileSync(reportPath, 'utf8');
    expect(report).toMatch(/## Task `sysinfo` on demo-eu-build: completed/);
    expect(report).toMatch(/## Task `workspace` on demo-us-test: completed/);
    expect(report).toMatch(/## Task `long-job` on demo-eu-build: cancelled/);
    expect(report).toContain('Machine facts (from sysinfo.json)');
    expect(report).toMatch(/## Summary\n\n- \*\*demo-eu-build\*\* \(task sysinfo\): completed/);
    expect(existsSync(join(dir, 'planner', 'artifacts', 'sysinfo', 'sysinfo.json'))).toBe(true);
    const ps = execFileSync('ps', ['-eo', 'args'], { encoding: 'utf8' });
    expect(ps.split('\n').filter((l) => l.includes(dir))).toEqual([]);

    // Again in the same folder: the last run's tasks do not stand in the way; --json for a program.
    const again = await nfltr(['demo', '--dir', dir, '--json']);
    expect(again.code, again.stderr).toBe(0);
    const summary = JSON.parse(again.stdout);
    expect(summary).toMatchObject({ dir, report: reportPath, duration_ms: expect.any(Number) });
    const byId = (a: { task_id: string }, b: { task_id: string }) => a.task_id.localeCompare(b.task_id);
    expect(summary.tasks.sort(byId)).toEqual([
      { task_id: 'long-job', agent_id: 'demo-eu-build', state: 'cancelled' },
      { task_id: 'sysinfo', agent_id: 'demo-eu-build', state: 'completed' },
      { task_id: 'workspace', agent_id: 'demo-us-test', state: 'completed' },
    ]);
  });
});
