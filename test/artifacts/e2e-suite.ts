/**
 * Artifacts end to end, with real processes: relay, `nfltr worker` running test/fixtures/
 * artifact-executor.mjs, and `nfltr mcp` driven over MCP. Files go planner → worker (artifact_files) and
 * back (output_dir and resource links), byte-identical, through the encrypted task channel; corrupt
 * chunks fail closed; hostile inputs are refused; a relay killed mid-transfer costs a resend of what
 * was in flight, not the whole file. `npm test` runs it with a 32 MiB file (four send windows), the soak
 * run (test/durability/soak.ts) with 200 MiB.
 */
import { createCipheriv, createHash } from 'node:crypto';
import {
  createReadStream,
  createWriteStream,
  existsSync,
  mkdirSync,
  readdirSync,
  rmSync,
  statSync,
  symlinkSync,
  truncateSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ARTIFACT_WINDOW_BYTES } from '../../src/agent/artifacts/limits.js';
import { waitFinal } from '../durability/helpers.js';
import { fixturePath } from '../helpers/fixtures.js';
import { eventually, tempDir, withRelay } from '../helpers/processes.js';
import { type Planner, startPlanner, startWorker, type WorkerProcess } from '../planner/helpers.js';

const EXECUTOR = fixturePath('artifact-executor.mjs');
const executor = `'${process.execPath}' '${EXECUTOR}'`;
const MIB = 1024 * 1024;

/** The same bytes as the executor's writeDeterministic: AES-256-CTR keystream under a seeded key. */
async function writeDeterministic(path: string, mib: number, seed = 1): Promise<void> {
  const key = createHash('sha256').update(`nfltr-test-${seed}`).digest();
  const cipher = createCipheriv('aes-256-ctr', key, Buffer.alloc(16));
  const zeros = Buffer.alloc(MIB);
  const out = createWriteStream(path);
  for (let i = 0; i < mib; i++) {
    if (!out.write(cipher.update(zeros))) await new Promise<void>((r) => out.once('drain', () => r()));
  }
  await new Promise<void>((r, j) => out.end((err?: Error | null) => (err ? j(err) : r())));
}

async function sha256(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const c of createReadStream(path, { highWaterMark: MIB })) h.update(c as Buffer);
  return h.digest('hex');
}

interface Artifact {
  name: string;
  size: number;
  sha256: string;
  path: string;
}
interface Status {
  state: string;
  last_seq: number;
  reason?: string;
  message?: string;
  result?: { text: string; structured?: { inputs: { name: string; size: number; sha256: string }[] } };
  artifacts?: Artifact[];
  events: { seq: number; state: string; message?: string; progress?: number; total?: number }[];
}

const waitEnd = (p: Planner, taskId: string, timeoutMs = 60_000) => waitFinal<Status>(p, taskId, timeoutMs);

/** The suite, its big file `bigMib` MiB (at least 32, four windows: the relay-restart case stops the relay 2.5 windows in). */
export function artifactsEndToEnd(bigMib: number): void {
  describe(`artifacts end to end - ${bigMib} MiB`, () => {
    const fixture = withRelay({ accounts: ['art'], restartable: true });
    let key: string;
    let planner: Planner;
    let plannerState: string;
    let worker: WorkerProcess;
    let workerState: string;
    let src: string;
    let big: string;
    let bigSha: string;
    const cleanup: (() => Promise<unknown> | unknown)[] = [];

    beforeAll(async () => {
      // These cases are about the relay path (windows, resume across a relay restart, limits): files
      // above --p2p-threshold would go direct on loopback. test/p2p covers the direct path.
      process.env.NFLTR_P2P_THRESHOLD = 'off';
      key = fixture.key;
      const relay = fixture.relay;
      src = tempDir('nfltr-art-src-');
      big = join(src, 'big.bin');
      await writeDeterministic(big, bigMib, 42);
      bigSha = await sha256(big);
      workerState = tempDir();
      worker = await startWorker({
        server: relay.grpcAddr,
        apiKey: key,
        name: 'w-art',
        stateDir: workerState,
        mcpCommand: executor,
      });
      plannerState = tempDir();
      planner = await startPlanner(
        [
          '--proxy-url',
          relay.httpUrl,
          '--server',
          relay.grpcAddr,
          '--name',
          'p-art',
          '--state-dir',
          plannerState,
        ],
        key,
      );
      await eventually(async () => (await planner.toolNames()).includes('orchestrate_task'), 10_000, 'tools');
    }, 60_000);

    afterAll(async () => {
      for (const c of cleanup.reverse()) await c();
      await planner?.close();
      await worker?.stop();
      // The big files: the source, the worker's copies and the planner's.
      for (const d of [src, workerState, plannerState]) if (d) rmSync(d, { recursive: true, force: true });
    });

    it(`round trip - a folder with nested files and a ${bigMib} MiB file reach the worker and come back byte-identical`, async () => {
      const bundle = join(src, 'bundle');
      mkdirSync(join(bundle, 'sub', 'deep'), { recursive: true });
      writeFileSync(join(bundle, 'a.txt'), 'alpha\n');
      writeFileSync(join(bundle, 'sub', 'b.json'), '{"b": true}\n');
      writeFileSync(join(bundle, 'empty.txt'), '');
      await writeDeterministic(join(bundle, 'sub', 'deep', 'c.bin'), 3, 7);
      const names = [
        'big.bin',
        'bundle/a.txt',
        'bundle/empty.txt',
        'bundle/sub/b.json',
        'bundle/sub/deep/c.bin',
      ];
      const sourceOf = (n: string) => join(src, ...n.split('/'));
      const expected = new Map<string, string>();
      for (const n of names) expected.set(n, await sha256(sourceOf(n)));

      const started = await planner.ok<{ task_id: string; input_files: { name: string; sha256: string }[] }>(
        'orchestrate_task',
        {
          agent_id: 'w-art',
          task_id: 'round-trip',
          objective: 'copy the inputs back',
          artifact_files: [big, bundle],
          constraints: { copy_inputs: true },
        },
      );
      expect(Object.fromEntries(started.input_files.map((f) => [f.name, f.sha256]))).toEqual(
        Object.fromEntries(expected),
      );
      const done = await waitEnd(planner, 'round-trip', 80_000);
      expect(done.state, JSON.stringify(done)).toBe('completed');

      // On the worker: every input in input_dir, as the executor saw it.
      expect(done.result?.structured?.inputs).toEqual(
        names.map((n) => ({ name: n, size: statSync(sourceOf(n)).size, sha256: expected.get(n) })),
      );
      // Back on the planner: verified files under <state>/artifacts/<task>/, byte-identical.
      expect(done.artifacts?.map((a) => a.name).sort()).toEqual(names);
      for (const a of done.artifacts!) {
        expect(a.path).toBe(join(plannerState, 'artifacts', 'round-trip', ...a.name.split('/')));
        expect(a.sha256).toBe(expected.get(a.name));
        expect(await sha256(a.path)).toBe(expected.get(a.name));
      }
      // Large transfers report progress both ways (bytes done of total), throttled.
      const progress = (what: string) => done.events.filter((e) => e.message?.startsWith(what));
      for (const what of ['receiving input files', 'sending output files']) {
        const p = progress(what);
        expect(p.length, what).toBeGreaterThanOrEqual(5);
        expect(p.length, what).toBeLessThanOrEqual(60);
        expect(p.at(-1)).toMatchObject({ state: 'running', progress: p.at(-1)!.total });
      }
      expect(bigSha).toBe(expected.get('big.bin'));
    }, 90_000);

    it('hostile inputs - refused at dispatch, naming the path; hostile outputs never leave the task folder', async () => {
      const fails = (artifact_files: string[]) =>
        planner.fails('orchestrate_task', { agent_id: 'w-art', objective: 'x', artifact_files });
      expect(await fails([join(src, 'missing.txt')])).toContain(
        `artifact_files: cannot read ${join(src, 'missing.txt')}: ENOENT`,
      );
      const outside = tempDir();
      writeFileSync(join(outside, 'secret'), 'secret');
      const leaky = join(src, 'leaky');
      mkdirSync(leaky);
      symlinkSync(join(outside, 'secret'), join(leaky, 'secret'));
      expect(await fails([leaky])).toMatch(/symlink .*leaky\/secret points outside/);
      const twin = join(tempDir(), 'bundle');
      mkdirSync(twin);
      writeFileSync(join(twin, 'a.txt'), 'other');
      expect(await fails([join(src, 'bundle'), twin])).toContain('two artifacts are named "bundle/a.txt"');
      const huge = join(src, 'huge.bin');
      writeFileSync(huge, '');
      truncateSync(huge, 1024 * MIB + 1);
      expect(await fails([huge])).toContain(
        'over the limit of 1073741824 bytes (--max-artifact-bytes of nfltr mcp)',
      );
      rmSync(huge);

      // The executor leaves a symlink out of output_dir and links files outside the task folder.
      await planner.ok('orchestrate_task', {
        agent_id: 'w-art',
        task_id: 'hostile-out',
        objective: 'try to leak',
        artifact_files: [join(src, 'bundle', 'a.txt')],
        constraints: { symlink_out: true, links: ['/etc/hostname', 'input/a.txt', '../../../etc/passwd'] },
      });
      const done = await waitEnd(planner, 'hostile-out');
      expect(done.state).toBe('completed');
      // input/a.txt is inside the task folder, so it comes back; nothing else does.
      expect(done.artifacts?.map((a) => a.name)).toEqual(['input/a.txt']);
      expect(readdirSync(join(plannerState, 'artifacts', 'hostile-out'))).toEqual(['input']);
      expect(worker.stderr()).toMatch(
        /output entries not returned.*escape\.txt \(symbolic link\).*hostname \(outside the task folder/s,
      );
    }, 30_000);

    it('corrupted chunk - either way the file is discarded and the failed task names it', async () => {
      const relay = fixture.relay;
      // A planner and a worker whose senders flip one byte of `corrupt.bin` at offset 1048576 (the second 1 MiB chunk).
      process.env.NFLTR_TEST_CORRUPT_CHUNK = 'corrupt.bin@1048576';
      let w2: WorkerProcess;
      let p2: Planner;
      const state2 = tempDir();
      try {
        w2 = await startWorker({
          server: relay.grpcAddr,
          apiKey: key,
          name: 'w-corrupt',
          stateDir: tempDir(),
          mcpCommand: executor,
          args: ['--max-artifact-bytes', String(4 * MIB)],
        });
        p2 = await startPlanner(
          [
            '--proxy-url',
            relay.httpUrl,
            '--server',
            relay.grpcAddr,
            '--name',
            'p-corrupt',
            '--state-dir',
            state2,
          ],
          key,
        );
      } finally {
        delete process.env.NFLTR_TEST_CORRUPT_CHUNK;
      }
      cleanup.push(
        () => p2.close(),
        () => w2.stop(),
      );
      await eventually(async () => (await p2.toolNames()).includes('orchestrate_task'), 10_000, 'tools');
      const corrupt = join(src, 'corrupt.bin');
      await writeDeterministic(corrupt, 2, 9);

      // planner → worker: the worker discards the input and fails the task.
      await p2.ok('orchestrate_task', {
        agent_id: 'w-corrupt',
        task_id: 'bad-in',
        objective: 'x',
        artifact_files: [corrupt],
      });
      const badIn = await waitEnd(p2, 'bad-in');
      expect(badIn).toMatchObject({
        state: 'failed',
        reason: 'artifact_error',
        message:
          'input files refused: artifact corrupt.bin discarded: chunk at offset 1048576 does not match its SHA-256',
      });

      // worker → planner: the planner discards the result and fails the task.
      await p2.ok('orchestrate_task', {
        agent_id: 'w-corrupt',
        task_id: 'bad-out',
        objective: 'x',
        constraints: { write: { 'corrupt.bin': { mib: 2, seed: 9 }, 'fine.bin': { mib: 2, seed: 9 } } },
      });
      const badOut = await waitEnd(p2, 'bad-out');
      expect(badOut).toMatchObject({
        state: 'failed',
        reason: 'artifact_integrity',
        message: 'artifact corrupt.bin discarded: chunk at offset 1048576 does not match its SHA-256',
      });
      expect(badOut.artifacts?.map((a) => a.name)).toEqual(['fine.bin']);
      expect(existsSync(join(state2, 'artifacts', 'bad-out', 'corrupt.bin'))).toBe(false);

      // The worker's own limit (--max-artifact-bytes of the worker) is enforced on what it receives.
      const five = join(src, 'five.bin');
      await writeDeterministic(five, 5, 5);
      await p2.ok('orchestrate_task', {
        agent_id: 'w-corrupt',
        task_id: 'too-big',
        objective: 'x',
        artifact_files: [five],
      });
      expect(await waitEnd(p2, 'too-big')).toMatchObject({
        state: 'failed',
        reason: 'artifact_error',
        message: expect.stringContaining(
          'over the limit of 4194304 bytes (--max-artifact-bytes of nfltr worker)',
        ),
      });
    }, 60_000);

    it(`relay restart - a relay SIGKILLed while a ${bigMib} MiB file streams, either way: the transfer resumes, not restarts`, async () => {
      const size = bigMib * MIB;
      /**
       * Once a partial file in `dir` has 2.5 send windows, freezes the relay (SIGSTOP: nothing more gets
       * through, so the transfer cannot finish before the kill), then SIGKILLs it and restarts it on its
       * ports. Resolves with what the receiver had then: starting over would send all of it again,
       * resuming sends what was in flight (the window, twice at worst: once on a stall, once after the
       * reconnect).
       */
      const killWhen = async (dir: string, what: string): Promise<number> => {
        const partial = () =>
          Math.max(0, ...(existsSync(dir) ? readdirSync(dir) : []).map((p) => statSync(join(dir, p)).size));
        const deadline = Date.now() + 40_000;
        while (partial() < 2.5 * ARTIFACT_WINDOW_BYTES) {
          if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
          await new Promise((r) => setTimeout(r, 5));
        }
        fixture.relay.child.kill('SIGSTOP');
        const had = partial();
        await fixture.restart('SIGKILL');
        return had;
      };
      await planner.ok('orchestrate_task', {
        agent_id: 'w-art',
        task_id: 'across-kill',
        objective: 'copy the input back',
        artifact_files: [big],
        constraints: { copy_inputs: true },
      });
      // Once while the input streams to the worker, once while the copy streams back.
      const hadIn = await killWhen(
        join(workerState, 'tasks', 'across-kill', '.incoming'),
        'the input transfer',
      );
      const hadOut = await killWhen(
        join(plannerState, 'artifacts', '.partial', 'across-kill'),
        'the output transfer',
      );
      const done = await waitEnd(planner, 'across-kill', 60_000);
      expect(done.state, JSON.stringify(done)).toBe('completed');
      expect(done.result?.structured?.inputs).toEqual([{ name: 'big.bin', size, sha256: bigSha }]);
      const [back] = done.artifacts!;
      expect(back).toMatchObject({ name: 'big.bin', size, sha256: bigSha });
      expect(await sha256(back!.path)).toBe(bigSha);

      // Each sender logs what it put on the wire: the resend is at most what was in flight, not the file.
      const counters = (log: string, what: string) => {
        const all = [
          ...log.matchAll(
            new RegExp(`${what} sent task=across-kill .*bytes_sent=(\\d+) bytes_resent=(\\d+)`, 'g'),
          ),
        ];
        expect(all, log).toHaveLength(1);
        const [, sent, resent] = all[0]!.map(Number);
        return { sent: sent!, resent: resent! };
      };
      for (const [what, { sent, resent }, had] of [
        ['input files', counters(planner.stderr(), 'input files'), hadIn],
        ['output files', counters(worker.stderr(), 'output files'), hadOut],
      ] as const) {
        expect(
          resent,
          `${what}: ${sent} bytes sent, ${resent} re-sent, ${had} received at the kill`,
        ).toBeLessThan(had);
        expect(sent).toBe(size + resent);
      }
      // The worker says so in the task's events too.
      const last = (what: string) => done.events.filter((e) => e.message?.startsWith(what)).at(-1)?.message;
      expect(last('receiving input files')).toMatch(
        new RegExp(
          `^receiving input files: ${size} of ${size} bytes \\(100%\\)(, \\d+ bytes received twice after a reconnect)?$`,
        ),
      );
      expect(last('sending output files')).toMatch(
        new RegExp(
          `^sending output files: ${size} of ${size} bytes \\(100%\\)(, \\d+ bytes re-sent after a reconnect)?$`,
        ),
      );
    }, 90_000);
  });
}
