/**
 * `nfltr ai` end to end in real Chromium: a real relay, `nfltr ai -- bash` in a real PTY, the page from the
 * relay driven by playwright-core against Debian's chromium.
 */
import type { ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { type Browser, chromium, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { accessToken } from '../../src/protocol/ai-session.js';
import {
  createKey,
  eventually,
  nfltr,
  type RelayProcess,
  spawnNfltr,
  startRelayProcess,
  tempDir,
} from '../helpers/processes.js';

const CHROMIUM = '/usr/bin/chromium';
if (!existsSync(CHROMIUM) && process.env.CI === 'true')
  throw new Error(`${CHROMIUM} is missing: apt-get install -y chromium (.ci/run does)`);

const screen = (page: Page) =>
  page.evaluate(() => {
    const t = (
      globalThis as unknown as {
        nfltrTerm: {
          buffer: {
            active: {
              length: number;
              getLine(i: number): { translateToString(trim: boolean): string } | undefined;
            };
          };
        };
      }
    ).nfltrTerm;
    const b = t.buffer.active;
    const lines: string[] = [];
    for (let i = 0; i < b.length; i++) lines.push(b.getLine(i)?.translateToString(true) ?? '');
    return lines.join('\n');
  });

/** Starts `nfltr ai --name NAME -- bash`; resolves with the process, its output so far and the link. */
async function startAi(relay: RelayProcess, key: string, name: string, extra: string[] = []) {
  const p = await spawnNfltr(
    'ai',
    [
      '--server',
      relay.grpcAddr,
      '--proxy-url',
      relay.httpUrl,
      '--name',
      name,
      ...extra,
      '--',
      'bash',
      '--norc',
      '--noprofile',
    ],
    new RegExp(`(http://\\S+/ai/${name}#k=[\\w-]+)`),
    { env: { ...process.env, NFLTR_API_KEY: key, PS1: '$ ' }, stdin: 'pipe' },
  );
  const out = {
    get text() {
      return p.stdout() + p.stderr();
    },
  };
  return { child: p.child, out, link: p.match[1]!, exited: p.exited };
}

describe.skipIf(!existsSync(CHROMIUM))('nfltr ai - browser', () => {
  let relay: RelayProcess;
  let key: string;
  let ai: ChildProcess;
  let aiOut = { text: '' } as { readonly text: string };
  let link = '';
  let browser: Browser;
  let capture: string;

  beforeAll(async () => {
    capture = join(tempDir('nfltr-ai-cap-'), 'capture.jsonl');
    relay = await startRelayProcess({ args: ['--capture-envelopes', capture] });
    key = await createKey(relay.dataDir, 'acme');
    const started = await startAi(relay, key, 'lap-ai');
    ai = started.child;
    aiOut = started.out;
    link = started.link;
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
    });
  }, 60_000);

  afterAll(async () => {
    await browser?.close();
    ai?.kill('SIGTERM');
    await relay?.stop();
  });

  it('runs a command typed in the page, restores the screen on reload, keeps a second viewer read-only, and refuses the link after revoke', async () => {
    const page = await browser.newPage({ viewport: { width: 900, height: 500 } });
    await page.goto(link);
    await page.waitForSelector('#role[data-role="writer"]', { timeout: 20_000 });
    await page.locator('#term').click();
    await page.keyboard.type('echo $((6*7))\n');
    await eventually(async () => /^42$/m.test(await screen(page)), 20_000, 'the answer 42 on the page');

    // Resize: the PTY follows the writer's terminal.
    const colsNow = () =>
      page.evaluate(() => (globalThis as unknown as { nfltrTerm: { cols: number } }).nfltrTerm.cols);
    const before = await colsNow();
    await page.setViewportSize({ width: 600, height: 400 });
    const cols = await eventually(
      async () => ((await colsNow()) !== before ? colsNow() : 0),
      20_000,
      'the terminal to refit',
    );
    await page.keyboard.type('stty size\n');
    await eventually(
      async () => new RegExp(`^\\d+ ${cols}$`, 'm').test(await screen(page)),
      20_000,
      `stty size with ${cols} columns`,
    ).catch(async (err) => {
      throw new Error(`${(err as Error).message}; screen:\n${await screen(page)}`);
    });

    // Reload: the agent replays its scrollback.
    await page.reload();
    await page.waitForSelector('#role[data-role="writer"]', { timeout: 20_000 });
    await eventually(
      async () => /^42$/m.test(await screen(page)),
      20_000,
      'the screen restored after reload',
    );

    // A second viewer watches; its keystrokes go nowhere until it takes control.
    const second = await browser.newPage();
    await second.goto(link);
    await second.waitForSelector('#role[data-role="viewer"]', { timeout: 20_000 });
    await eventually(
      async () => /^42$/m.test(await screen(second)),
      20_000,
      'the screen on the second viewer',
    );
    await second.locator('#term').click();
    await second.keyboard.type('echo from-$((2+3))-viewer\n');
    await page.keyboard.type('echo writer-$((3+4))\n');
    await eventually(
      async () => /^writer-7$/m.test(await screen(second)),
      20_000,
      'writer output on the viewer',
    );
    expect(await screen(page)).not.toMatch(/from-5-viewer/);
    expect(await second.locator('#take').isVisible()).toBe(true);

    // The relay forwarded ciphertext only.
    const seen = readFileSync(capture, 'utf8');
    expect(seen).toContain('nfltr.ai/1');
    const payloads = seen
      .trim()
      .split('\n')
      .map((l) => Buffer.from((JSON.parse(l) as { payload: string }).payload, 'base64').toString('latin1'))
      .join('\n');
    for (const plain of ['echo', '6*7', 'writer-7', 'stty']) expect(payloads).not.toContain(plain);

    // Revoke: open pages are closed, the link refused, the local session ends.
    const wsUrl = `${relay.httpUrl.replace('http', 'ws')}/ai/lap-ai/ws?t=${accessToken(Buffer.from(link.split('#k=')[1]!, 'base64url'))}`;
    const tryLink = () =>
      new Promise<string>((res) => {
        const ws = new WebSocket(wsUrl);
        ws.on('unexpected-response', (_req, resp) => res(String(resp.statusCode)));
        ws.on('open', () => {
          res('open');
          ws.close();
        });
        ws.on('error', (e) => res(e.message));
      });
    expect(await tryLink()).toBe('open');
    const r = await nfltr(['ai', 'revoke', 'lap-ai', '--proxy-url', relay.httpUrl], {
      env: { NFLTR_API_KEY: key },
    });
    expect(r.stdout).toBe('revoked: lap-ai\n');
    expect(r.code).toBe(0);
    await page.waitForSelector('#banner:has-text("link revoked")', { timeout: 20_000 });
    expect(await tryLink()).toBe('403');
    await eventually(() => ai.exitCode !== null, 20_000, 'nfltr ai to exit after revoke');
    expect(aiOut.text).toMatch(/link revoked/);
  }, 120_000);

  it('shows the exit code in the page and locally, and leaves no process behind', async () => {
    const other = await startAi(relay, key, 'exit-ai', ['--expires', '10m']);
    const page = await browser.newPage();
    // The account's API key instead of the link's token (the key k is still needed to read anything).
    await page.goto(`${other.link}&key=${encodeURIComponent(key)}`);
    await page.waitForSelector('#role[data-role="writer"]', { timeout: 20_000 });
    await page.locator('#term').click();
    await page.keyboard.type('echo pid=$$\n');
    const pid = Number(
      await eventually(async () => /^pid=(\d+)$/m.exec(await screen(page))?.[1], 20_000, 'the shell pid'),
    );
    // A background job has a process group of its own: it must still go with the session.
    await page.keyboard.type('sleep 300 & echo job=$!\n');
    const job = Number(
      await eventually(async () => /^job=(\d+)$/m.exec(await screen(page))?.[1], 20_000, 'the job pid'),
    );
    await page.keyboard.type('exit 3\n');
    await page.waitForSelector('#banner:has-text("exited with code 3")', { timeout: 20_000 });
    expect(await other.exited).toBe(3);
    expect(other.out.text).toMatch(/bash exited with code 3/);
    const alive = (p: number) => {
      try {
        process.kill(p, 0);
        return true;
      } catch {
        return false;
      }
    };
    await eventually(() => !alive(pid), 10_000, `shell ${pid} gone`);
    await eventually(() => !alive(job), 10_000, `background job ${job} gone`);
  }, 90_000);
});
