/**
 * @module Logging to stderr. stdout belongs to program output (and to MCP in `nfltr mcp`), so every
 * component logs through an injected {@link Logger}, never `console.log`.
 */

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
  child(component: string): Logger;
}

const ORDER: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

function levelFromEnv(): LogLevel {
  const v = process.env.NFLTR_LOG_LEVEL?.toLowerCase();
  return v === 'debug' || v === 'info' || v === 'warn' || v === 'error' ? v : 'info';
}

export type LogFormat = 'text' | 'json';

/** NFLTR_LOG_FORMAT (set by `--log-format`): `json` for one JSON object a line, else text. */
const formatFromEnv = (): LogFormat =>
  process.env.NFLTR_LOG_FORMAT?.toLowerCase() === 'json' ? 'json' : 'text';

/** JSON.stringify that never throws: BigInts become strings, Errors their message. */
function toJson(v: unknown): string | undefined {
  try {
    return JSON.stringify(v, (_k, x) =>
      typeof x === 'bigint' ? x.toString() : x instanceof Error ? x.message : x,
    );
  } catch {
    return '"[unprintable]"';
  }
}

function formatValue(v: unknown): string {
  if (v instanceof Error) return JSON.stringify(v.message);
  if (typeof v === 'string') return /^[\w.:/@-]+$/.test(v) ? v : JSON.stringify(v);
  if (typeof v === 'bigint') return v.toString();
  // A log line must never throw: BigInts inside objects become strings, anything else unprintable is named.
  return toJson(v) ?? String(v);
}

/**
 * A logger writing `time level component: message k=v …` lines (or, in `json` format, one object a line
 * with time, level, component, msg and the fields) to `sink` (stderr by default).
 */
export function createLogger(
  component: string,
  opts: { level?: LogLevel; format?: LogFormat; sink?: (line: string) => void } = {},
): Logger {
  const level = opts.level ?? levelFromEnv();
  const format = opts.format ?? formatFromEnv();
  const sink = opts.sink ?? ((line: string) => process.stderr.write(line));
  const emit = (lvl: LogLevel, msg: string, fields?: Record<string, unknown>) => {
    if (ORDER[lvl] < ORDER[level]) return;
    const time = new Date().toISOString();
    if (format === 'json') {
      // Fields first, so a field named like a fixed key cannot replace it.
      sink(`${toJson({ ...fields, time, level: lvl, component, msg })}\n`);
      return;
    }
    const kv = fields
      ? Object.entries(fields)
          .filter(([, v]) => v !== undefined)
          .map(([k, v]) => ` ${k}=${formatValue(v)}`)
          .join('')
      : '';
    sink(`${time} ${lvl.padEnd(5)} ${component}: ${msg}${kv}\n`);
  };
  return {
    debug: (m, f) => emit('debug', m, f),
    info: (m, f) => emit('info', m, f),
    warn: (m, f) => emit('warn', m, f),
    error: (m, f) => emit('error', m, f),
    child: (c) => createLogger(`${component}.${c}`, { level, format, sink }),
  };
}

/** A logger that drops everything; for tests and library callers that pass none. */
export const silentLogger: Logger = {
  debug: () => {},
  info: () => {},
  warn: () => {},
  error: () => {},
  child: () => silentLogger,
};
