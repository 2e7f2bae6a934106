/**
 * Filesystem errors say what is wrong with which path and name the flag: the shared checks in-process,
 * then real `nfltr` commands (relay --data-dir, keys --data-dir, worker and mcp --state-dir, demo --dir,
 * key files). Permission cases run as the user `nobody` (setpriv), since root may write anywhere.
 */
import { execFile } from 'node:child_process';
import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';
import { readFlagFile, writableDir } from '../../src/util/fs-check.js';
import { NFLTR_BIN, nfltr, tempDir } from '../helpers/processes.js';

const run = promisify(execFile);
let root: string;
let readOnly: string;
let secret: string;

/** `nfltr …` as the user nobody; its exit code and stderr. */
async function asNobody(args: string[], env: NodeJS.ProcessEnv = {}) {
  try {
    await run(
      'setpriv',
      ['--reuid=nobody', '--regid=nogroup', '--clear-groups', process.execPath, NFLTR_BIN, ...args],
      { env: { ...process.env, NFLTR_CREDENTIALS: join(root, 'no-login.json'), NFLTR_API_KEY: 'k', ...env } },
    );
    return { code: 0, stderr: '' };
  } catch (err) {
    const e = err as { code: number; stderr: string };
    return { code: e.code, stderr: e.stderr.trim() };
  }
}

beforeAll(() => {
  root = tempDir();
  chmodSync(root, 0o755);
  readOnly = join(root, 'ro');
  mkdirSync(readOnly, { mode: 0o555 });
  chmodSync(readOnly, 0o555);
  secret = join(root, 'root-only-key');
  writeFileSync(secret, 'k\n', { mode: 0o600 });
});

describe('the shared checks', () => {
  it('refuse a kernel file system before touching it', () => {
    expect(() => writableDir('/proc/nfltr', '--data-dir')).toThrow(
      '--data-dir /proc/nfltr: refused: /proc is a kernel file system, not storage; choose a folder on disk',
    );
    expect(() => writableDir('/sys/x', '--state-dir')).toThrow(/refused: \/sys is a kernel file system/);
  });

  it('a file where a folder is wanted, and a folder or nothing where a file is', () => {
    const file = join(tempDir(), 'f');
    writeFileSync(file, '');
    expect(() => writableDir(file, '--dir')).toThrow(`--dir ${file}: exists and is not a folder`);
    expect(() => writableDir(join(file, 'sub'), '--dir')).toThrow(`not a folder: ${file} is a file`);
    expect(() => readFlagFile(join(root, 'missing'), '--tls-ca')).toThrow(
      `--tls-ca ${join(root, 'missing')}: does not exist`,
    );
    expect(() => readFlagFile(root, '--api-key-file')).toThrow(
      `--api-key-file ${root}: is a folder, not a file`,
    );
  });
});

describe('commands', () => {
  it('relay --data-dir under /proc exits at once instead of hanging', async () => {
    const r = await nfltr(['relay', '--data-dir', '/proc/nfltr', '--grpc-addr', '127.0.0.1:0']);
    expect(r.code).toBe(1);
    expect(r.stderr.trim()).toBe(
      'nfltr: --data-dir /proc/nfltr: refused: /proc is a kernel file system, not storage; choose a folder on disk',
    );
  });

  it('a read-only folder is not writable, naming the flag, for every folder flag', async () => {
    const notWritable = (flag: string, path: string) =>
      `${flag} ${path}: not writable by user nobody: permission denied`;
    const relay = await asNobody([
      'relay',
      '--data-dir',
      join(readOnly, 'relay'),
      '--grpc-addr',
      '127.0.0.1:0',
    ]);
    expect(relay.code).toBe(1);
    expect(relay.stderr).toContain(notWritable('--data-dir', join(readOnly, 'relay')));
    const keys = await asNobody(['keys', 'create', '--account', 'a', '--init', '--data-dir', readOnly]);
    expect(keys.stderr).toContain(notWritable('--data-dir', readOnly));
    const demo = await asNobody(['demo', '--dir', readOnly]);
    expect(demo.code).toBe(1);
    expect(demo.stderr).toContain(notWritable('--dir', readOnly));
    const worker = await asNobody([
      'worker',
      '--server',
      '127.0.0.1:1',
      '--state-dir',
      join(readOnly, 'w'),
      '--mcp-command',
      'nfltr shell-mcp',
    ]);
    expect(worker.code).toBe(2);
    expect(worker.stderr).toContain(notWritable('--state-dir', join(readOnly, 'w')));
  });

  it('a key file this user cannot read, or that does not exist', async () => {
    const args = (file: string) => [
      'worker',
      '--server',
      '127.0.0.1:1',
      '--api-key-file',
      file,
      '--mcp-command',
      'x',
    ];
    const unreadable = await asNobody(args(secret), { NFLTR_API_KEY: '' });
    expect(unreadable.code).toBe(2);
    expect(unreadable.stderr).toBe(
      `nfltr: --api-key-file ${secret}: not readable by user nobody: permission denied`,
    );
    const missing = await nfltr(args(join(root, 'nope')), { env: { NFLTR_API_KEY: '' } });
    expect(missing.code).toBe(2);
    expect(missing.stderr.trim()).toBe(`nfltr: --api-key-file ${join(root, 'nope')}: does not exist`);
  });
});
