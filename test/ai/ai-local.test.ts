/**
 * `nfltr ai` from a real terminal: the local side stays usable (keystrokes reach COMMAND, its output shows,
 * the PTY takes the local terminal's size) and the exit code comes back. node-pty plays the user's terminal.
 */
import pty from 'node-pty';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createKey,
  eventually,
  NFLTR_BIN,
  type RelayProcess,
  startRelayProcess,
} from '../helpers/processes.js';

describe('nfltr ai - local terminal', () => {
  let relay: RelayProcess;
  let key: string;

  beforeAll(async () => {
    relay = await startRelayProcess();
    key = await createKey(relay.dataDir, 'acme');
  }, 30_000);
  afterAll(async () => {
    await relay?.stop();
  });

  it('mirrors the local terminal into COMMAND and exits with its code', async () => {
    const term = pty.spawn(
      process.execPath,
      [
        NFLTR_BIN,
        'ai',
        '--server',
        relay.grpcAddr,
        '--proxy-url',
        relay.httpUrl,
        '--name',
        'tty-ai',
        '--',
        'bash',
        '--norc',
        '--noprofile',
      ],
      { cols: 100, rows: 30, env: { ...process.env, NFLTR_API_KEY: key, PS1: '$ ' } },
    );
    let out = '';
    term.onData((d) => {
      out += d;
    });
    const exited = new Promise<number>((res) => term.onExit((e) => res(e.exitCode)));
    await eventually(() => /\/ai\/tty-ai#k=/.test(out), 20_000, 'the share link');
    term.write('echo local-$((5+5))\r');
    await eventually(() => /^local-10\r?$/m.test(out), 20_000, 'the command run from the local terminal');
    term.write('stty size\r');
    await eventually(() => /^30 100\r?$/m.test(out), 20_000, "the local terminal's size in the PTY");
    term.write('exit 4\r');
    expect(await exited).toBe(4);
    expect(out).toMatch(/bash exited with code 4/);
  }, 60_000);
});
