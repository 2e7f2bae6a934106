/**
 * @module The planner's side of the Control Tower: every couple of seconds it pushes the sealed digest of
 * each task that changed, and pulls the sealed commands the page (or `nfltr orch`) queued for it, runs
 * each one once (answer, cancel, dispatch) and acks it. Outcomes go back as one more sealed digest
 * ({@link OUTCOMES_ID}). Pull-based, so a planner behind NAT
 * needs nothing but its outbound HTTPS.
 */
import {
  COMMAND_MAX_AGE_MS,
  type CommandOutcome,
  type DashboardCommand,
  type DashboardCrypto,
  type DigestLevel,
  MAX_DIGEST_CHARS,
  MAX_DIGESTS_PER_PUSH,
  OUTCOMES_ID,
} from '../../protocol/dashboard.js';
import { tokenHash } from '../../protocol/link-crypto.js';
import type { Logger } from '../../util/log.js';
import type { TaskManager } from '../task-manager.js';
import type { StoredTask, TaskStore } from '../task-store.js';
import type { DashboardApi } from './api.js';
import { buildDigest, DIGEST_EVENTS } from './digest.js';

/** Outcomes kept in their digest, newest last. */
const OUTCOMES_KEPT = 20;
/** Tasks looked at for changes each round: the most recently updated. */
const WATCHED = 200;

export interface PublisherOptions {
  plannerId: string;
  api: DashboardApi;
  crypto: DashboardCrypto;
  store: TaskStore;
  manager: TaskManager;
  level: DigestLevel;
  /** `--dashboard-commands`: false refuses (and logs) every command. */
  commands: boolean;
  logger: Logger;
  /** How often changed digests are pushed and commands pulled (default 2 s). */
  everyMs?: number;
}

export class DashboardPublisher {
  readonly #o: PublisherOptions;
  readonly #log: Logger;
  /** Per task: what its last pushed digest was made from. */
  readonly #pushed = new Map<string, string>();
  /** Command id → when it was run; forgotten once older than any command still accepted. */
  readonly #seen = new Map<string, number>();
  #lastError = '';
  readonly #outcomes: CommandOutcome[] = [];
  #outcomesDirty = false;
  /** When the relay last took our token; renewed each minute (a relay whose store was reset forgets it). */
  #registeredAt = 0;
  #timer: NodeJS.Timeout | undefined;
  /** The last round started; undefined until {@link start}. */
  #round: Promise<void> | undefined;
  #inRound = false;
  #closed = false;

  constructor(o: PublisherOptions) {
    this.#o = o;
    this.#log = o.logger;
  }

  start(): void {
    this.#tick();
  }

  /** Runs a round, and the next one a period after it ends. */
  readonly #tick = (): void => {
    if (this.#closed) return;
    this.#inRound = true;
    this.#round = this.round().finally(() => {
      this.#inRound = false;
      // An outcome that came during the round goes out now, not a period later.
      if (!this.#closed)
        this.#timer = setTimeout(this.#tick, this.#outcomesDirty ? 0 : (this.#o.everyMs ?? 2_000));
    });
  };

  /**
   * A command's outcome is ready: pushed at once rather than at the next round, since `nfltr orch` and
   * the page wait on it (a dispatch's outcome came a whole period after the worker accepted). A round in
   * flight pushes it when it ends.
   */
  #pushOutcomesNow(): void {
    if (!this.#round || this.#inRound || this.#closed) return;
    clearTimeout(this.#timer);
    this.#tick();
  }

  /** One push and one pull; errors are logged and the next round tries again. */
  async round(): Promise<void> {
    try {
      if (Date.now() - this.#registeredAt > 60_000) {
        await this.#o.api.register(this.#o.plannerId, tokenHash(this.#o.crypto.token));
        this.#registeredAt = Date.now();
      }
      await this.#pushChanged();
      await this.#pullCommands();
      if (this.#lastError) this.#log.info('dashboard: the relay answers again');
      this.#lastError = '';
    } catch (err) {
      // Said once per distinct failure, not every round while the relay is away.
      const message = (err as Error).message;
      if (message !== this.#lastError)
        this.#log.warn('dashboard: relay round failed; retrying every round', { error: message });
      this.#lastError = message;
    }
  }

  async #pushChanged(): Promise<void> {
    const batch: { task_id: string; sealed: string }[] = [];
    const marks: [string, string][] = [];
    for (const t of this.#o.store.recent(WATCHED)) {
      const mark = `${t.snapshot.updated_at}:${t.snapshot.last_seq}:${t.snapshot.state}:${t.answered_seq}:${t.cancel_pending}`;
      if (this.#pushed.get(t.snapshot.task_id) === mark) continue;
      batch.push({ task_id: t.snapshot.task_id, sealed: this.#seal(t) });
      marks.push([t.snapshot.task_id, mark]);
    }
    if (this.#outcomesDirty) {
      batch.push({ task_id: OUTCOMES_ID, sealed: this.#o.crypto.sealOutcomes(this.#outcomes) });
      this.#outcomesDirty = false;
    }
    for (let i = 0; i < batch.length; i += MAX_DIGESTS_PER_PUSH) {
      await this.#o.api.push(this.#o.plannerId, batch.slice(i, i + MAX_DIGESTS_PER_PUSH));
    }
    for (const [id, mark] of marks) this.#pushed.set(id, mark);
  }

  /** A task's sealed digest, fewer events (then status only) until it fits the relay's bound. */
  #seal(t: StoredTask): string {
    const s = t.snapshot;
    let events =
      this.#o.level === 'full'
        ? this.#o.store.events(s.task_id, Math.max(0, s.last_seq - DIGEST_EVENTS), DIGEST_EVENTS)
        : [];
    for (;;) {
      const sealed = this.#o.crypto.sealDigest(buildDigest(t, events, this.#o.level));
      if (sealed.length <= MAX_DIGEST_CHARS) return sealed;
      if (events.length === 0) return this.#o.crypto.sealDigest(buildDigest(t, [], 'status'));
      events = events.slice(Math.ceil(events.length / 2));
    }
  }

  async #pullCommands(): Promise<void> {
    const queued = await this.#o.api.pull(this.#o.plannerId);
    for (const [id, at] of this.#seen) if (Date.now() - at > 2 * COMMAND_MAX_AGE_MS) this.#seen.delete(id);
    if (queued.length === 0) return;
    for (const q of queued) {
      const cmd = this.#o.crypto.openCommand(q.sealed);
      if (!cmd) {
        this.#log.warn('dashboard: dropped a command that failed authentication (another dashboard key?)', {
          relay_id: q.id,
        });
        continue;
      }
      if (this.#seen.has(cmd.id)) continue;
      this.#seen.set(cmd.id, Date.now());
      void this.#run(cmd);
    }
    await this.#o.api.ack(
      this.#o.plannerId,
      queued.map((q) => q.id),
    );
  }

  async #run(cmd: DashboardCommand): Promise<void> {
    const done = (ok: boolean, note: string) => {
      this.#outcomes.push({ id: cmd.id, type: cmd.type, task_id: cmd.task_id, ok, note, at: Date.now() });
      this.#outcomes.splice(0, Math.max(0, this.#outcomes.length - OUTCOMES_KEPT));
      this.#outcomesDirty = true;
      (ok ? this.#log.info : this.#log.warn).call(
        this.#log,
        `dashboard: ${cmd.type} ${ok ? 'done' : 'refused'}`,
        {
          task: cmd.task_id,
          note,
        },
      );
      this.#pushOutcomesNow();
    };
    if (!this.#o.commands)
      return done(
        false,
        'this planner runs with --dashboard-commands=false: commands from the dashboard are refused',
      );
    if (Math.abs(Date.now() - cmd.at) > COMMAND_MAX_AGE_MS)
      return done(
        false,
        `the command is older than ${COMMAND_MAX_AGE_MS / 60_000} minutes (or the clocks disagree)`,
      );
    try {
      done(true, await this.#execute(cmd));
    } catch (err) {
      done(false, (err as Error).message);
    }
  }

  async #execute(cmd: DashboardCommand): Promise<string> {
    const m = this.#o.manager;
    switch (cmd.type) {
      case 'cancel':
        return (await m.cancel(cmd.task_id, cmd.reason || 'cancelled from the dashboard')).note;
      case 'answer': {
        const pending = this.#o.store.get(cmd.task_id)?.snapshot.pending;
        // An answer is for one question: a replay, or an answer to one already past, does nothing.
        if (!pending || pending.seq !== cmd.seq)
          throw new Error(`task ${cmd.task_id} no longer waits for an answer to question ${cmd.seq}`);
        const r = await m.respond(cmd.task_id, cmd.content);
        return `answer ${r.delivery}`;
      }
      case 'dispatch': {
        const r = await m.dispatch({
          agent_id: cmd.worker,
          objective: cmd.objective,
          task_id: cmd.task_id,
          ...(cmd.timeout_ms ? { timeout_ms: cmd.timeout_ms } : {}),
        });
        return `task ${r.snapshot.task_id} accepted by ${cmd.worker}`;
      }
    }
  }

  async close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#timer);
    await this.#round;
  }
}
