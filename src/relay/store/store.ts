/**
 * @module The relay's state behind one small interface, so the relay is the same code on one machine
 * (SQLite) and on many (PostgreSQL): accounts and hashed API keys, and presence (who is connected to
 * which replica), and the Control Tower's sealed task digests and command queues (protocol/dashboard.ts),
 * which the relay stores and serves without being able to read them.
 *
 * Presence rows are claimed by the replica holding the agent's stream and refreshed by its heartbeat;
 * a row not refreshed for `ttlMs` belongs to a replica that died without goodbye, and may be taken
 * over or expired by anyone. Ages are measured by the store's own clock (PostgreSQL's `now()`), so
 * replicas with skewed clocks agree on them.
 */

/**
 * The store's clock moved forward by {@link StoreClock.offsetMs}: tests age rows by advancing it instead
 * of waiting in real time. A store opened without one reads its own clock as it is.
 */
export class StoreClock {
  #offsetMs = 0;

  get offsetMs(): number {
    return this.#offsetMs;
  }

  advance(ms: number): void {
    this.#offsetMs += ms;
  }
}

export interface ApiKeyInfo {
  id: string;
  account: string;
  createdAt: Date;
  lastUsedAt: Date | null;
  revokedAt: Date | null;
}

export type AuthResult =
  | { ok: true; keyId: string; account: string }
  | { ok: false; reason: 'malformed' | 'unknown' | 'revoked'; message: string };

/** One connected agent as the store knows it. */
export interface PresenceRecord {
  account: string;
  agentId: string;
  /** `worker`, `planner` or `tunnel`. */
  kind: string;
  labels: Record<string, string>;
  connectedSince: Date;
  lastSeen: Date;
  /** The replica holding the agent's stream. */
  relayId: string;
  /** Unique and increasing across the store: a later claim of the same agent id has a larger epoch. */
  epoch: number;
  /** Milliseconds since the holding replica last refreshed the row, by the store's clock. */
  ageMs: number;
}

export interface PresenceClaim {
  account: string;
  agentId: string;
  kind: string;
  labels: Record<string, string>;
  connectedSince: Date;
  relayId: string;
  /** SHA-256 of the agent's session token: presenting the same token takes over a live claim. */
  sessionHash: Buffer;
}

export type ClaimResult = { ok: true; epoch: number } | { ok: false; holder: PresenceRecord };

/** A row a replica still holds, as its heartbeat reports it. */
export interface HeldPresence {
  account: string;
  agentId: string;
  epoch: number;
}

/** A sealed task digest as stored: ciphertext plus the routing metadata the relay has anyway. */
export interface DigestRecord {
  plannerId: string;
  taskId: string;
  /** Increases across the store with every write: "what changed since" is `rev > n`. */
  rev: number;
  updatedAt: Date;
  sealed: string;
}

/** A sealed command waiting for its planner. */
export interface CommandRecord {
  id: number;
  plannerId: string;
  createdAt: Date;
  sealed: string;
}

export interface Store {
  /** Creates the account when needed and a new key for it; returns the key in clear, the only time. */
  createKey(account: string): Promise<{ id: string; key: string }>;
  listKeys(account?: string): Promise<ApiKeyInfo[]>;
  /** Marks a key revoked; false when no such key exists. */
  revokeKey(id: string): Promise<boolean>;
  /** Checks a presented key and records its use. */
  authenticate(key: string): Promise<AuthResult>;
  /** Ids among `keyIds` that are revoked now; every replica polls this to close revoked streams. */
  revokedAmong(keyIds: string[]): Promise<string[]>;
  /**
   * How many keys are revoked. It only grows, so a replica that has acted on N revocations has closed
   * the streams of every key revoked before the Nth: `nfltr keys revoke` waits for that.
   */
  revocationCount(): Promise<number>;
  /**
   * A replica has closed the streams of the first `revocations` revoked keys. Also its sign of life:
   * the row counts as live for `liveMs`.
   */
  confirmRevocations(relayId: string, revocations: number, liveMs: number): Promise<void>;
  /** Live replicas (see {@link confirmRevocations}) that have not yet acted on `revocations` revocations. */
  unconfirmedReplicas(revocations: number): Promise<string[]>;
  /** Forgets a replica that is going away; without an id, every replica (a relay alone starting). */
  forgetReplicas(relayId?: string): Promise<void>;

  /**
   * Claims an agent id for a replica, atomically across replicas. Succeeds when the id is free, when
   * the claim presents the holder's session token (a redial, possibly to another replica), or when the
   * holder's row is older than `ttlMs`; otherwise returns the live holder.
   */
  claimPresence(claim: PresenceClaim, ttlMs: number): Promise<ClaimResult>;
  /**
   * The replica's heartbeat: refreshes every row it holds, writes `labels` for the rows listed, and
   * returns the rows it still holds. A row it thought it held and that is missing was taken over or
   * expired, and the replica closes that stream.
   */
  heartbeatPresence(
    relayId: string,
    labels: { account: string; agentId: string; epoch: number; labels: Record<string, string> }[],
  ): Promise<HeldPresence[]>;
  /** Deletes the row of this claim (`epoch`), if it still is the current one. */
  releasePresence(account: string, agentId: string, epoch: number): Promise<void>;
  /** Rows refreshed within `ttlMs`, oldest claim first. */
  listPresence(opts: { ttlMs: number; account?: string }): Promise<PresenceRecord[]>;
  /** Deletes rows not refreshed within `ttlMs` (0: every row) and returns them. */
  expirePresence(ttlMs: number): Promise<PresenceRecord[]>;

  /** A planner's dashboard: the hash of its link's access token (a new one replaces the old). */
  registerDashboard(account: string, plannerId: string, tokenSha256: string): Promise<void>;
  /** Whose dashboard a link's access token opens. */
  dashboardOfToken(tokenSha256: string): Promise<{ account: string; plannerId: string } | undefined>;
  /**
   * Stores (replaces) sealed digests of one planner's tasks, then keeps only its `keep` most recently
   * written ones. Returns the rev of the last one written.
   */
  putDigests(
    account: string,
    plannerId: string,
    digests: { taskId: string; sealed: string }[],
    keep: number,
  ): Promise<number>;
  /** Digests of the account (of one planner) written after `afterRev`, oldest write first. */
  listDigests(
    account: string,
    opts: { plannerId?: string; afterRev?: number; limit: number },
  ): Promise<DigestRecord[]>;
  /** Queues a sealed command unless `maxPending` are already waiting (then `pending` says how many). */
  queueCommand(
    account: string,
    plannerId: string,
    sealed: string,
    maxPending: number,
  ): Promise<{ ok: true; id: number } | { ok: false; pending: number }>;
  /** Commands not yet acked, oldest first. */
  pendingCommands(account: string, plannerId: string, limit: number): Promise<CommandRecord[]>;
  /** Removes acked commands; returns how many of `ids` were still queued. */
  ackCommands(account: string, plannerId: string, ids: number[]): Promise<number>;

  /** `sqlite` or `postgres`, for logs and health. */
  readonly kind: string;
  close(): Promise<void>;
}

/** How stale `last_used_at` may get before an authentication writes it again. */
export const LAST_USED_RESOLUTION_MS = 60_000;
