/**
 * @module Flag parsers and defaults shared by every command. Parsers quote the value they got and
 * name the flag, so a typo is fixed from the message alone.
 */
import { homedir } from 'node:os';
import { join } from 'node:path';
import { InvalidArgumentError, Option } from 'commander';

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/**
 * Parses `250ms`, `15s`, `20m`, `1h` into milliseconds. A bare number is refused (`--timeout 30` once
 * meant 30 ms), except 0.
 */
export function parseDuration(value: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(value.trim());
  if (!m || (!m[2] && Number(m[1]) !== 0))
    throw new InvalidArgumentError(
      `expected a duration like 500ms, 15s or 20m (a number needs its unit), got ${JSON.stringify(value)}`,
    );
  return Math.round(Number(m[1]) * UNITS[m[2] ?? 'ms']!);
}

const BYTE_UNITS: Record<string, number> = {
  '': 1,
  k: 1024,
  ki: 1024,
  m: 1024 ** 2,
  mi: 1024 ** 2,
  g: 1024 ** 3,
  gi: 1024 ** 3,
};

/** Parses a positive size in bytes: `65536`, `512KiB`, `64MiB`, `1GiB` (`k`, `m`, `g` and a trailing `B` are accepted). */
export function parseBytes(value: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*(k|ki|m|mi|g|gi)?b?$/i.exec(value.trim());
  const n = m ? Math.round(Number(m[1]) * BYTE_UNITS[(m[2] ?? '').toLowerCase()]!) : 0;
  if (!m || n <= 0)
    throw new InvalidArgumentError(
      `expected a size like 65536, 512KiB or 64MiB, got ${JSON.stringify(value)}`,
    );
  return n;
}

/** `--p2p-threshold`: a size (files above it try the direct path), or `off`. */
export function parseP2pThreshold(value: string): number {
  if (value.trim() === 'off') return Number.POSITIVE_INFINITY;
  try {
    return parseBytes(value);
  } catch {
    throw new InvalidArgumentError(
      `expected a size like 8MiB or 512KiB, or off, got ${JSON.stringify(value)}`,
    );
  }
}

/** `--p2p-threshold`'s default: 8 MiB. */
export const DEFAULT_P2P_THRESHOLD = 8 * 1024 ** 2;

/** The `--p2p-threshold` option of `nfltr mcp` and `nfltr worker`. */
export function p2pThresholdOption(what: string): Option {
  return new Option(
    '--p2p-threshold <size>',
    `${what} above this size go machine to machine when the two ends reach each other, else through the relay (the sending end's threshold decides); off: no direct link either way`,
  )
    .argParser(parseP2pThreshold)
    .env('NFLTR_P2P_THRESHOLD')
    .default(DEFAULT_P2P_THRESHOLD, '8MiB');
}

export function parsePositiveInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n <= 0)
    throw new InvalidArgumentError(`expected a positive integer, got ${JSON.stringify(value)}`);
  return n;
}

/** Parses `k=v,k=v` into labels. */
export function parseLabels(value: string): Record<string, string> {
  const labels: Record<string, string> = {};
  for (const part of value
    .split(',')
    .map((p) => p.trim())
    .filter(Boolean)) {
    const eq = part.indexOf('=');
    if (eq <= 0)
      throw new InvalidArgumentError(`expected k=v pairs separated by commas, got ${JSON.stringify(part)}`);
    const key = part.slice(0, eq).trim();
    if (key in labels) throw new InvalidArgumentError(`label ${JSON.stringify(key)} is given twice`);
    labels[key] = part.slice(eq + 1).trim();
  }
  return labels;
}

/** An http(s) URL, e.g. the relay's HTTP API for `--proxy-url`. */
export function parseUrl(value: string): string {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new InvalidArgumentError(
      `expected an http(s) URL like https://nfltr.xyz, got ${JSON.stringify(value)}`,
    );
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new InvalidArgumentError(`expected an http or https URL, got ${JSON.stringify(value)}`);
  }
  return value.replace(/\/+$/, '');
}

/** Rows as columns padded to their widest cell, two spaces apart: the table of `keys list` and `peers`. */
export function formatTable(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows
    .map(
      (r) =>
        `${r
          .map((c, i) => c.padEnd(widths[i]!))
          .join('  ')
          .trimEnd()}\n`,
    )
    .join('');
}

export const nfltrHome = (...parts: string[]): string => join(homedir(), '.nfltr', ...parts);

/** Exits with a message on stderr: the one way commands report a fatal error. */
export function die(message: string, code = 1): never {
  process.stderr.write(`nfltr: ${message}\n`);
  process.exit(code);
}
