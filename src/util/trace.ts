/**
 * @module `NFLTR_TRACE=1`: each process on a dispatch's path writes one stderr line per hop of each
 * task-channel message (`nfltr-trace <hop> <channel> <epoch ms, µs precision>`), which `npm run bench`
 * joins into a per-hop trace of one dispatch. Off, a trace point costs one branch.
 */
export const TRACING = process.env.NFLTR_TRACE === '1';

/** Records that `channel`'s message passed `hop` now (no-op unless {@link TRACING}). */
export function trace(hop: string, channel: string): void {
  if (!TRACING) return;
  const t = performance.timeOrigin + performance.now();
  process.stderr.write(`nfltr-trace ${hop} ${channel} ${t.toFixed(3)}\n`);
}
