/**
 * @module A2A task channels (`a2a-mcp-v1`) over the control stream: one Noise handshake per peer, then
 * every message sealed on its channel (one per task) with its own key and counter. The planner end is
 * the initiator, the worker end the responder. With encryption off, messages travel as `a2a.plain`, and
 * an encrypting end refuses those, naming the flag.
 *
 * Handshakes are idempotent: a responder answers a handshake but keeps sealing and opening under its live
 * session until the initiator seals a frame under the new one (it sends an empty one at once), which
 * only the real initiator can do. So a replayed or stale first message costs one unanswered reply and
 * never displaces a live session. Each sealed frame starts with its session's tag, so either end can
 * tell a frame of the live session from one of a session being confirmed or just replaced.
 */
import { EventEmitter } from 'node:events';
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import {
  type A2aMessage,
  A2aMessageSchema,
  A2aRefusalSchema,
  encodeA2aMessage,
  encodeA2aParts,
  HANDSHAKE_CHANNEL,
} from '../protocol/a2a.js';
import { ErrorCode, payloadLength } from '../protocol/control.js';
import {
  E2eeError,
  E2eeHandshake,
  type E2eeRole,
  type E2eeSession,
  plaintextRefused,
  SEAL_OVERHEAD,
  SESSION_TAG_BYTES,
  sessionTag,
} from '../protocol/e2ee.js';
import { generateX25519, type X25519KeyPair } from '../protocol/e2ee-noise.js';
import { type Logger, silentLogger } from '../util/log.js';
import { type AgentClient, AgentError, type InboundEnvelope } from './client.js';
import { fingerprint, type PeerPins } from './peer-keys.js';

export const A2A_KIND = {
  hs1: 'a2a.hs1',
  hs2: 'a2a.hs2',
  /** Plaintext A2aRefusal: the handshake or a frame was refused. Carries no task content. */
  refused: 'a2a.refused',
  /** Responder → initiator, plaintext and empty: "I redialled; handshake again, then resume". */
  rekey: 'a2a.rekey',
  sealed: 'a2a.sealed',
  plain: 'a2a.plain',
} as const;

/** Handshake messages remembered to refuse their replay: 32 bytes each, about 200 KiB in all. */
const SEEN_HANDSHAKES = 4096;

/** How long a peer the relay calls busy gets to drain before the session is replaced. */
const BUSY_RETRY_MS = 1_000;

/** Answered handshakes awaiting their confirmation, per peer (older ones were replays or superseded). */
const CANDIDATES_PER_PEER = 4;
/** Peers with answered handshakes awaiting confirmation; the oldest are forgotten past this. */
const CANDIDATE_PEERS = 1024;

/** The initiator's confirmation of a new session: an empty A2aMessage sealed on the handshake channel. */
const CONFIRM = encodeA2aMessage({ case: undefined });

/** A session this responder answered but its initiator has not yet used. */
interface Candidate {
  session: E2eeSession;
  /** The initiator's static key, pinned once it seals under the session (which proves it holds it). */
  key: Uint8Array;
}

export type A2aBody = A2aMessage['msg'];

export interface A2aInbound {
  peer: string;
  channel: string;
  msg: A2aBody;
  /** Opened under an E2EE session: the frame's AES-GCM tag authenticated every byte of it. */
  sealed: boolean;
}

/** Why a peer (all its channels) or one channel stopped working. */
export interface A2aFailure {
  peer: string;
  /** Set when only one channel is affected. */
  channel?: string;
  /** e2ee_violation, pairing_mismatch, pairing_missing, plaintext_refused, handshake, peer_not_found, … */
  code: string;
  message: string;
}

interface A2aEvents {
  message: [A2aInbound];
  failure: [A2aFailure];
  /**
   * A new session replaced an earlier one with this peer (either end redialled). Frames in flight
   * under the old one may be lost: the planner resumes its tasks on that peer (`Resume{after_seq}`)
   * and resends commands that no event has confirmed.
   */
  resync: [{ peer: string }];
}

export interface A2aEndpointOptions {
  agent: AgentClient;
  role: E2eeRole;
  /** `--a2a-e2ee`: on unless turned off explicitly. */
  e2ee: boolean;
  pairingKey?: Uint8Array;
  /** This agent's long-term static key (see loadStaticKey); a fresh one per endpoint when absent. */
  staticKey?: X25519KeyPair;
  /** Peers' pinned static keys (known_workers / known_planners); nothing is pinned when absent. */
  pins?: PeerPins;
  logger?: Logger;
  handshakeTimeoutMs?: number;
}

interface Pending {
  channel: string;
  /** The encoded message, in parts (see encodeA2aParts). */
  parts: Uint8Array[];
  resolve: () => void;
  reject: (err: Error) => void;
}

/**
 * Per peer: a session, or sends queued until one exists. An initiator in `pending` has a handshake in
 * flight (`hs`); a responder waits for the peer's. `resync` marks a session that replaces an earlier
 * one, so both ends can recover what the old one lost (see the `resync` event).
 */
type PeerState =
  | {
      type: 'pending';
      hs?: E2eeHandshake;
      queue: Pending[];
      timer: NodeJS.Timeout;
      resync: boolean;
      /** Why the last reply was refused, named if no good one comes in time. */
      refusedReply?: string;
    }
  | { type: 'ready'; session: E2eeSession };
type PendingState = Extract<PeerState, { type: 'pending' }>;

/** A failure that ends a send: the peer refused, vanished, or the handshake failed. */
export class A2aError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'A2aError';
  }
}

export class A2aEndpoint extends EventEmitter<A2aEvents> {
  readonly #agent: AgentClient;
  readonly #opts: A2aEndpointOptions;
  readonly #log: Logger;
  readonly #peers = new Map<string, PeerState>();
  /** With encryption off: the peers we exchanged messages with, told about our redials. */
  readonly #plainPeers = new Set<string>();
  /**
   * Peers whose session was dropped for a redial: the next session with them is a resync, even when the
   * handshake that was meant to replace it failed first (the peer was still away past the relay's hold).
   */
  readonly #resyncDue = new Set<string>();
  #everConnected = false;
  /** Ephemeral keys of the handshakes this responder answered, oldest first (replay detection). */
  readonly #seenHs1 = new Set<string>();
  readonly #static: X25519KeyPair;
  /** Responder: answered handshakes per peer, until the initiator uses one (see the module comment). */
  readonly #candidates = new Map<string, Candidate[]>();
  /** Initiator: the tag of the session a peer said it still seals under until it sees our confirmation. */
  readonly #staleTags = new Map<string, string>();
  /** Session replacements scheduled by {@link #lost}, one per peer. */
  readonly #lostDue = new Map<string, { handshakeLost: boolean }>();

  constructor(opts: A2aEndpointOptions) {
    super();
    this.#agent = opts.agent;
    this.#opts = opts;
    this.#log = opts.logger ?? silentLogger;
    this.#static = opts.staticKey ?? generateX25519();
    this.#agent.on('envelope', (env) => {
      // A throw here would surface in the transport's stream handler; an envelope that arrives while
      // the agent closes (a reply we can no longer send) is simply dropped.
      try {
        this.#onEnvelope(env);
      } catch (err) {
        if (err instanceof AgentError && err.code === 'closed') return;
        this.#log.error('envelope handling failed', { peer: env.from, error: (err as Error).message });
      }
    });
    this.#agent.on('status', (st) => {
      if (st.type !== 'connected') return;
      if (this.#everConnected) this.#onReconnected();
      this.#everConnected = true;
    });
    this.#agent.on('deliveryError', (e) => {
      const message =
        e.code === ErrorCode.PEER_NOT_FOUND ? `agent ${e.to} is not connected under this account` : e.message;
      const code = e.code === ErrorCode.PEER_NOT_FOUND ? 'peer_not_found' : ErrorCode[e.code].toLowerCase();
      const state = this.#peers.get(e.to);
      if (e.code === ErrorCode.PEER_BUSY) {
        // The relay dropped a frame for a peer that reads slowly: a gap for the peer, or a handshake
        // that never reached it. Both heal with a new session and a resume once the peer has caught up.
        const why = `the relay dropped a frame for ${e.to}: ${e.message}`;
        this.#lost(e.to, why, BUSY_RETRY_MS, e.channel === HANDSHAKE_CHANNEL);
        // A task channel's owner hears of it (a probe fails fast; a task heals by the resume).
        if (e.channel === HANDSHAKE_CHANNEL) return;
      }
      if (state?.type === 'pending' && e.channel === HANDSHAKE_CHANNEL) {
        this.#failPending(e.to, state, new A2aError(code, message));
      }
      this.emit('failure', {
        peer: e.to,
        channel: e.channel === HANDSHAKE_CHANNEL ? undefined : e.channel,
        code,
        message,
      });
    });
  }

  get agentId(): string {
    return this.#agent.agentId;
  }

  /** Whether messages are sealed end to end (`--a2a-e2ee`): every one arrives authenticated. */
  get encrypted(): boolean {
    return this.#opts.e2ee;
  }

  /**
   * Sends one message on a channel. Resolves once it is sealed and queued for the relay; rejects with
   * {@link A2aError} when the handshake with the peer fails. Without a session the message waits for
   * one: an initiator starts the handshake, a responder waits for the peer's.
   */
  send(peer: string, channel: string, msg: A2aBody): Promise<void> {
    // An artifact chunk's data is sealed where it lies, not copied into the message first.
    const parts = encodeA2aParts(msg);
    if (!this.#opts.e2ee) {
      this.#plainPeers.add(peer);
      this.#agent.send({ to: peer, channel, kind: A2A_KIND.plain, payload: parts });
      return Promise.resolve();
    }
    const state = this.#peers.get(peer) ?? this.#pending(peer, false);
    if (state.type === 'ready') {
      try {
        this.#seal(peer, state.session, channel, parts);
      } catch (err) {
        return Promise.reject(err);
      }
      return Promise.resolve();
    }
    return new Promise((resolve, reject) => state.queue.push({ channel, parts, resolve, reject }));
  }

  /**
   * Asks for a fresh session with a peer we may have none with (a restarted worker whose planner still
   * owes it acknowledgements): a responder sends `rekey`, an initiator handshakes. Both ends then emit
   * `resync`. With encryption off, the initiator emits `resync` and the responder sends `rekey` in clear.
   */
  requestResync(peer: string): void {
    if (this.#opts.role === 'initiator') {
      if (!this.#opts.e2ee) {
        this.#plainPeers.add(peer);
        this.emit('resync', { peer });
      } else if (this.#peers.get(peer)?.type !== 'pending') this.#pending(peer, true);
      return;
    }
    if (!this.#opts.e2ee) this.#plainPeers.add(peer);
    else if (this.#peers.get(peer)?.type !== 'pending') this.#pending(peer, true);
    this.#agent.send({
      to: peer,
      channel: HANDSHAKE_CHANNEL,
      kind: A2A_KIND.rekey,
      payload: new Uint8Array(),
    });
  }

  /** Forgets the session with a peer; the next send handshakes again. */
  reset(peer: string): void {
    const state = this.#peers.get(peer);
    if (state?.type === 'pending') this.#failPending(peer, state, new A2aError('reset', 'session reset'));
    this.#peers.delete(peer);
  }

  /** Releases a finished channel's keys; its id cannot be used again in this session. */
  closeChannel(peer: string, channel: string): void {
    const state = this.#peers.get(peer);
    if (state?.type === 'ready') state.session.closeChannel(channel);
  }

  /**
   * Frames written to the old stream may be lost with it, and a gap is a violation, so after a redial
   * no old session is used again: the initiator handshakes anew, the responder asks it to.
   */
  #onReconnected(): void {
    // In clear there is no session to replace, but frames may have been lost all the same.
    for (const peer of this.#plainPeers) {
      if (this.#opts.role === 'initiator') this.emit('resync', { peer });
      else {
        this.#agent.send({
          to: peer,
          channel: HANDSHAKE_CHANNEL,
          kind: A2A_KIND.rekey,
          payload: new Uint8Array(),
        });
      }
    }
    for (const [peer, state] of this.#peers) {
      if (this.#opts.role === 'initiator') {
        this.#pending(peer, true, state.type === 'pending' ? state.queue : []);
      } else if (state.type === 'ready') {
        this.#pending(peer, true);
        this.#agent.send({
          to: peer,
          channel: HANDSHAKE_CHANNEL,
          kind: A2A_KIND.rekey,
          payload: new Uint8Array(),
        });
      }
    }
  }

  /** Enters `pending` for a peer (an initiator sends hs1 at once), keeping any queued sends. */
  #pending(peer: string, resync: boolean, queue: Pending[] = []): PendingState {
    const prev = this.#peers.get(peer);
    if (prev?.type === 'pending') clearTimeout(prev.timer);
    const timeoutMs = this.#opts.handshakeTimeoutMs ?? 10_000;
    if (resync) this.#resyncDue.add(peer);
    const state: PendingState = {
      type: 'pending',
      queue,
      resync,
      timer: setTimeout(
        () =>
          this.#failPending(
            peer,
            state,
            new A2aError(
              'handshake_timeout',
              this.#opts.role === 'initiator'
                ? `${peer} did not answer the encryption handshake within ${timeoutMs} ms${state.refusedReply ? ` (a reply was refused: ${state.refusedReply})` : ''}`
                : `${peer} did not open an encrypted session within ${timeoutMs} ms`,
            ),
          ),
        this.#opts.role === 'initiator' ? timeoutMs : timeoutMs * 6,
      ),
    };
    state.timer.unref();
    this.#peers.set(peer, state);
    if (this.#opts.role === 'initiator') {
      state.hs = new E2eeHandshake({
        role: 'initiator',
        localId: this.#agent.agentId,
        remoteId: peer,
        pairingKey: this.#opts.pairingKey,
        staticKey: this.#static,
      });
      this.#agent.send({
        to: peer,
        channel: HANDSHAKE_CHANNEL,
        kind: A2A_KIND.hs1,
        payload: state.hs.writeMessage(),
      });
    }
    return state;
  }

  /**
   * Frames with a peer were lost in transit (a gap in what it sealed, or the relay dropped ours): the
   * session is replaced, which makes both ends resync (the planner resumes its tasks from the last
   * event it has and resends unconfirmed commands). `delayMs` lets a busy peer drain first;
   * `handshakeLost` says the frame was our handshake message. One replacement at a time per peer.
   */
  #lost(peer: string, why: string, delayMs = 0, handshakeLost = false): void {
    const due = this.#lostDue.get(peer);
    if (due) {
      due.handshakeLost ||= handshakeLost;
      return;
    }
    this.#log.warn('frames lost in transit; replacing the session', { peer, error: why });
    const next = { handshakeLost };
    this.#lostDue.set(peer, next);
    const replace = () => {
      this.#lostDue.delete(peer);
      const state = this.#peers.get(peer);
      if (!this.#opts.e2ee) return this.requestResync(peer);
      this.#resyncDue.add(peer);
      if (this.#opts.role === 'responder') {
        if (state?.type === 'ready') this.#peers.delete(peer);
        return this.requestResync(peer);
      }
      // A handshake still in flight replaces the session anyway; a second one would race it.
      if (state?.type === 'pending' && state.hs && !next.handshakeLost) return;
      this.#pending(peer, true, state?.type === 'pending' ? state.queue : []);
    };
    // At once for a gap: the frames behind it must not reach the torn-down channel.
    if (delayMs === 0) replace();
    else setTimeout(replace, delayMs).unref();
  }

  #failPending(peer: string, state: PendingState, err: A2aError): void {
    clearTimeout(state.timer);
    if (this.#peers.get(peer) === state) this.#peers.delete(peer);
    for (const p of state.queue.splice(0)) p.reject(err);
  }

  #ready(peer: string, session: E2eeSession): void {
    const prev = this.#peers.get(peer);
    this.#peers.set(peer, { type: 'ready', session });
    if (prev?.type === 'pending') {
      clearTimeout(prev.timer);
      for (const p of prev.queue.splice(0)) {
        try {
          this.#seal(peer, session, p.channel, p.parts);
          p.resolve();
        } catch (err) {
          p.reject(err as Error);
        }
      }
    }
    const due = this.#resyncDue.delete(peer);
    if (prev?.type === 'ready' || prev?.resync || due) {
      this.#log.info('encrypted session re-established', { peer });
      this.emit('resync', { peer });
    }
  }

  /**
   * Seals and queues one frame. The agent's refusal (queue full, too large) is checked before sealing:
   * once sealed, a frame's seq is spent, and one never sent would be a gap for the peer.
   */
  #seal(peer: string, session: E2eeSession, channel: string, parts: readonly Uint8Array[]): void {
    this.#agent.checkSend({ to: peer, channel, kind: A2A_KIND.sealed }, payloadLength(parts) + SEAL_OVERHEAD);
    const { seq, parts: payload } = session.sealer(channel).sealParts(parts, Buffer.from(session.tag, 'hex'));
    this.#agent.send({ to: peer, channel, seq, kind: A2A_KIND.sealed, payload });
  }

  #refuse(peer: string, code: string, message: string): void {
    const payload = toBinary(A2aRefusalSchema, create(A2aRefusalSchema, { code, message }));
    this.#agent.send({ to: peer, channel: HANDSHAKE_CHANNEL, kind: A2A_KIND.refused, payload });
  }

  /**
   * The refusal of a peer whose static key differs from its pin; undefined when it may go on. Pins that
   * cannot be read refuse too: an unchecked key would be trusted.
   */
  #keyChanged(peer: string, key: Uint8Array): { code: string; message: string } | undefined {
    const pins = this.#opts.pins;
    try {
      const pin = pins?.check(peer, key);
      if (pin?.status !== 'changed') return undefined;
      return { code: 'peer_key_changed', message: pins!.changedMessage(peer, pin.pinned, key) };
    } catch (err) {
      const message = `cannot compare the key of ${peer} with its pin: ${(err as Error).message}`;
      return { code: 'pins_unreadable', message };
    }
  }

  /** Pins a peer's key on first contact (a no-op for a known one), saying so once. */
  #pin(peer: string, key: Uint8Array): void {
    const pins = this.#opts.pins;
    try {
      if (pins?.check(peer, key).status !== 'new') return;
      pins.remember(peer, key);
    } catch (err) {
      // The session is sound (the key was checked); only the record of first contact is missing.
      return this.#log.error('could not pin the key of a peer met for the first time', {
        peer,
        fingerprint: fingerprint(key),
        error: (err as Error).message,
      });
    }
    this.#log.info('pinned the static key of a peer met for the first time', {
      peer,
      fingerprint: fingerprint(key),
    });
  }

  /** Keeps an answered handshake until its initiator seals under it (bounded per peer and in all). */
  #addCandidate(peer: string, candidate: Candidate): void {
    const list = this.#candidates.get(peer) ?? [];
    this.#candidates.delete(peer);
    list.push(candidate);
    if (list.length > CANDIDATES_PER_PEER) list.shift();
    this.#candidates.set(peer, list);
    if (this.#candidates.size > CANDIDATE_PEERS)
      this.#candidates.delete(this.#candidates.keys().next().value!);
  }

  /**
   * Responder: a frame sealed under an answered handshake. Only the initiator that ran it can seal one,
   * so it becomes the live session (and the initiator's key is pinned); a frame that does not open is
   * a forgery under a public tag and changes nothing but its channel.
   */
  #confirm(peer: string, candidate: Candidate, channel: string, seq: bigint, ciphertext: Uint8Array): void {
    let plaintext: Uint8Array;
    try {
      plaintext = candidate.session.opener(channel).open(seq, ciphertext);
    } catch (err) {
      const list = this.#candidates.get(peer)?.filter((c) => c !== candidate) ?? [];
      if (list.length > 0) this.#candidates.set(peer, list);
      else this.#candidates.delete(peer);
      const code = err instanceof E2eeError ? err.code : 'tampered';
      return this.#fail({
        peer,
        channel,
        code: 'e2ee_violation',
        message: `${code}: ${(err as Error).message}`,
      });
    }
    this.#candidates.delete(peer);
    // Another handshake for this id may have been confirmed (and pinned) first.
    const changed = this.#keyChanged(peer, candidate.key);
    if (changed !== undefined) {
      this.#refuse(peer, changed.code, changed.message);
      return this.#fail({ peer, ...changed });
    }
    this.#pin(peer, candidate.key);
    this.#ready(peer, candidate.session);
    this.#deliver(peer, channel, plaintext, true);
  }

  #fail(f: A2aFailure): void {
    this.#log.warn('a2a failure', { peer: f.peer, channel: f.channel, code: f.code, error: f.message });
    this.emit('failure', f);
  }

  #deliver(peer: string, channel: string, bytes: Uint8Array, sealed: boolean): void {
    let msg: A2aMessage;
    try {
      msg = fromBinary(A2aMessageSchema, bytes);
    } catch (err) {
      return this.#fail({
        peer,
        channel,
        code: 'malformed',
        message: `unreadable A2A message: ${(err as Error).message}`,
      });
    }
    if (msg.msg.case === undefined) return;
    this.emit('message', { peer, channel, msg: msg.msg, sealed });
  }

  #onEnvelope(env: InboundEnvelope): void {
    const { from: peer, channel } = env;
    switch (env.kind) {
      case A2A_KIND.plain:
        if (this.#opts.e2ee) {
          const err = plaintextRefused(peer);
          this.#refuse(peer, err.code, err.message);
          return this.#fail({ peer, channel, code: err.code, message: err.message });
        }
        this.#plainPeers.add(peer);
        return this.#deliver(peer, channel, env.payload, false);

      case A2A_KIND.hs1: {
        if (!this.#opts.e2ee || this.#opts.role !== 'responder') {
          const message = `${this.#agent.agentId} runs with --a2a-e2ee=false and cannot take encrypted tasks: run both ends with the same --a2a-e2ee`;
          return this.#refuse(peer, 'plaintext_only', message);
        }
        // A handshake message seen before is a replay (an initiator draws a fresh ephemeral key for
        // each): answering it would replace the live session with one nobody else holds.
        const ephemeral = Buffer.from(env.payload.subarray(1, 33)).toString('base64');
        if (this.#seenHs1.has(ephemeral)) {
          return this.#log.warn('replayed handshake message ignored', { peer });
        }
        this.#seenHs1.add(ephemeral);
        if (this.#seenHs1.size > SEEN_HANDSHAKES) this.#seenHs1.delete(this.#seenHs1.values().next().value!);
        try {
          const hs = new E2eeHandshake({
            role: 'responder',
            localId: this.#agent.agentId,
            remoteId: peer,
            pairingKey: this.#opts.pairingKey,
            staticKey: this.#static,
          });
          hs.readMessage(env.payload);
          const key = hs.remoteStatic!;
          const changed = this.#keyChanged(peer, key);
          if (changed !== undefined) {
            this.#refuse(peer, changed.code, changed.message);
            return this.#fail({ peer, ...changed });
          }
          // The live session stays until the initiator uses the new one; its tag tells the initiator
          // which of our frames to ignore meanwhile (they were sealed for a session it replaced).
          const state = this.#peers.get(peer);
          const live = state?.type === 'ready' ? Buffer.from(state.session.tag, 'hex') : new Uint8Array(0);
          const reply = hs.writeMessage(live);
          this.#agent.send({ to: peer, channel: HANDSHAKE_CHANNEL, kind: A2A_KIND.hs2, payload: reply });
          this.#addCandidate(peer, { session: hs.session(), key });
        } catch (err) {
          const code = err instanceof E2eeError ? err.code : 'handshake';
          this.#refuse(peer, code, (err as Error).message);
          this.#fail({ peer, code, message: (err as Error).message });
        }
        return;
      }

      case A2A_KIND.hs2: {
        const state = this.#peers.get(peer);
        if (state?.type !== 'pending' || !state.hs)
          return this.#log.warn('unexpected handshake reply', { peer });
        let live: Uint8Array;
        try {
          live = state.hs.readMessage(env.payload, { keepOnFailure: true });
        } catch (err) {
          const code = err instanceof E2eeError ? err.code : 'handshake';
          // Perhaps a replayed or stale reply (to an earlier handshake): the handshake is intact and
          // the genuine reply can still come. Its timeout ends a wait for one that never does.
          if (code === 'handshake' || code === 'pairing_mismatch') {
            state.refusedReply = (err as Error).message;
            return this.#log.warn('handshake reply refused; waiting for another', {
              peer,
              error: (err as Error).message,
            });
          }
          this.#failPending(peer, state, new A2aError(code, (err as Error).message));
          return this.#fail({ peer, code, message: (err as Error).message });
        }
        // Message 2 authenticated the worker's static key (the es token): compare it with its pin.
        const key = state.hs.remoteStatic!;
        const changed = this.#keyChanged(peer, key);
        if (changed !== undefined) {
          this.#failPending(peer, state, new A2aError(changed.code, changed.message));
          return this.#fail({ peer, ...changed });
        }
        this.#pin(peer, key);
        const session = state.hs.session();
        if (live.length === SESSION_TAG_BYTES) this.#staleTags.set(peer, sessionTag(live));
        else this.#staleTags.delete(peer);
        try {
          this.#seal(peer, session, HANDSHAKE_CHANNEL, [CONFIRM]);
        } catch (err) {
          // Any frame sealed under the session confirms it; the queued ones will.
          this.#log.warn('could not send the handshake confirmation', {
            peer,
            error: (err as Error).message,
          });
        }
        this.#ready(peer, session);
        return;
      }

      case A2A_KIND.refused: {
        let body: { code: string; message: string } = { code: '', message: '' };
        try {
          body = fromBinary(A2aRefusalSchema, env.payload);
        } catch {}
        const err = new A2aError(
          body.code || 'refused',
          `${peer} refused: ${body.message || 'no reason given'}`,
        );
        const state = this.#peers.get(peer);
        // A session the peer no longer has (it restarted) is useless: handshake again and resume. One
        // refusal comes per frame sealed under the old session; a handshake already in flight answers
        // them all, and a second one would race it.
        if (body.code === 'no_session' && this.#opts.role === 'initiator') {
          if (state?.type !== 'pending' || !state.hs) this.#pending(peer, true);
          return;
        }
        if (state?.type === 'pending') this.#failPending(peer, state, err);
        return this.#fail({ peer, code: err.code, message: err.message });
      }

      case A2A_KIND.rekey: {
        if (this.#opts.role !== 'initiator') return;
        if (!this.#opts.e2ee) {
          this.#plainPeers.add(peer);
          this.emit('resync', { peer });
          return;
        }
        // A handshake already in flight gives the peer a fresh session anyway; a second would race it.
        if (this.#peers.get(peer)?.type !== 'pending') this.#pending(peer, true);
        return;
      }

      case A2A_KIND.sealed: {
        const tag = sessionTag(env.payload.subarray(0, SESSION_TAG_BYTES));
        const ciphertext = env.payload.subarray(SESSION_TAG_BYTES);
        const candidate = this.#candidates.get(peer)?.find((c) => c.session.tag === tag);
        if (candidate) return this.#confirm(peer, candidate, channel, env.seq, ciphertext);
        // The only sealed frame on this channel is a confirmation; one that names no candidate is a
        // replay or a duplicate, and must not touch the live session.
        if (channel === HANDSHAKE_CHANNEL)
          return this.#log.debug('stale handshake confirmation ignored', { peer });
        const state = this.#peers.get(peer);
        if (state?.type !== 'ready') {
          if (this.#opts.role === 'responder') {
            this.#refuse(
              peer,
              'no_session',
              `${this.#agent.agentId} has no encrypted session with ${peer}; handshake again`,
            );
          }
          return this.#fail({
            peer,
            channel,
            code: 'no_session',
            message: `sealed frame from ${peer} without a session`,
          });
        }
        if (tag !== state.session.tag && tag === this.#staleTags.get(peer)) {
          // Sealed by the peer before it saw our confirmation: what it carried comes again by the resume.
          return this.#log.debug('frame of a replaced session ignored', { peer, channel });
        }
        let plaintext: Uint8Array;
        try {
          plaintext = state.session.opener(channel).open(env.seq, ciphertext);
        } catch (err) {
          const code = err instanceof E2eeError ? err.code : 'tampered';
          if (code === 'gap') return this.#lost(peer, (err as Error).message);
          return this.#fail({
            peer,
            channel,
            code: 'e2ee_violation',
            message: `${code}: ${(err as Error).message}`,
          });
        }
        return this.#deliver(peer, channel, plaintext, true);
      }

      default:
        this.#log.debug('ignoring envelope of unknown kind', { peer, kind: env.kind });
    }
  }
}
