/**
 * Global `--log-level` and `--log-format`, before or after the command name, on a real relay: JSON log
 * lines that parse, levels below the one asked dropped, a bad value a usage error (exit 2).
 */
import { describe, expect, it } from 'vitest';
import { eventually, nfltr, startRelayProcess } from '../helpers/processes.js';

describe('--log-level / --log-format', () => {
  it('json lines that parse; nothing under warn with --log-level=warn', async () => {
    const json = await startRelayProcess({ args: ['--log-format', 'json'] });
    try {
      const line = await eventually(
        () =>
          json
            .stderr()
            .split('\n')
            .find((l) => l.includes('relay listening')),
        15_000,
        'relay listening',
      );
      expect(JSON.parse(line ?? '')).toMatchObject({
        level: 'info',
        component: 'relay',
        msg: 'relay listening',
      });
    } finally {
      await json.stop();
    }
    // startRelayProcess puts its own flags after `relay`; the global one may come anywhere.
    const quiet = await startRelayProcess({ args: ['--log-level=warn'] });
    await quiet.stop();
    expect(quiet.stderr()).toContain('nfltr relay ready');
    expect(quiet.stderr()).not.toMatch(/ info /);
  });

  it('a bad value is a usage error naming the choices', async () => {
    const r = await nfltr(['--log-format', 'yaml', 'peers']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/'--log-format' argument 'yaml' is invalid: choose one of text, json/);
  });
});
