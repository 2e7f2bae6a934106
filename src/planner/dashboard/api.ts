/**
 * @module The relay's Control Tower API (`/api/v1/orchestration/…`, relay/orchestration.ts) as the planner
 * and `nfltr orch` use it. It moves ciphertext only: sealing is protocol/dashboard.ts.
 */
import type { FleetWorkerJson, SealedDigestJson } from '../../protocol/dashboard.js';
import { relayRequest } from '../../util/relay-request.js';
import { PlannerError } from '../errors.js';

export class DashboardApi {
  readonly #base: string;
  readonly #headers: Record<string, string>;
  readonly #ca: Buffer | undefined;

  constructor(opts: { proxyUrl: string; apiKey: string; ca?: Buffer }) {
    this.#base = `${opts.proxyUrl.replace(/\/+$/, '')}/api/v1/orchestration`;
    this.#headers = { authorization: `ApiKey ${opts.apiKey}` };
    this.#ca = opts.ca;
  }

  async #call<T>(method: string, path: string, body?: unknown): Promise<T> {
    const url = `${this.#base}/${path}`;
    let res: Awaited<ReturnType<typeof relayRequest>>;
    try {
      res = await relayRequest(url, { method, headers: this.#headers, body, ca: this.#ca });
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      throw new PlannerError(
        'relay_unreachable',
        `relay HTTP API unreachable at ${url}: ${e.code ?? e.message}`,
      );
    }
    let parsed: { error?: { message?: string } } = {};
    try {
      parsed = JSON.parse(res.text);
    } catch {}
    if (!res.ok) {
      const code =
        res.status === 401 ? 'unauthenticated' : res.status < 500 ? 'invalid_argument' : 'relay_unreachable';
      throw new PlannerError(
        code,
        `relay answered ${res.status} to ${method} ${url}: ${parsed.error?.message ?? res.text.slice(0, 200)}`,
      );
    }
    return parsed as T;
  }

  register(plannerId: string, tokenSha256: string): Promise<unknown> {
    return this.#call('PUT', `planners/${encodeURIComponent(plannerId)}`, { token_sha256: tokenSha256 });
  }

  push(plannerId: string, digests: { task_id: string; sealed: string }[]): Promise<{ rev: number }> {
    return this.#call('POST', `planners/${encodeURIComponent(plannerId)}/digests`, { digests });
  }

  async pull(plannerId: string): Promise<{ id: number; created_at: string; sealed: string }[]> {
    return (
      await this.#call<{ commands: { id: number; created_at: string; sealed: string }[] }>(
        'GET',
        `planners/${encodeURIComponent(plannerId)}/commands`,
      )
    ).commands;
  }

  ack(plannerId: string, ids: number[]): Promise<{ acked: number }> {
    return this.#call('POST', `planners/${encodeURIComponent(plannerId)}/commands/ack`, { ids });
  }

  queue(plannerId: string, sealed: string): Promise<{ id: number }> {
    return this.#call('POST', `planners/${encodeURIComponent(plannerId)}/commands`, { sealed });
  }

  tasks(plannerId?: string, after = 0): Promise<{ tasks: SealedDigestJson[]; rev: number; more: boolean }> {
    const q = new URLSearchParams({ after: String(after) });
    if (plannerId) q.set('planner', plannerId);
    return this.#call('GET', `tasks?${q}`);
  }

  async fleet(): Promise<FleetWorkerJson[]> {
    return (await this.#call<{ workers: FleetWorkerJson[] }>('GET', 'fleet')).workers;
  }
}
