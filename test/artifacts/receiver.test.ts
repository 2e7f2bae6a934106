/**
 * The artifact sender and receiver in one process: names, integrity, confinement to the task folder,
 * limits, flow control and resumption over a link that loses frames.
 */
import { createHash } from 'node:crypto';
import {
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  symlinkSync,
  truncateSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { create } from '@bufbuild/protobuf';
import { describe, expect, it } from 'vitest';
import type { A2aBody } from '../../src/agent/a2a.js';
import {
  ArtifactError,
  ArtifactReceiver,
  ArtifactSender,
  checkArtifactLimit,
  describeFiles,
  type LocalFile,
  listFiles,
  ProgressThrottle,
  resolveLocalPaths,
  sanitizeArtifactName,
} from '../../src/agent/artifacts/index.js';
import { AgentError } from '../../src/agent/client.js';
import {
  type ArtifactAck,
  type ArtifactChunk,
  ArtifactChunkSchema,
  ArtifactInfoSchema,
} from '../../src/protocol/a2a.js';
import { collectResultFiles } from '../../src/worker/outputs.js';
import { tempDir } from '../helpers/processes.js';

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
const chunk = (name: string, offset: number, data: Buffer, last: boolean, chunkSha = sha(data)) =>
  create(ArtifactChunkSchema, {
    taskId: 't',
    name,
    offset: BigInt(offset),
    data,
    chunkSha256: chunkSha,
    last,
  });
const info = (name: string, data: Buffer) =>
  create(ArtifactInfoSchema, { name, size: BigInt(data.length), sha256: sha(data) });

/** Deterministic bytes (xorshift), fast enough for a few MiB. */
function bytes(n: number, seed = 1): Buffer {
  const b = Buffer.allocUnsafe(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i += 4) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b.writeUInt32LE(x >>> 0, Math.min(i, n - 4));
  }
  return b;
}

function receiver(opts: Partial<ConstructorParameters<typeof ArtifactReceiver>[0]> = {}) {
  const root = tempDir('nfltr-art-');
  const acks: ArtifactAck[] = [];
  let forward: ((a: ArtifactAck) => void) | undefined;
  const r = new ArtifactReceiver({
    taskId: 't',
    dir: join(root, 'in'),
    partialDir: join(root, '.partial'),
    maxBytes: 64 * 1024 * 1024,
    sendAck: (a) => {
      acks.push(a);
      forward?.(a);
    },
    ...opts,
  });
  /** Routes the acks to a link as well. */
  const connect = (l: { ack: (a: ArtifactAck) => void }) => {
    forward = l.ack;
  };
  return { r, root, dir: opts.dir ?? join(root, 'in'), acks, connect };
}

/** Writes files under a fresh folder; returns LocalFiles named by their relative path. */
function localFiles(files: Record<string, Buffer>): { root: string; files: LocalFile[] } {
  const root = tempDir('nfltr-src-');
  const out: LocalFile[] = [];
  for (const [name, data] of Object.entries(files)) {
    const path = join(root, ...name.split('/'));
    mkdirSync(join(path, '..'), { recursive: true });
    writeFileSync(path, data);
    out.push({ name, path, size: data.length });
  }
  return { root, files: out };
}

/**
 * A link between a sender and a receiver in one process: chunks go one way, acks the other, each after
 * a macrotask. `drop` decides which chunks are lost.
 */
function link(r: ArtifactReceiver, drop: (c: ArtifactChunk, n: number) => boolean = () => false) {
  let sender: ArtifactSender | undefined;
  let n = 0;
  let queued = 0;
  const send = async (msg: A2aBody) => {
    if (msg.case !== 'artifactChunk') return;
    const c = msg.value;
    if (drop(c, n++)) return;
    queued += c.data.length;
    setImmediate(() => {
      queued -= c.data.length;
      void r.accept(c);
    });
  };
  return {
    send,
    whenWritable: async () => {
      while (queued > 1024 * 1024) await new Promise((res) => setImmediate(res));
    },
    attach: (s: ArtifactSender) => {
      sender = s;
    },
    ack: (a: ArtifactAck) => setImmediate(() => sender?.onAck(a)),
  };
}

describe('artifact names', () => {
  it('names - hostile ones are refused with the reason, ordinary ones normalised', () => {
    const refused: [string, RegExp][] = [
      ['../x', /'\.\.' is not allowed/],
      ['a/../../x', /'\.\.' is not allowed/],
      ['/etc/passwd', /absolute paths/],
      ['C:\\Windows\\x', /absolute paths/],
      ['con', /device name/],
      ['CON.txt', /device name/],
      ['logs/nul ', /device name/],
      ['lpt1.log', /device name/],
      ['a//b', /empty or "\." path segments/],
      ['a/./b', /empty or "\." path segments/],
      ['a/', /empty or "\." path segments/],
      ['', /1-1024 characters/],
      ['x\0y', /control characters/],
      ['x\ny', /control characters/],
    ];
    for (const [name, why] of refused) {
      expect(() => sanitizeArtifactName(name), name).toThrow(why);
      expect(() => sanitizeArtifactName(name)).toThrow(ArtifactError);
    }
    expect(sanitizeArtifactName('logs\\unit.log')).toBe('logs/unit.log');
    expect(sanitizeArtifactName('console.log')).toBe('console.log');
    expect(sanitizeArtifactName('a/b c/d.tar.gz')).toBe('a/b c/d.tar.gz');
  });

  it('local paths - a missing path, a symlink out of a folder and duplicate names are refused, naming them', async () => {
    await expect(resolveLocalPaths(['/definitely/not/here.txt'])).rejects.toThrow(
      'artifact_files: cannot read /definitely/not/here.txt: ENOENT',
    );
    const outside = tempDir();
    writeFileSync(join(outside, 'secret.txt'), 'secret');
    const { root } = localFiles({ 'docs/a.md': Buffer.from('a'), 'docs/sub/b.md': Buffer.from('b') });
    symlinkSync(join(outside, 'secret.txt'), join(root, 'docs', 'leak.txt'));
    await expect(resolveLocalPaths([join(root, 'docs')])).rejects.toThrow(
      /symlink .*docs\/leak\.txt points outside/,
    );
    const other = localFiles({ 'docs/a.md': Buffer.from('other') });
    await expect(resolveLocalPaths([join(other.root, 'docs'), join(other.root, 'docs')])).rejects.toThrow(
      'two artifacts are named "docs/a.md"',
    );
    // A link that stays inside is followed; a loop is refused.
    const { root: r2 } = localFiles({ 'tree/a.txt': Buffer.from('a') });
    symlinkSync(join(r2, 'tree', 'a.txt'), join(r2, 'tree', 'b.txt'));
    expect((await listFiles(join(r2, 'tree'), 'tree/')).map((f) => f.name)).toEqual([
      'tree/a.txt',
      'tree/b.txt',
    ]);
    symlinkSync(join(r2, 'tree'), join(r2, 'tree', 'loop'));
    await expect(listFiles(join(r2, 'tree'))).rejects.toThrow(/symlink loop/);
  });

  it('limits - one file or the total over --max-artifact-bytes is refused, naming the flag', () => {
    expect(() =>
      checkArtifactLimit([{ name: 'a', size: 11 }], 10, '--max-artifact-bytes of nfltr mcp'),
    ).toThrow('a is 11 bytes, over the limit of 10 bytes (--max-artifact-bytes of nfltr mcp)');
    expect(() =>
      checkArtifactLimit(
        [
          { name: 'a', size: 6 },
          { name: 'b', size: 6 },
        ],
        10,
      ),
    ).toThrow('the files total 12 bytes, over the limit of 10 bytes per task (--max-artifact-bytes)');
  });
});

describe('artifact receiver - files announced first (input files)', () => {
  it('round trip - nested files and an empty one arrive byte-identical in the folder', async () => {
    const data = {
      'docs/readme.md': Buffer.from('# hello\n'),
      'docs/deep/a/b/c.bin': bytes(3 * 256 * 1024 + 17, 7),
      'empty.txt': Buffer.alloc(0),
    };
    const { files } = localFiles(data);
    const { r, dir, connect } = receiver();
    const infos = await describeFiles(files);
    const l = link(r);
    connect(l);
    const done = r.expect(infos);
    const s = new ArtifactSender(files, { taskId: 't', send: l.send, whenWritable: l.whenWritable });
    l.attach(s);
    const report = await s.run();
    const got = await done;
    expect(got.map((f) => f.name).sort()).toEqual(Object.keys(data).sort());
    for (const [name, b] of Object.entries(data)) {
      expect(sha(readFileSync(join(dir, ...name.split('/'))))).toBe(sha(b));
    }
    expect(report).toMatchObject({ files: 3, bytesResent: 0, failed: [] });
    expect(readdirSync(join(dir, '..', '.partial'))).toEqual([]);
  });

  it('corrupted chunk - the file is discarded (fail closed) and the error names it', async () => {
    const { r, dir, acks } = receiver();
    const good = bytes(1000);
    const done = r.expect([info('report.bin', good)]);
    done.catch(() => {});
    await r.accept(chunk('report.bin', 0, good.subarray(0, 500), false));
    const tampered = Buffer.from(good.subarray(500));
    tampered[3] = tampered[3]! ^ 0xff;
    await r.accept(chunk('report.bin', 500, tampered, true, sha(good.subarray(500))));
    await expect(done).rejects.toThrow(
      'artifact report.bin discarded: chunk at offset 500 does not match its SHA-256',
    );
    expect(existsSync(join(dir, 'report.bin'))).toBe(false);
    expect(readdirSync(join(dir, '..', '.partial'))).toEqual([]);
    expect(acks.at(-1)).toMatchObject({ name: 'report.bin', error: expect.stringContaining('SHA-256') });
  });

  it('sealed chunks - may come without a SHA-256; the whole-file hash still discards a wrong file', async () => {
    const { r, dir } = receiver();
    const good = bytes(1000);
    const ok = r.expect([info('ok.bin', good)]);
    await r.accept(chunk('ok.bin', 0, good.subarray(0, 600), false, ''), true);
    await r.accept(chunk('ok.bin', 600, good.subarray(600), true, ''), true);
    await expect(ok).resolves.toHaveLength(1);
    expect(sha(readFileSync(join(dir, 'ok.bin')))).toBe(sha(good));

    const bad = r.expect([info('bad.bin', good)]);
    bad.catch(() => {});
    const tampered = Buffer.from(good);
    tampered[700] = tampered[700]! ^ 0xff;
    await r.accept(chunk('bad.bin', 0, tampered, true, ''), true);
    await expect(bad).rejects.toThrow('artifact bad.bin discarded: whole-file SHA-256 does not match');
    expect(existsSync(join(dir, 'bad.bin'))).toBe(false);

    // A SHA-256 a sealed chunk does carry is checked.
    const carried = r.expect([info('carried.bin', good)]);
    carried.catch(() => {});
    await r.accept(chunk('carried.bin', 0, tampered, true, sha(good)), true);
    await expect(carried).rejects.toThrow('chunk at offset 0 does not match its SHA-256');
  });

  it('unsealed chunks - one without a SHA-256 discards its file, naming the flag', async () => {
    const { r, dir } = receiver();
    const good = bytes(1000);
    const done = r.expect([info('plain.bin', good)]);
    done.catch(() => {});
    await r.accept(chunk('plain.bin', 0, good, true, ''));
    await expect(done).rejects.toThrow(
      'artifact plain.bin discarded: chunk at offset 0 carries no SHA-256 and was not sealed end to end (run both ends with the same --a2a-e2ee)',
    );
    expect(existsSync(join(dir, 'plain.bin'))).toBe(false);
  });

  it('whole-file hash - chunks that are each fine but not the announced file are discarded', async () => {
    const { r, dir } = receiver();
    const done = r.expect([info('a.txt', Buffer.from('announced'))]);
    done.catch(() => {});
    await r.accept(chunk('a.txt', 0, Buffer.from('different'), true));
    await expect(done).rejects.toThrow('artifact a.txt discarded: whole-file SHA-256 does not match');
    expect(existsSync(join(dir, 'a.txt'))).toBe(false);
  });

  it('hostile names - refused at announcement; duplicates and over-limit sizes too; nothing written', () => {
    const { r, root } = receiver({ maxBytes: 100 });
    const x = Buffer.from('x');
    for (const name of ['../x', '/etc/passwd', 'con', 'a//b']) {
      expect(() => r.expect([info(name, x)]), name).toThrow(/refused/);
    }
    expect(() => r.expect([info('a.txt', x), info('a.txt', x)])).toThrow('two artifacts are named "a.txt"');
    expect(() => r.expect([info('big', bytes(101))])).toThrow(
      'artifact big is 101 bytes, over the limit of 100 bytes (--max-artifact-bytes)',
    );
    expect(() => r.expect([info('a', bytes(60)), info('b', bytes(60))])).toThrow(
      /total 120 bytes.*--max-artifact-bytes/,
    );
    void r.expect([info('once.txt', x)]);
    // The same announcement again (a resent command) is fine; another file under that name is not.
    void r.expect([info('once.txt', x)]);
    expect(() => r.expect([info('once.txt', Buffer.from('y'))])).toThrow(/already announced/);
    expect(readdirSync(root)).toEqual([]);
  });

  it('symlinks - a pre-existing symlinked folder on the way is refused; nothing lands outside', async () => {
    const { r, dir } = receiver();
    const outside = tempDir('nfltr-outside-');
    mkdirSync(dir, { recursive: true });
    symlinkSync(outside, join(dir, 'sub'));
    const data = Buffer.from('payload');
    const done = r.expect([info('sub/x.txt', data)]);
    done.catch(() => {});
    await r.accept(chunk('sub/x.txt', 0, data, true));
    await expect(done).rejects.toThrow(
      'artifact sub/x.txt refused: sub is a symbolic link; nothing is written through it',
    );
    expect(readdirSync(outside)).toEqual([]);

    // The task folder itself a symlink: refused too.
    const root2 = tempDir();
    symlinkSync(outside, join(root2, 'in'));
    const r2 = new ArtifactReceiver({ dir: join(root2, 'in'), partialDir: join(root2, '.p') });
    const done2 = r2.expect([info('y.txt', data)]);
    done2.catch(() => {});
    await r2.accept(chunk('y.txt', 0, data, true));
    await expect(done2).rejects.toThrow(/is a symbolic link/);
    expect(readdirSync(outside)).toEqual([]);
  });

  it('unannounced chunks - refused with an error ack, nothing written', async () => {
    const { r, root, acks } = receiver();
    await r.accept(chunk('stray.txt', 0, Buffer.from('x'), true));
    await r.accept(chunk('../../etc/x', 0, Buffer.from('x'), true));
    expect(acks.map((a) => a.error)).toEqual([
      'artifact stray.txt was not announced; refused',
      expect.stringContaining("'..' is not allowed"),
    ]);
    expect(readdirSync(root)).toEqual([]);
  });

  it('resume - a hole asks once for a resend; repeated bytes are skipped; the partial file is kept', async () => {
    const { r, dir, acks } = receiver();
    const data = bytes(4000, 3);
    const done = r.expect([info('f.bin', data)]);
    await r.accept(chunk('f.bin', 0, data.subarray(0, 1000), false));
    await r.accept(chunk('f.bin', 2000, data.subarray(2000, 3000), false));
    await r.accept(chunk('f.bin', 3000, data.subarray(3000), true));
    expect(acks.filter((a) => a.resend).map((a) => Number(a.offset))).toEqual([1000]);
    // The sender goes back further than needed (its last ack): bytes already here are skipped.
    await r.accept(chunk('f.bin', 500, data.subarray(500, 2000), false));
    await r.accept(chunk('f.bin', 2000, data.subarray(2000), true));
    const [f] = await done;
    expect(sha(readFileSync(f!.path))).toBe(sha(data));
    expect(f!.path).toBe(join(dir, 'f.bin'));
    expect(r.stats.duplicateBytes).toBe(500);
    expect(acks.at(-1)).toMatchObject({ done: true, offset: 4000n });
  });
});

describe('artifact receiver - chunks first, listed later (results)', () => {
  it('verify - places listed files that verify and names every one that does not', async () => {
    const { r, dir, root } = receiver({ acceptUnannounced: true, maxBytes: 1_000 });
    const good = Buffer.from('hello world');
    await r.accept(chunk('logs/good.txt', 0, good.subarray(0, 5), false));
    await r.accept(chunk('logs/good.txt', 5, good.subarray(5), true));
    const bad = Buffer.from('tampered');
    await r.accept(chunk('bad.txt', 0, bad, true, sha(Buffer.from('other'))));
    const short = Buffer.from('abc');
    await r.accept(chunk('short.txt', 0, short, true));
    await r.accept(chunk('../escape.txt', 0, short, true));
    await r.accept(chunk('unlisted.txt', 0, short, true));
    const out = await r.verify([
      info('logs/good.txt', good),
      info('bad.txt', bad),
      info('short.txt', Buffer.from('abcd')),
      info('missing.txt', short),
      info('../escape.txt', short),
    ]);
    expect(out.files).toEqual([
      { name: 'logs/good.txt', size: 11, sha256: sha(good), path: join(dir, 'logs', 'good.txt') },
    ]);
    expect(readFileSync(join(dir, 'logs', 'good.txt'), 'utf8')).toBe('hello world');
    expect(out.problems).toEqual([
      expect.stringContaining("'..' is not allowed"),
      'artifact bad.txt discarded: chunk at offset 0 does not match its SHA-256',
      'artifact short.txt discarded: 3 bytes arrived, 4 were announced',
      'artifact missing.txt was announced but never arrived',
    ]);
    expect(existsSync(join(root, 'escape.txt'))).toBe(false);
    expect(readdirSync(join(root, '.partial'))).toEqual([]);
  });

  it('receiver restart - a new receiver on the same folders resumes partial files and takes whole or placed ones', async () => {
    const { r, root, dir } = receiver({ acceptUnannounced: true });
    const whole = bytes(300_000, 3);
    const partial = bytes(300_000, 4);
    const placed = Buffer.from('placed before the kill');
    await r.accept(chunk('placed.txt', 0, placed, true));
    expect((await r.verify([info('placed.txt', placed)])).problems).toEqual([]);
    await r.accept(chunk('whole.bin', 0, whole.subarray(0, 100_000), false));
    await r.accept(chunk('whole.bin', 100_000, whole.subarray(100_000), true));
    await r.accept(chunk('part.bin', 0, partial.subarray(0, 100_000), false));
    // The process dies here: nothing is aborted. A new one starts on the same folders.
    const acks: ArtifactAck[] = [];
    const again = new ArtifactReceiver({
      taskId: 't',
      dir,
      partialDir: join(root, '.partial'),
      acceptUnannounced: true,
      sendAck: (a) => acks.push(a),
    });
    // The sender resends from its acknowledged offset (here past what the disk has): asked for 100000.
    await again.accept(chunk('part.bin', 150_000, partial.subarray(150_000), true));
    expect(acks.at(-1)).toMatchObject({ name: 'part.bin', offset: 100_000n, resend: true });
    await again.accept(chunk('part.bin', 50_000, partial.subarray(50_000), true));
    expect(acks.at(-1)).toMatchObject({ name: 'part.bin', offset: 300_000n, done: true });
    expect(again.stats.duplicateBytes).toBe(50_000);
    const out = await again.verify([
      info('whole.bin', whole),
      info('part.bin', partial),
      info('placed.txt', placed),
    ]);
    expect(out.problems).toEqual([]);
    expect(out.files.map((f) => f.name)).toEqual(['whole.bin', 'part.bin', 'placed.txt']);
    for (const [f, data] of [
      [out.files[0]!, whole],
      [out.files[1]!, partial],
      [out.files[2]!, placed],
    ] as const)
      expect(sha(readFileSync(f.path))).toBe(sha(data));
    expect(readdirSync(join(root, '.partial'))).toEqual([]);
  });

  it('limit - more bytes than --max-artifact-bytes discard the file, naming the flag', async () => {
    const { r } = receiver({
      acceptUnannounced: true,
      maxBytes: 4,
      limitFlag: '--max-artifact-bytes of nfltr mcp',
    });
    const big = Buffer.from('12345');
    await r.accept(chunk('big.bin', 0, big, true));
    const out = await r.verify([info('big.bin', big)]);
    expect(out.problems).toEqual([
      'artifact big.bin discarded: larger than the limit of 4 bytes (--max-artifact-bytes of nfltr mcp)',
    ]);
  });
});

describe('artifact sender', () => {
  it('sealed channel - chunks go without their SHA-256; a corrupted one still discards the file', async () => {
    const { r, connect } = receiver();
    const { files } = localFiles({ 'x.bin': bytes(256 * 1024) });
    const hashes: string[] = [];
    const s: ArtifactSender = new ArtifactSender(files, {
      taskId: 't',
      chunkBytes: 64 * 1024,
      chunkHashes: false,
      corruptChunk: { name: 'x.bin', offset: 128 * 1024 },
      send: async (m) => {
        if (m.case !== 'artifactChunk') return;
        hashes.push(m.value.chunkSha256);
        void r.accept(m.value, true);
      },
      whenWritable: async () => {},
    });
    connect({ ack: (a) => s.onAck(a) });
    const done = r.expect(await describeFiles(files));
    done.catch(() => {});
    const report = await s.run();
    // The test hook's chunk keeps the SHA-256 taken before its byte was flipped; the others carry none.
    expect(hashes.slice(0, 3).map((h) => h.length)).toEqual([0, 0, 64]);
    await expect(done).rejects.toThrow(
      'artifact x.bin discarded: chunk at offset 131072 does not match its SHA-256',
    );
    expect(report.failed).toEqual([
      { name: 'x.bin', error: 'artifact x.bin discarded: chunk at offset 131072 does not match its SHA-256' },
    ]);
  });

  it('flow control - with nobody acknowledging, no more than the window goes out', async () => {
    const { files } = localFiles({ 'big.bin': bytes(4 * 1024 * 1024) });
    let sent = 0;
    const abort = new AbortController();
    const s = new ArtifactSender(files, {
      taskId: 't',
      send: async (m) => {
        if (m.case === 'artifactChunk') sent += m.value.data.length;
      },
      whenWritable: async () => {},
      windowBytes: 1024 * 1024,
      chunkBytes: 64 * 1024,
      signal: abort.signal,
    });
    const run = s.run();
    run.catch(() => {});
    await new Promise((res) => setTimeout(res, 300));
    expect(sent).toBe(1024 * 1024);
    abort.abort('test over');
    await expect(run).rejects.toThrow('transfer stopped: test over');
  });

  it('reading ahead - every chunk carries the bytes of the file at its offset; a file that shrinks mid-send fails, naming it', async () => {
    const data = bytes(5 * 64 * 1024 + 7, 5);
    const { files } = localFiles({ 'a.bin': data });
    const got: { offset: number; data: Uint8Array }[] = [];
    const s = new ArtifactSender(files, {
      taskId: 't',
      send: async (m) => {
        if (m.case !== 'artifactChunk') return;
        got.push({ offset: Number(m.value.offset), data: m.value.data });
        if (m.value.offset === 0n) truncateSync(files[0]!.path, 3 * 64 * 1024);
      },
      whenWritable: async () => {},
      chunkBytes: 64 * 1024,
    });
    await expect(s.run()).rejects.toThrow(`${files[0]!.path} changed while it was being sent`);
    expect(got.length).toBeGreaterThanOrEqual(2);
    for (const c of got)
      expect(Buffer.compare(c.data, data.subarray(c.offset, c.offset + c.data.length))).toBe(0);
    expect(got.map((c) => c.offset)).toEqual(got.map((_, i) => i * 64 * 1024));
  });

  it('reused read buffers - a send that is done with the data on return gets few buffers; the file arrives whole, losses included', async () => {
    const data = bytes(40 * 64 * 1024 + 9, 7);
    const { files } = localFiles({ 'r.bin': data });
    const { r, connect } = receiver();
    const done = r.expect(await describeFiles(files));
    // Two chunks lost: the resends and the read-ahead they drop must not disturb a reused buffer.
    const l = link(r, (_, n) => n === 5 || n === 17);
    connect(l);
    const buffers = new Set<ArrayBufferLike>();
    const s = new ArtifactSender(files, {
      taskId: 't',
      chunkBytes: 64 * 1024,
      stallMs: 50,
      sendConsumesData: true,
      // As a sealing end does: the bytes go on in a copy, the buffer is free once this returns.
      send: (m) => {
        if (m.case !== 'artifactChunk') return l.send(m);
        buffers.add(m.value.data.buffer);
        return l.send({ ...m, value: { ...m.value, data: Buffer.from(m.value.data) } });
      },
      whenWritable: l.whenWritable,
    });
    l.attach(s);
    expect(await s.run()).toMatchObject({ failed: [] });
    await done;
    expect(sha(readFileSync(r.files.get('r.bin')!.path))).toBe(sha(data));
    expect(buffers.size).toBeLessThan(10);
  });

  it('frame limit - chunks too large for the relay are sent again in smaller ones; below 16 KiB it fails', async () => {
    const data = bytes(3 * 1024 * 1024 + 5, 3);
    const { files } = localFiles({ 'big.bin': data });
    const { r, connect } = receiver();
    const done = r.expect(await describeFiles(files));
    const l = link(r);
    connect(l);
    // A relay started with --max-frame-bytes of 300 000: AgentClient.send refuses larger envelopes.
    const sizes = new Set<number>();
    const limited = (limit: number) => async (m: A2aBody) => {
      if (m.case === 'artifactChunk' && m.value.data.length > limit)
        throw new AgentError('too_large', `envelope exceeds the relay's frame limit of ${limit} bytes`);
      if (m.case === 'artifactChunk') sizes.add(m.value.data.length);
      return l.send(m);
    };
    const s = new ArtifactSender(files, {
      taskId: 't',
      send: limited(300_000),
      whenWritable: l.whenWritable,
    });
    l.attach(s);
    expect(await s.run()).toMatchObject({ bytesResent: 0, failed: [] });
    await done;
    expect(sha(readFileSync(r.files.get('big.bin')!.path))).toBe(sha(data));
    expect(Math.max(...sizes)).toBe(256 * 1024);

    const tiny = new ArtifactSender(files, {
      taskId: 't2',
      send: limited(1000),
      whenWritable: async () => {},
    });
    await expect(tiny.run()).rejects.toThrow("exceeds the relay's frame limit of 1000 bytes");
  });

  it('resume - frames lost on a reconnect are resent from the acknowledged offset, not from 0', async () => {
    const size = 16 * 1024 * 1024 + 123;
    const data = bytes(size, 11);
    const { files } = localFiles({ 'big.bin': data, 'small.txt': Buffer.from('small') });
    const { r, connect } = receiver();
    const infos = await describeFiles(files);
    const done = r.expect(infos);
    let lost = false;
    let sender!: ArtifactSender;
    // Chunks 40-43 (10-11 MiB) vanish with the old session; the link then comes back (resync on both ends).
    const l = link(r, (_c, n) => {
      if (n >= 40 && n < 44) {
        if (n === 43 && !lost) {
          lost = true;
          setTimeout(() => {
            sender.resync();
            r.resync();
          }, 20);
        }
        return true;
      }
      return false;
    });
    connect(l);
    sender = new ArtifactSender(files, {
      taskId: 't',
      send: l.send,
      whenWritable: l.whenWritable,
      chunkBytes: 256 * 1024,
      windowBytes: 2 * 1024 * 1024,
    });
    l.attach(sender);
    const report = await sender.run();
    await done;
    expect(sha(readFileSync(r.files.get('big.bin')!.path))).toBe(sha(data));
    expect(readFileSync(r.files.get('small.txt')!.path, 'utf8')).toBe('small');
    expect(report.bytesResent).toBeGreaterThan(0);
    // From 0 would resend at least the 10 MiB before the loss. From the acknowledged offset it is at most
    // what was in flight: a window, twice if the gap and the resync each rewind (timing decides).
    expect(report.bytesResent).toBeLessThanOrEqual(2 * 2 * 1024 * 1024 + 4 * 256 * 1024);
  });

  it('progress - reports every 5% at most, plus the end; small transfers report nothing', () => {
    const seen: number[] = [];
    const p = new ProgressThrottle(100 * 1024 * 1024, (d) => seen.push(d));
    for (let d = 0; d <= 100 * 1024 * 1024; d += 256 * 1024) p.update(d);
    expect(seen.length).toBeGreaterThanOrEqual(20);
    expect(seen.length).toBeLessThanOrEqual(21);
    expect(seen.at(-1)).toBe(100 * 1024 * 1024);
    const none: number[] = [];
    const q = new ProgressThrottle(1000, (d) => none.push(d));
    q.update(1000);
    expect(none).toEqual([]);
  });
});

describe('result files of a task', () => {
  it('resource links - files inside the task folder are returned, others are skipped', async () => {
    const task = tempDir('nfltr-task-');
    const out = join(task, 'output');
    mkdirSync(join(out, 'logs'), { recursive: true });
    mkdirSync(join(task, 'input'));
    writeFileSync(join(out, 'report.md'), 'r');
    writeFileSync(join(out, 'logs', 'unit.log'), 'u');
    writeFileSync(join(task, 'input', 'data.csv'), 'd');
    symlinkSync('/etc/hostname', join(out, 'escape.txt'));
    const outside = join(tempDir(), 'outside.txt');
    writeFileSync(outside, 'o');
    symlinkSync(outside, join(task, 'link-out.txt'));
    const link = (p: string) => ({ type: 'resource_link', uri: pathToFileURL(p).href, name: 'x' });
    const listing = await collectResultFiles({
      taskDir: task,
      outputDir: out,
      content: [
        { type: 'text', text: 'done' },
        link(join(out, 'report.md')),
        link(join(task, 'input', 'data.csv')),
        link(outside),
        link(join(task, 'link-out.txt')),
        { type: 'resource_link', uri: 'https://example.com/x', name: 'web' },
      ],
    });
    expect(listing.files.map((f) => f.name)).toEqual(['logs/unit.log', 'report.md', 'input/data.csv']);
    expect(listing.skipped).toEqual([
      'escape.txt (symbolic link)',
      expect.stringContaining('outside.txt (outside the task folder'),
      expect.stringContaining('link-out.txt (outside the task folder'),
    ]);
    // Two different files under one name are refused.
    mkdirSync(join(out, 'input'));
    writeFileSync(join(out, 'input', 'data.csv'), 'other');
    await expect(
      collectResultFiles({ taskDir: task, outputDir: out, content: [link(join(task, 'input', 'data.csv'))] }),
    ).rejects.toThrow('two result files are named "input/data.csv"');
  });
});
