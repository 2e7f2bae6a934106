/**
 * @module Folders and files given by flags, checked up front so a failure says what is wrong with which
 * path and which flag to change, not `ENOENT` or "unable to open database file" (or nothing: SQLite
 * under /proc hangs).
 */
import { accessSync, constants, mkdirSync, readFileSync, statSync } from 'node:fs';
import { userInfo } from 'node:os';
import { dirname, resolve } from 'node:path';

/** Kernel file systems: no place for state (files there are not storage; some reads block forever). */
const KERNEL_FS = ['/proc', '/sys', '/dev'];

const whoami = (): string => {
  try {
    return userInfo().username;
  } catch {
    return `uid ${process.getuid?.()}`;
  }
};

/** The file that stands where `path` wants a folder (ENOTDIR names the whole path). */
function fileInPath(path: string): string {
  for (let p = resolve(path); p !== dirname(p); p = dirname(p)) {
    try {
      if (!statSync(p).isDirectory()) return p;
    } catch {}
  }
  return path;
}

/** What an fs error means for `path`, in words; `writing` tells a folder to write in from a file to read. */
export function fsProblem(path: string, err: NodeJS.ErrnoException, writing: boolean): string {
  const at = err.path && resolve(err.path) !== resolve(path) ? ` (at ${err.path})` : '';
  switch (err.code) {
    case 'ENOENT':
      return `does not exist${at}`;
    case 'EACCES':
    case 'EPERM':
      return `not ${writing ? 'writable' : 'readable'} by user ${whoami()}: permission denied${at}`;
    case 'EROFS':
      return `not writable: on a read-only file system${at}`;
    case 'ENOTDIR':
      return `not a folder: ${fileInPath(path)} is a file`;
    case 'EEXIST':
      return `exists and is not a folder${at}`;
    case 'EISDIR':
      return 'is a folder, not a file';
    default:
      return `${err.code ?? 'error'}: ${err.message}`;
  }
}

/**
 * Makes `dir` (and its parents) if needed and checks that this user can write in it; throws one line
 * naming the flag and the path. `mode` applies to folders made here only.
 */
export function writableDir(dir: string, flag: string, mode?: number): string {
  const abs = resolve(dir);
  const kernel = KERNEL_FS.find((k) => abs === k || abs.startsWith(`${k}/`));
  if (kernel)
    throw new Error(
      `${flag} ${dir}: refused: ${kernel} is a kernel file system, not storage; choose a folder on disk`,
    );
  try {
    mkdirSync(abs, { recursive: true, mode });
    accessSync(abs, constants.W_OK | constants.X_OK);
  } catch (err) {
    throw new Error(`${flag} ${dir}: ${fsProblem(abs, err as NodeJS.ErrnoException, true)}`);
  }
  return abs;
}

/** Reads a file a flag names; throws one line naming the flag and what is wrong with the path. */
export function readFlagFile(file: string, flag: string): Buffer {
  try {
    return readFileSync(file);
  } catch (err) {
    throw new Error(`${flag} ${file}: ${fsProblem(file, err as NodeJS.ErrnoException, false)}`);
  }
}
