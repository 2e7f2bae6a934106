/**
 * `--json` where a program reads the output: keys create/list/revoke, login, logout, ai revoke (peers,
 * status and demo are parsed in their own tests). Real `nfltr` processes; stdout parsed as JSON.
 */
import { describe, expect, it } from 'vitest';
import { nfltr, startRelayProcess, tempDir } from '../helpers/processes.js';

const json = (stdout: string) => JSON.parse(stdout) as Record<string, unknown>;

describe('--json', () => {
  it('keys create, list and revoke', async () => {
    const dataDir = tempDir();
    const created = await nfltr([
      'keys',
      'create',
      '--account',
      'acme',
      '--data-dir',
      dataDir,
      '--init',
      '--json',
    ]);
    expect(created.code).toBe(0);
    const key = json(created.stdout);
    expect(key).toEqual({ id: expect.any(String), account: 'acme', key: expect.stringMatching(/^nfk_/) });
    const listed = json((await nfltr(['keys', 'list', '--data-dir', dataDir, '--json'])).stdout);
    expect(listed.keys).toEqual([expect.objectContaining({ id: key.id, account: 'acme', revoked_at: null })]);
    const revoked = await nfltr(['keys', 'revoke', String(key.id), '--data-dir', dataDir, '--json']);
    expect(revoked.code).toBe(0);
    expect(json(revoked.stdout)).toEqual({ id: key.id, revoked: true, pending_relays: [] });
  });

  it('login and logout, never the key', async () => {
    const env = {
      XDG_CONFIG_HOME: tempDir(),
      NFLTR_API_KEY: 'secret-key',
      NFLTR_RELAY: '',
      NFLTR_SERVER: '',
    };
    const login = await nfltr(['login', '--server', '127.0.0.1:9', '--json'], { env });
    expect(login.code).toBe(0);
    expect(login.stdout).not.toContain('secret-key');
    const saved = json(login.stdout);
    expect(saved).toMatchObject({ server: '127.0.0.1:9' });
    expect(String(saved.path)).toMatch(/nfltr\/credentials\.json$/);
    expect(json((await nfltr(['logout', '--json'], { env })).stdout)).toEqual({
      path: saved.path,
      removed: true,
    });
    expect(json((await nfltr(['logout', '--json'], { env })).stdout)).toEqual({
      path: saved.path,
      removed: false,
    });
  });

  it('ai revoke', async () => {
    const relay = await startRelayProcess();
    try {
      const key = (await nfltr(['keys', 'create', '--account', 'a', '--data-dir', relay.dataDir, '--json']))
        .stdout;
      const r = await nfltr(['ai', 'revoke', '--json', '--relay', relay.httpUrl], {
        env: { NFLTR_API_KEY: String(json(key).key), XDG_CONFIG_HOME: tempDir() },
      });
      expect(r.code).toBe(0);
      expect(json(r.stdout)).toEqual({ revoked: [] });
    } finally {
      await relay.stop();
    }
  });
});
