/**
 * @module Durations in messages (`timed out after 10m`). Parsing flags is the CLI's job (cli/options.ts).
 */

/** Formats milliseconds as the shortest of `500ms`, `30s`, `5m`, `1h`, or combined (`1h30m`). */
export function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)}ms`;
  let rest = Math.round(ms / 1000);
  const h = Math.floor(rest / 3600);
  rest -= h * 3600;
  const m = Math.floor(rest / 60);
  const s = rest - m * 60;
  return `${h ? `${h}h` : ''}${m ? `${m}m` : ''}${s ? `${s}s` : ''}`;
}
