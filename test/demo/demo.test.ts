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
  });
});
