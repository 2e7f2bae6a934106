/**
 * `nfltr p2p` between real processes in three network namespaces (see ./netns.ts): the two agents
 * reach each other over a direct link and the relay over links of their own. A direct transfer, the
 * direct link dropped (nftables) so the relay carries it, a sender killed midway and run again, and a
 * direct link cut midway. `NFLTR_P2P_MIB` sets the file size (the soak run sends 1 GiB).
 */
import { createHash } from 'node:crypto';
import { createReadStream, readdirSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Lab, makeLab, netnsProblem, watch } from '../../bench/netns.mjs';
import { createKey, eventually, tempDir } from '../helpers/processes.js';

const MIB = Number(process.env.NFLTR_P2P_MIB ?? 32);
/** Per test: room for the file at a few MB/s under load. */
const LONG = Math.max(120_000, MIB * 600);
const problem = netnsProblem();
if (problem)
  process.stderr.write(`test/p2p/netns.test.ts skipped: network namespaces unavailable (${problem})\n`);

async function sha256File(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const c of createReadStream(path)) h.update(c as Buffer);
  return h.digest('hex');
}

/** Bytes under a folder, recursively (0 when it does not exist). */
function bytesUnder(dir: string): number {
  let n = 0;
  try {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      n += e.isDirectory() ? bytesUnder(p) : statSync(p).size;
    }
  } catch {}
  return n;
}

describe.skipIf(problem !== undefined)('p2p between network namespaces', () => {
  let lab: Lab;
  /** Folders made here (GiB in the soak run), removed at the end. */
  const dirs: string[] = [];
  const tmp = (prefix?: string) => {
    const d = tempDir(prefix);
    dirs.push(d);
    return d;
  };
  let relay: Awaited<ReturnType<Lab['startRelay']>>;
  let grpcPort = 0;
  let httpPort = 0;
  let key = '';
  /** NFLTR_P2P_MIB for the direct and the fallback runs; the shaped runs (interrupted) take 32 MiB. */
  const big = { name: 'big.bin', path: '', sha: '', mib: MIB };
  const small = { name: 'small.bin', path: '', sha: '', mib: 32 };

  beforeAll(async () => {
    lab = makeLab();
    const dataDir = tmp('nfltr-p2p-relay-');
    relay = await lab.startRelay(dataDir, ['--hold-window', '1s']);
    ({ grpcPort, httpPort } = relay);
    key = await createKey(dataDir, 'acme');
    const src = tmp('nfltr-p2p-src-');
    const { open } = await import('node:fs/promises');
    const { randomFillSync } = await import('node:crypto');
    for (const f of [big, small]) {
      f.path = join(src, f.name);
      // Random content, written in 1 MiB slices (a 1 GiB buffer would not fit comfortably in a test).
      const fh = await open(f.path, 'w');
      const slice = Buffer.alloc(1024 * 1024);
      for (let i = 0; i < f.mib; i++) await fh.write(randomFillSync(slice));
      await fh.close();
      f.sha = await sha256File(f.path);
    }
  }, 120_000);

  afterAll(async () => {
    relay?.child.kill('SIGTERM');
    await relay?.exited;
    lab?.destroy();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  const spawnIn = (ns: string, args: string[]) => watch(lab.nfltr(ns, args));

  /** `nfltr p2p recv --once --json` in b. */
  async function receiver(name: string) {
    const out = tmp('nfltr-p2p-out-');
    const r = spawnIn(lab.ns.b, [
      'p2p',
      'recv',
      '--once',
      '--json',
      '--output',
      out,
      '--name',
      name,
      '--state-dir',
      tmp(),
      '--server',
      `${lab.relayFrom.b}:${grpcPort}`,
      '--api-key',
      key,
    ]);
    await eventually(() => r.stderr().includes('receiving'), 15_000, `${name} connected`);
    return { ...r, out };
  }

  /** `nfltr p2p send --json` in a. */
  function sender(to: string, stateDir: string, extra: string[] = [], what = big) {
    return spawnIn(lab.ns.a, [
      'p2p',
      'send',
      what.path,
      to,
      '--json',
      '--state-dir',
      stateDir,
      '--name',
      'lab-sender',
      '--server',
      `${lab.relayFrom.a}:${grpcPort}`,
      '--api-key',
      key,
      ...extra,
    ]);
  }

  async function landed(r: Awaited<ReturnType<typeof receiver>>, what = big) {
    expect(await r.exited, r.stderr()).toBe(0);
    const got = JSON.parse(r.stdout().trim().split('\n').at(-1)!);
    expect(got.files[0].sha256).toBe(what.sha);
    expect(await sha256File(join(r.out, what.name))).toBe(what.sha);
    return got;
  }

  it(
    'p2p netns - a large file goes direct between the namespaces',
    async () => {
      const r = await receiver('labrecv-p2p');
      // An alias (`labrecv`) resolved through the relay's HTTP API.
      const s = sender('labrecv', tmp(), ['--proxy-url', `http://${lab.relayFrom.a}:${httpPort}`]);
      expect(await s.exited, s.stderr()).toBe(0);
      const sent = JSON.parse(s.stdout());
      expect(sent.path).toBe('direct');
      expect(sent.paths).toEqual([{ path: 'direct', remote: expect.stringMatching(/^10\.77\.1\.2:\d+$/) }]);
      expect(sent.bytes).toBe(MIB * 1024 * 1024);
      expect(s.stderr()).toMatch(/direct connection with labrecv-p2p \(10\.77\.1\.2:\d+\)/);
      expect(s.stderr()).toMatch(/sent \d+ of \d+ bytes \(\d+%\) path=direct rate="[\d.]+ MB\/s"/);
      const got = await landed(r);
      expect(got.path).toBe('direct');
    },
    LONG,
  );

  it(
    'p2p netns - with the direct link dropped the transfer falls back to the relay',
    async () => {
      lab.block();
      try {
        const r = await receiver('fallback-p2p');
        const s = sender('fallback-p2p', tmp(), ['--direct-timeout', '1s']);
        expect(await s.exited, s.stderr()).toBe(0);
        const sent = JSON.parse(s.stdout());
        expect(sent.path).toBe('relay');
        expect(sent.paths).toHaveLength(1);
        expect(sent.paths[0].why).toMatch(
          /^no direct connection within 1000 ms \(.*10\.77\.1\.2:\d+: no answer within 1000 ms/,
        );
        expect(s.stderr()).toContain('using the relay path');
        expect((await landed(r)).path).toBe('relay');
      } finally {
        lab.unblock();
      }
    },
    LONG,
  );

  it('p2p netns - a sender killed midway resumes from what the receiver has', async () => {
    lab.shape('40mbit');
    try {
      const r = await receiver('resume-p2p');
      const state = tmp();
      const first = sender('resume-p2p', state, [], small);
      await eventually(
        () => bytesUnder(join(r.out, '.nfltr-partial')) > small.mib * 1024 * 1024 * 0.2,
        30_000,
        'a fifth received',
      );
      first.child.kill('SIGKILL');
      await first.exited;
      const again = sender('resume-p2p', state, [], small);
      setTimeout(
        () => process.stderr.write(`\nSENDER2:\n${again.stderr()}\nRECV:\n${r.stderr()}\n`),
        40_000,
      ).unref();
      expect(await again.exited, again.stderr()).toBe(0);
      const sent = JSON.parse(again.stdout());
      expect(sent.path, JSON.stringify(sent.paths)).toBe('direct');
      // What the receiver had is not sent again.
      expect(sent.bytes_resumed).toBeGreaterThan(0);
      expect(sent.bytes_sent).toBe(sent.bytes - sent.bytes_resumed);
      await landed(r, small);
    } finally {
      lab.shape('10gbit');
    }
  }, 120_000);

  it('p2p netns - a direct link cut midway hands over to the relay', async () => {
    lab.shape('40mbit');
    try {
      const r = await receiver('cut-p2p');
      const s = sender('cut-p2p', tmp(), [], small);
      await eventually(
        () => bytesUnder(join(r.out, '.nfltr-partial')) > small.mib * 1024 * 1024 * 0.2,
        30_000,
        'a fifth received',
      );
      lab.block();
      expect(await s.exited, s.stderr()).toBe(0);
      const sent = JSON.parse(s.stdout());
      expect(sent.paths.map((p: { path: string }) => p.path)).toEqual(['direct', 'relay']);
      expect(sent.paths[1].why).toMatch(
        /^direct connection to 10\.77\.1\.2:\d+ lost: nothing received for 5000 ms/,
      );
      await landed(r, small);
    } finally {
      lab.unblock();
      lab.shape('10gbit');
    }
  }, 120_000);
});
