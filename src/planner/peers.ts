/**
 * @module Discovery through the relay's HTTP API (`GET /api/v1/peers`), and label selectors
 * (`k=v,k!=v`) for choosing workers.
 */
import { labelsProblem } from '../protocol/control.js';
import { relayRequest } from '../util/relay-request.js';
import { PlannerError } from './errors.js';

export interface Peer {
  agent_id: string;
  kind: string;
  labels: Record<string, string>;
  connected_since: string;
  last_seen: string;
}

export interface SelectorTerm {
  key: string;
  op: '=' | '!=';
  value: string;
}

/**
 * Parses `k=v,k!=v` (terms joined by commas; all must hold). `k!=v` also matches peers without `k`.
 * Throws {@link PlannerError} `invalid_argument` quoting the bad term.
 */
export function parseSelector(selector: string): SelectorTerm[] {
  const terms: SelectorTerm[] = [];
  const parts = selector.split(',').map((p) => p.trim());
  if (parts.length === 1 && parts[0] === '') return terms;
  const bad = (part: string, why: string) =>
    new PlannerError(
      'invalid_argument',
      `bad selector term ${JSON.stringify(part)} in ${JSON.stringify(selector)}: ${why}; expected key=value ` +
        'or key!=value terms separated by commas, e.g. "zone=eu,gpu!=none"',
    );
  for (const part of parts) {
    const m = /^(.*?)\s*(!=|=)\s*(.*)$/.exec(part);
    if (!m) throw bad(part, 'no = or != in it');
    const [, key = '', op, value = ''] = m;
    // The key follows the label rules; a value with = or != in it is a typo (a==b, a=b=c), not a label.
    const problem = labelsProblem({ [key]: value });
    if (problem) throw bad(part, problem);
    if (/!?=/.test(value)) throw bad(part, `the value ${JSON.stringify(value)} has a second = in it`);
    terms.push({ key, op: op as '=' | '!=', value });
  }
  return terms;
}

export const matchesSelector = (labels: Record<string, string>, terms: SelectorTerm[]): boolean =>
  terms.every((t) => (t.op === '=' ? labels[t.key] === t.value : labels[t.key] !== t.value));

/** Reads the calling account's peers from the relay's HTTP API. */
export class PeerDirectory {
  readonly #url: string | undefined;
  readonly #apiKey: string;
  #recent: { at: number; peers: Peer[] } | undefined;
  #refreshing: Promise<Peer[]> | undefined;

  readonly #ca: Buffer | undefined;

  /** `ca`: the PEM CA to trust for an `https://` proxy URL (`--tls-ca`), besides the system's. */
  constructor(opts: { proxyUrl?: string; apiKey: string; ca?: Buffer }) {
    this.#url = opts.proxyUrl?.replace(/\/+$/, '');
    this.#ca = opts.ca;
    this.#apiKey = opts.apiKey;
  }

  get configured(): boolean {
    return this.#url !== undefined;
  }

  /**
   * The last fetched list, refetched in the background once older than `maxAgeMs`: a dispatch checks
   * its worker against it instead of waiting for an HTTP round trip. Callers refetch (`list()`) when
   * the peer they need is missing; one that left since is reported by the send itself.
   */
  async recent(maxAgeMs: number): Promise<Peer[]> {
    if (!this.#recent) return this.list();
    if (Date.now() - this.#recent.at > maxAgeMs && !this.#refreshing) {
      this.#refreshing = this.list()
        .catch(() => [])
        .finally(() => {
          this.#refreshing = undefined;
        });
    }
    return this.#recent.peers;
  }

  /** The relay's `GET /healthz` as this key sees it (its agents, store, bus, usage). */
  async health(): Promise<Record<string, unknown>> {
    if (!this.#url) throw new PlannerError('relay_unreachable', 'no relay HTTP API address (--proxy-url)');
    const url = `${this.#url}/healthz`;
    let res: { status: number; ok: boolean; text: string };
    try {
      res = await relayRequest(url, { headers: { authorization: `ApiKey ${this.#apiKey}` }, ca: this.#ca });
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      throw new PlannerError(
        'relay_unreachable',
        `relay HTTP API unreachable at ${url}: ${e.code ?? e.message}`,
      );
    }
    let body: Record<string, unknown> & { error?: { message?: string } } = {};
    try {
      body = JSON.parse(res.text);
    } catch {}
    if (!res.ok) {
      const code = res.status === 401 ? 'unauthenticated' : 'relay_unreachable';
      throw new PlannerError(
        code,
        `relay at ${url} answered ${res.status}: ${body.error?.message ?? res.text.slice(0, 200)}`,
      );
    }
    return body;
  }

  async list(): Promise<Peer[]> {
    if (!this.#url) {
      throw new PlannerError(
        'relay_unreachable',
        "no relay HTTP API address: start nfltr mcp with --proxy-url (the relay's HTTP address)",
      );
    }
    const url = `${this.#url}/api/v1/peers`;
    let res: { status: number; ok: boolean; text: string };
    try {
      res = await relayRequest(url, { headers: { authorization: `ApiKey ${this.#apiKey}` }, ca: this.#ca });
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      const why = e.code ?? e.message;
      const fix = /CERT|SELF_SIGNED|UNABLE_TO_VERIFY/.test(why)
        ? "the relay's certificate is not trusted here: pass --tls-ca FILE with the CA that signed it"
        : 'check --proxy-url and that the relay is running, then retry';
      throw new PlannerError('relay_unreachable', `relay HTTP API unreachable at ${url}: ${why}; ${fix}`);
    }
    const text = res.text;
    let body: { peers?: Peer[]; error?: { code?: string; message?: string } } = {};
    try {
      body = JSON.parse(text);
    } catch {}
    if (res.status === 401) {
      throw new PlannerError(
        'unauthenticated',
        `the relay at ${this.#url} refused the API key: ${body.error?.message ?? 'unauthenticated'}; check NFLTR_API_KEY`,
      );
    }
    if (!res.ok || !Array.isArray(body.peers)) {
      throw new PlannerError(
        'relay_unreachable',
        `relay HTTP API at ${url} answered ${res.status}: ${body.error?.message ?? text.slice(0, 200)}`,
      );
    }
    this.#recent = { at: Date.now(), peers: body.peers };
    return body.peers;
  }
}
