/**
 * `nfltr worker|relay --print-systemd-unit`: the real command prints a unit carrying its own flags but
 * never the key, and `systemd-analyze verify` (Debian's systemd, installed by .ci/run) accepts it.
 */
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { nfltr, tempDir } from '../helpers/processes.js';

const env = { XDG_CONFIG_HOME: tempDir(), NFLTR_SERVER: '', NFLTR_API_KEY: '' };

function hasAnalyze(): boolean {
  try {
    execFileSync('systemd-analyze', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    if (process.env.CI === 'true') throw new Error('systemd-analyze is missing: apt-get install systemd');
    return false;
  }
}

/** Runs `systemd-analyze verify` on the unit; returns its complaints ('' when it accepts the unit). */
function verify(unit: string, name: string): string {
  const file = join(tempDir(), name);
  writeFileSync(file, unit);
  try {
    execFileSync('systemd-analyze', ['verify', file], { encoding: 'utf8', stdio: 'pipe' });
    return '';
  } catch (err) {
    return (err as { stderr: string }).stderr || String(err);
  }
}

const sections = (unit: string) => ['[Unit]', '[Service]', '[Install]'].every((s) => unit.includes(s));

describe('--print-systemd-unit', () => {
  it('worker with --relay: the unit keeps it, and the relay (unreachable here) is not asked', async () => {
    const r = await nfltr(
      [
        'worker',
        '--relay',
        'https://relay.invalid',
        '--mcp-command',
        'nfltr shell-mcp',
        '--print-systemd-unit',
      ],
      { env },
    );
    expect(r.stderr).toBe('');
    expect(r.stdout).toMatch(/^ExecStart=.* worker --relay https:\/\/relay\.invalid --mcp-command/m);
  });

  it('worker: its flags, the key from a credential, never the key itself', async () => {
    const key = 'nfltr_secret_do_not_print';
    const keyFile = join(tempDir(), 'api-key');
    writeFileSync(keyFile, `${key}\n`);
    const r = await nfltr(
      [
        'worker',
        '--server',
        'relay.example:443',
        '--api-key',
        key,
        '--api-key-file',
        keyFile,
        '--labels',
        'repo=payments',
        '--mcp-command',
        "nfltr shell-mcp --allow 'npm test' 100%",
        '--print-systemd-unit',
      ],
      { env },
    );
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const unit = r.stdout;
    expect(sections(unit)).toBe(true);
    expect(unit).not.toContain(key);
    const exec = /^ExecStart=(.*)$/m.exec(unit)?.[1] ?? '';
    expect(exec).toContain(' worker --server relay.example:443 --labels repo=payments');
    expect(exec).toContain(`--mcp-command "nfltr shell-mcp --allow 'npm test' 100%%"`);
    expect(exec).toContain('--state-dir /var/lib/nfltr/worker');
    expect(exec).toMatch(/--api-key-file %d\/nfltr-api-key$/);
    expect(exec).not.toContain('--print-systemd-unit');
    expect(unit).toContain(`LoadCredential=nfltr-api-key:${keyFile}\n`);
    expect(unit).toMatch(/^Restart=on-failure$/m);
    expect(unit).toMatch(/^User=nfltr$/m);
    expect(unit).toMatch(/^StateDirectory=nfltr$/m);
    if (hasAnalyze()) expect(verify(unit, 'nfltr-worker.service')).toBe('');
  });

  it('relay: its flags and its own --data-dir kept; no credential', async () => {
    const r = await nfltr(
      ['relay', '--http-addr', '0.0.0.0:8080', '--data-dir', '/srv/nfltr', '--print-systemd-unit'],
      { env },
    );
    expect(r.code).toBe(0);
    expect(sections(r.stdout)).toBe(true);
    const exec = /^ExecStart=(.*)$/m.exec(r.stdout)?.[1] ?? '';
    expect(exec).toMatch(/ relay --http-addr 0\.0\.0\.0:8080 --data-dir \/srv\/nfltr$/);
    expect(r.stdout).not.toContain('LoadCredential');
    if (hasAnalyze()) expect(verify(r.stdout, 'nfltr-relay.service')).toBe('');
  });
});
