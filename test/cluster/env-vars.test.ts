/**
 * An environment variable for every flag of every command: the whole command tree (every module in
 * src/cli that registers commands, every subcommand), walked here on its own; then real processes for
 * a variable that sets a flag, booleans, and a bad value.
 */
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Command } from 'commander';
import { beforeAll, describe, expect, it } from 'vitest';
import { NfltrCommand } from '../../src/cli/env.js';
import { nfltr } from '../helpers/processes.js';

const CLI = join(import.meta.dirname, '../../src/cli');

interface Row {
  command: string;
  flag: string;
  env?: string;
  help: string;
}

const rows: Row[] = [];

beforeAll(async () => {
  const program = new NfltrCommand('nfltr');
  for (const file of readdirSync(CLI).filter((f) => f.endsWith('.ts') && f !== 'main.ts')) {
    const mod = (await import(join(CLI, file))) as { register?: (p: Command) => void };
    mod.register?.(program);
  }
  const walk = (cmd: Command, path: string) => {
    // Hidden options are internal modes, not flags a user types.
    for (const o of cmd.options.filter((o) => !o.hidden))
      rows.push({
        command: path,
        flag: o.long ?? o.flags,
        env: o.envVar,
        help: cmd.helpInformation().replace(/\s+/g, ' '),
      });
    for (const sub of cmd.commands) walk(sub, `${path} ${sub.name()}`);
  };
  for (const cmd of program.commands) walk(cmd, cmd.name());
}, 60_000);

describe('environment variables', () => {
  it('the walk reaches every command and subcommand', () => {
    const commands = new Set(rows.map((r) => r.command));
    for (const c of [
      'relay',
      'relay migrate',
      'keys create',
      'keys revoke',
      'worker',
      'mcp',
      'ai revoke',
      'login',
    ])
      expect(commands).toContain(c);
  });

  it('every option has an NFLTR_ variable, shown in its command help', () => {
    const missing = rows.filter((r) => !r.env).map((r) => `nfltr ${r.command} ${r.flag}`);
    expect(missing, `options without an env var: ${missing.join(', ')}`).toEqual([]);
    const misnamed = rows.filter((r) => !/^NFLTR_[A-Z0-9_]+$/.test(r.env!)).map((r) => `${r.flag}: ${r.env}`);
    expect(misnamed).toEqual([]);
    const hidden = rows.filter((r) => !r.help.includes(`env: ${r.env}`)).map((r) => `${r.command} ${r.flag}`);
    expect(hidden).toEqual([]);
  });

  it('one variable never means two flags', () => {
    const flags = new Map<string, Set<string>>();
    for (const r of rows) flags.set(r.env!, (flags.get(r.env!) ?? new Set()).add(r.flag));
    const shared = [...flags].filter(([, f]) => f.size > 1).map(([env, f]) => `${env}: ${[...f].join(' ')}`);
    expect(shared).toEqual([]);
  });

  it('a derived variable sets its flag; a bad value names the variable, exit 2', async () => {
    const help = await nfltr(['worker', '--help']);
    expect(help.stdout).toMatch(/--max-tasks <n>[\s\S]*env: NFLTR_WORKER_MAX_TASKS/);
    const r = await nfltr(['shell-mcp'], { env: { NFLTR_SHELL_MCP_TIMEOUT: '30' } });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(
      /option '--timeout <duration>' value '30' from env 'NFLTR_SHELL_MCP_TIMEOUT' is invalid/,
    );
  });

  it('a boolean variable: false and empty are off, anything else but true is refused', async () => {
    const unit = (env: NodeJS.ProcessEnv) =>
      nfltr(['relay', '--print-systemd-unit'], { env: { NFLTR_RELAY_PRINT_SYSTEMD_UNIT: '', ...env } });
    const off = await nfltr(['relay', '--grpc-addr', 'nonsense', '--data-dir', '/nonexistent/x'], {
      env: { NFLTR_RELAY_DEV: 'false', NFLTR_RELAY_PRINT_SYSTEMD_UNIT: 'false' },
    });
    expect(off.stdout).not.toMatch(/\[Unit\]/);
    expect((await unit({ NFLTR_RELAY_PRINT_SYSTEMD_UNIT: 'true' })).stdout).toMatch(/\[Unit\]/);
    const bad = await unit({ NFLTR_RELAY_PRINT_SYSTEMD_UNIT: 'maybe' });
    expect(bad.code).toBe(2);
    expect(bad.stderr.trim()).toBe(
      'nfltr: NFLTR_RELAY_PRINT_SYSTEMD_UNIT=maybe: expected true or false (it sets --print-systemd-unit)',
    );
  });
});
