/**
 * @module Control Tower wire format: task digests a planner pushes to the relay and commands it pulls
 * back, sealed with a dashboard key that travels only in the dashboard link's fragment (`#k=…`).
 *
 * Protocol flow. The planner registers its dashboard with the relay (`PUT /api/v1/orchestration/planners/
 * <planner>`, API key): the SHA-256 of the link's access token, nothing secret. On every change of a task
 * (at most every few seconds) it pushes the task's sealed digest (`POST …/digests`); every ~2 s it pulls
 * the sealed commands queued for it (`GET …/commands`) and acks each one once (`POST …/commands/ack`).
 * The page (assets/dashboard/page.js) presents the access token (or an API key of the account), reads the
 * sealed digests and the live feed (`…/events`, Server-Sent Events), and queues sealed commands. The relay
 * keeps the routing metadata it has anyway (account, planner id, task id, when) and ciphertext:
 *
 *   sealed = nonce(12, random) ‖ AES-256-GCM(k_purpose, nonce, aad) , base64url in JSON
 *   digest:  k_digest  = HKDF-SHA256(k, "", "nfltr-dash digest"),  aad "nfltr-dash/1 digest <planner> <task>"
 *   command: k_command = HKDF-SHA256(k, "", "nfltr-dash command"), aad "nfltr-dash/1 command <planner>"
 *   token   = HKDF-SHA256(k, "", "nfltr-dash access")
 *
 * The aad binds each digest to its task and each command to its planner: a relay swapping them is caught.
 * A command carries a random id and its time; the planner runs each id once and refuses old ones, so a
 * replayed ciphertext does nothing. Pure: no I/O.
 */
import { randomBytes } from 'node:crypto';
import { gcmOpen, gcmSeal, hkdf, linkToken, parseLinkKey } from './link-crypto.js';

export const DASH_TOKEN_INFO = 'nfltr-dash access';
const NONCE_BYTES = 12;

/** Largest sealed digest the relay stores (base64url characters). */
export const MAX_DIGEST_CHARS = 64 * 1024;
/** Largest sealed command the relay queues (base64url characters). */
export const MAX_COMMAND_CHARS = 32 * 1024;
/** Digests kept per planner; the least recently updated go first. */
export const MAX_DIGESTS_PER_PLANNER = 500;
/** Commands queued and not yet acked, per planner. */
export const MAX_PENDING_COMMANDS = 100;
/** Digests in one push. */
export const MAX_DIGESTS_PER_PUSH = 16;
/** A command older than this (by its own clock) is refused by the planner. */
export const COMMAND_MAX_AGE_MS = 10 * 60_000;

/** How much a digest says: `status` leaves out every text (objective, progress, question, result). */
export type DigestLevel = 'full' | 'status';

export interface DigestEvent {
  seq: number;
  state: string;
  time: number;
  message?: string;
  progress?: number;
  total?: number;
  question?: string;
  reason?: string;
}

/** One task as the dashboard shows it (the plaintext of a sealed digest). */
export interface TaskDigest {
  v: 1;
  level: DigestLevel;
  task_id: string;
  worker: string;
  /** null while the worker has not accepted it yet. */
  state: string | null;
  created_at: number;
  updated_at: number;
  last_seq: number;
  counts: { events: number; artifacts: number };
  reason?: string;
  // full only:
  objective?: string;
  /** The last events, numbered; `counts.events` says how many there are in all. */
  events?: DigestEvent[];
  pending?: { seq: number; question: string; schema: unknown };
  result?: { text: string; truncated: boolean; structured?: unknown };
  artifacts?: { name: string; size: number; sha256: string }[];
  message?: string;
  usage?: Record<string, unknown>;
  timeout_ms?: number;
}

/** What the page (or `nfltr orch`) asks the planner to do. */
export type DashboardCommand =
  | { v: 1; id: string; at: number; type: 'cancel'; task_id: string; reason?: string }
  | { v: 1; id: string; at: number; type: 'answer'; task_id: string; seq: number; content: unknown }
  | {
      v: 1;
      id: string;
      at: number;
      type: 'dispatch';
      /** Chosen by the sender, so it can follow the task. */
      task_id: string;
      worker: string;
      objective: string;
      timeout_ms?: number;
    };

/** Digest id of the planner's command outcomes: never a task id (those start with a letter or digit). */
export const OUTCOMES_ID = '_commands';

/** What became of a command, as the planner reports it (sealed like a digest, under {@link OUTCOMES_ID}). */
export interface CommandOutcome {
  id: string;
  type: string;
  task_id?: string;
  ok: boolean;
  /** What happened, or why it was refused. */
  note: string;
  at: number;
}

/** A sealed digest as the relay serves it (`GET …/tasks`, the feed's `digest` events). */
export interface SealedDigestJson {
  planner_id: string;
  task_id: string;
  rev: number;
  updated_at: string;
  sealed: string;
}

/** A worker as the relay's `GET …/fleet` lists it: presence and labels, nothing sealed. */
export interface FleetWorkerJson {
  agent_id: string;
  labels: Record<string, string>;
  connected_since: string;
  last_seen: string;
  max_tasks: number | null;
  load_pct: number | null;
}

/** Distributes Omit over the union, so each command keeps its own fields. */
type Unsent<T> = T extends unknown ? Omit<T, 'v' | 'id' | 'at'> : never;
export type CommandBody = Unsent<DashboardCommand>;

export const dashboardToken = (k: Uint8Array): string => linkToken(k, DASH_TOKEN_INFO);

/** The dashboard link: the key rides in the fragment, which browsers never send to the relay. */
export const dashboardLink = (relayUrl: string, k: Uint8Array, taskId?: string): string =>
  `${relayUrl.replace(/\/+$/, '')}/dashboard#k=${Buffer.from(k).toString('base64url')}${taskId ? `&task=${encodeURIComponent(taskId)}` : ''}`;

/** The key of a dashboard link (or of the bare `k=` text), or undefined. */
export function keyOfLink(link: string): Buffer | undefined {
  const frag = link.includes('#') ? link.slice(link.indexOf('#') + 1) : link;
  const k = new URLSearchParams(frag).get('k');
  return k ? parseLinkKey(k) : undefined;
}

const enc = (s: string) => Buffer.from(s, 'utf8');

function seal(key: Buffer, aad: string, value: unknown): string {
  const nonce = randomBytes(NONCE_BYTES);
  return Buffer.concat([nonce, gcmSeal(key, nonce, enc(aad), enc(JSON.stringify(value)))]).toString(
    'base64url',
  );
}

function open<T>(key: Buffer, aad: string, sealed: string): T | undefined {
  const b = Buffer.from(sealed, 'base64url');
  if (b.byteLength < NONCE_BYTES + 16) return undefined;
  const plain = gcmOpen(key, b.subarray(0, NONCE_BYTES), enc(aad), b.subarray(NONCE_BYTES));
  if (!plain) return undefined;
  try {
    return JSON.parse(plain.toString('utf8')) as T;
  } catch {
    return undefined;
  }
}

/** Both ends of the dashboard's sealing for one planner (Node: the planner, `nfltr orch`, tests). */
export class DashboardCrypto {
  readonly #digest: Buffer;
  readonly #command: Buffer;
  readonly token: string;

  constructor(
    k: Uint8Array,
    readonly plannerId: string,
  ) {
    this.#digest = hkdf(k, Buffer.alloc(0), 'nfltr-dash digest');
    this.#command = hkdf(k, Buffer.alloc(0), 'nfltr-dash command');
    this.token = dashboardToken(k);
  }

  sealDigest(d: TaskDigest): string {
    return seal(this.#digest, `nfltr-dash/1 digest ${this.plannerId} ${d.task_id}`, d);
  }

  sealOutcomes(outcomes: CommandOutcome[]): string {
    return seal(this.#digest, `nfltr-dash/1 digest ${this.plannerId} ${OUTCOMES_ID}`, {
      task_id: OUTCOMES_ID,
      outcomes,
    });
  }

  openOutcomes(sealed: string): CommandOutcome[] | undefined {
    return open<{ outcomes?: CommandOutcome[] }>(
      this.#digest,
      `nfltr-dash/1 digest ${this.plannerId} ${OUTCOMES_ID}`,
      sealed,
    )?.outcomes;
  }

  /** The digest, or undefined when it fails authentication or names another task. */
  openDigest(taskId: string, sealed: string): TaskDigest | undefined {
    const d = open<TaskDigest>(this.#digest, `nfltr-dash/1 digest ${this.plannerId} ${taskId}`, sealed);
    return d?.task_id === taskId ? d : undefined;
  }

  sealCommand(c: CommandBody): { id: string; sealed: string } {
    const id = randomBytes(9).toString('base64url');
    return {
      id,
      sealed: seal(this.#command, `nfltr-dash/1 command ${this.plannerId}`, {
        v: 1,
        id,
        at: Date.now(),
        ...c,
      }),
    };
  }

  openCommand(sealed: string): DashboardCommand | undefined {
    return open<DashboardCommand>(this.#command, `nfltr-dash/1 command ${this.plannerId}`, sealed);
  }
}
