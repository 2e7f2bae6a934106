/**
 * @module probe_worker: one Probe out, its ProbeResult matched by id, and a worker that does not answer
 * in time reported unavailable (not an error: an overloaded worker is a fact the planner acts on).
 */
import { randomUUID } from 'node:crypto';
import { create } from '@bufbuild/protobuf';
import type { A2aBody } from '../agent/index.js';
import { type ProbeResult, ProbeSchema } from '../protocol/a2a.js';

export interface ProbeReport {
  agent_id: string;
  available: boolean;
  free_slots?: number;
  max_tasks?: number;
  protocol?: string;
  tool?: string;
  labels?: Record<string, string>;
  executor_healthy?: boolean;
  executor_error?: string;
  /** The executor's own check_ready (credentials…); reason and fix when false. */
  executor_ready?: boolean;
  executor_reason?: string;
  executor_fix?: string;
  draining?: boolean;
  round_trip_ms: number | null;
  /** Why the worker is reported unavailable, when it is. */
  reason?: string;
}

interface PendingProbe {
  peer: string;
  resolve: (r: ProbeReport) => void;
  reject: (err: Error) => void;
}

const plural = (n: number, one: string) => `${n} ${one}${n === 1 ? '' : 's'}`;

/** Why a worker that answered is unavailable, in words the planner can act on. */
function unavailableReason(v: ProbeResult): string | undefined {
  if (v.available) return undefined;
  if (v.draining) return 'the worker is draining (shutting down)';
  if (!v.executorHealthy) return `the executor is unhealthy${v.executorError ? `: ${v.executorError}` : ''}`;
  if (!v.executorReady) {
    return `the executor is not ready: ${v.executorReason || 'no reason given'}${v.executorFix ? ` (fix: ${v.executorFix})` : ''}`;
  }
  if (v.freeSlots === 0) return `all ${plural(v.maxTasks, 'slot')} busy`;
  return 'the worker reports it is unavailable';
}

export class Probes {
  readonly #pending = new Map<string, PendingProbe>();

  /**
   * Sends one probe with `send` and resolves with the worker's report, or with `available: false` after
   * `timeoutMs`; rejects when the send fails (`sendError` names why).
   */
  async probe(
    agentId: string,
    timeoutMs: number,
    send: (msg: A2aBody) => Promise<void>,
    sendError: (err: Error) => Error,
  ): Promise<ProbeReport> {
    const probeId = randomUUID();
    const started = performance.now();
    let timer: NodeJS.Timeout | undefined;
    try {
      return await new Promise<ProbeReport>((resolve, reject) => {
        this.#pending.set(probeId, { peer: agentId, resolve, reject });
        timer = setTimeout(
          () =>
            resolve({
              agent_id: agentId,
              available: false,
              round_trip_ms: null,
              reason: `no probe answer within ${timeoutMs / 1000} s: the worker is overloaded, stuck or gone`,
            }),
          timeoutMs,
        );
        send({ case: 'probe', value: create(ProbeSchema, { probeId }) }).catch((err: Error) =>
          reject(sendError(err)),
        );
      }).then((r) =>
        r.round_trip_ms === null && r.available ? { ...r, round_trip_ms: performance.now() - started } : r,
      );
    } finally {
      clearTimeout(timer);
      this.#pending.delete(probeId);
    }
  }

  /** A ProbeResult from `peer`; one that answers no probe of ours (or another peer's) is ignored. */
  onResult(peer: string, v: ProbeResult): void {
    const p = this.#pending.get(v.probeId);
    if (!p || p.peer !== peer) return;
    p.resolve({
      agent_id: peer,
      available: v.available,
      free_slots: v.freeSlots,
      max_tasks: v.maxTasks,
      protocol: v.protocol,
      tool: v.tool,
      labels: { ...v.labels },
      executor_healthy: v.executorHealthy,
      executor_error: v.executorError || undefined,
      executor_ready: v.executorReady,
      executor_reason: v.executorReason || undefined,
      executor_fix: v.executorFix || undefined,
      draining: v.draining,
      round_trip_ms: null,
      reason: unavailableReason(v),
    });
  }

  /** Fails the probes waiting on `peer` (every probe when `peer` is undefined). */
  fail(peer: string | undefined, err: Error): void {
    for (const p of this.#pending.values()) if (peer === undefined || p.peer === peer) p.reject(err);
  }
}
