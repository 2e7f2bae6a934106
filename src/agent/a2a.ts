/**
 * @module A2A task channels (`a2a-mcp-v1`) over the control stream: one Noise handshake per peer, then
 * every message sealed on its channel (one per task) with its own key and counter. The planner end is
 * the initiator, the worker end the responder. With encryption off, messages travel as `a2a.plain`, and
 * an encrypting end refuses those, naming the flag.
 */
import { EventEmitter } from 'node:events';
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { type A2aMessage, A2aMessageSchema } from '../protocol/a2a.js';
import { ErrorCode } from '../protocol/control.js';
import {
  E2eeError,
  E2eeHandshake,
  type E2eeRole,
  type E2eeSession,
  plaintextRefused,
} from '../protocol/e2ee.js';
import { type Logger, silentLogger } from '../util/log.js';
import type { AgentClient, InboundEnvelope } from './client.js';

export const A2A_KIND = {
  hs1: 'a2a.hs1',
  hs2: 'a2a.hs2',
  /** Plaintext `{code, message}`: the handshake or a frame was refused. Carries no task content. */
  refused: 'a2a.refused',
  sealed: 'a2a.sealed',
  plain: 'a2a.plain',
} as const;

/** Channel of the handshake envelopes; task channels are task ids. */
const HANDSHAKE_CHANNEL = 'handshake';

export type A2aBody = A2aMessage['msg'];

export interface A2aInbound {
  peer: string;
  channel: string;
  msg: A2aBody;
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
}

export interface A2aEndpointOptions {
  agent: AgentClient;
  role: E2eeRole;
  /** `--a2a-e2ee`: on unless turned off explicitly. */
  e2ee: boolean;
  pairingKey?: Uint8Array;
  logger?: Logger;
  handshakeTimeoutMs?: number;
}

interface Pending {
  channel: string;
  bytes: Uint8Array;
  resolve: () => void;
  reject: (err: Error) => void;
}

type PeerState =
  | { type: 'handshaking'; hs: E2eeHandshake; pending: Pending[]; timer?: NodeJS.Timeout }
  | { type: 'ready'; session: E2eeSession };

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

  constructor(opts: A2aEndpointOptions) {
    super();
    this.#agent = opts.agent;
    this.#opts = opts;
    this.#log = opts.logger ?? silentLogger;
    this.#agent.on('envelope', (env) => this.#onEnvelope(env));
    this.#agent.on('deliveryError', (e) => {
      const message =
        e.code === ErrorCode.PEER_NOT_FOUND ? `agent ${e.to} is not connected under this account` : e.message;
      const code = e.code === ErrorCode.PEER_NOT_FOUND ? 'peer_not_found' : ErrorCode[e.code].toLowerCase();
      const state = this.#peers.get(e.to);
      if (state?.type === 'handshaking') this.#failHandshake(e.to, state, new A2aError(code, message));
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

  /**
   * Sends one message on a channel. Resolves once it is sealed and queued for the relay; rejects with
   * {@link A2aError} when the handshake with the peer fails.
   */
  send(peer: string, channel: string, msg: A2aBody): Promise<void> {
    const bytes = toBinary(A2aMessageSchema, create(A2aMessageSchema, { msg }));
    if (!this.#opts.e2ee) {
      this.#agent.send({ to: peer, channel, kind: A2A_KIND.plain, payload: bytes });
      return Promise.resolve();
    }
    const state = this.#peers.get(peer) ?? this.#startHandshake(peer);
    if (state?.type === 'ready') {
      this.#seal(peer, state.session, channel, bytes);
      return Promise.resolve();
    }
    // Responders wait for the peer's handshake (it always comes first from a planner).
    return new Promise((resolve, reject) => {
      const s = this.#peers.get(peer);
      if (s?.type === 'handshaking') s.pending.push({ channel, bytes, resolve, reject });
      else if (s?.type === 'ready') {
        this.#seal(peer, s.session, channel, bytes);
        resolve();
      } else reject(new A2aError('no_session', `no encrypted session with ${peer} yet`));
    });
  }

  /** Forgets the session with a peer (it restarted, or a channel broke); the next send re-handshakes. */
  reset(peer: string): void {
    const state = this.#peers.get(peer);
    if (state?.type === 'handshaking')
      this.#failHandshake(peer, state, new A2aError('reset', 'session reset'));
    this.#peers.delete(peer);
  }

  /** Releases a finished channel's keys; its id cannot be used again in this session. */
  closeChannel(peer: string, channel: string): void {
    const state = this.#peers.get(peer);
    if (state?.type === 'ready') state.session.closeChannel(channel);
  }

  #startHandshake(peer: string): PeerState | undefined {
    if (this.#opts.role !== 'initiator') return undefined;
    const hs = new E2eeHandshake({
      role: 'initiator',
      localId: this.#agent.agentId,
      remoteId: peer,
      pairingKey: this.#opts.pairingKey,
    });
    const state: PeerState = { type: 'handshaking', hs, pending: [] };
    this.#peers.set(peer, state);
    const timeoutMs = this.#opts.handshakeTimeoutMs ?? 10_000;
    state.timer = setTimeout(
      () =>
        this.#failHandshake(
          peer,
          state,
          new A2aError(
            'handshake_timeout',
            `${peer} did not answer the encryption handshake within ${timeoutMs} ms`,
          ),
        ),
      timeoutMs,
    );
    state.timer.unref();
    this.#agent.send({
      to: peer,
      channel: HANDSHAKE_CHANNEL,
      kind: A2A_KIND.hs1,
      payload: hs.writeMessage(),
    });
    return state;
  }

  #failHandshake(peer: string, state: Extract<PeerState, { type: 'handshaking' }>, err: A2aError): void {
    clearTimeout(state.timer);
    if (this.#peers.get(peer) === state) this.#peers.delete(peer);
    for (const p of state.pending.splice(0)) p.reject(err);
  }

  #ready(peer: string, session: E2eeSession): void {
    const prev = this.#peers.get(peer);
    this.#peers.set(peer, { type: 'ready', session });
    if (prev?.type === 'handshaking') {
      clearTimeout(prev.timer);
      for (const p of prev.pending.splice(0)) {
        this.#seal(peer, session, p.channel, p.bytes);
        p.resolve();
      }
    }
  }

  #seal(peer: string, session: E2eeSession, channel: string, bytes: Uint8Array): void {
    const { seq, ciphertext } = session.sealer(channel).seal(bytes);
    this.#agent.send({ to: peer, channel, seq, kind: A2A_KIND.sealed, payload: ciphertext });
  }

  #refuse(peer: string, code: string, message: string): void {
    const payload = Buffer.from(JSON.stringify({ code, message }));
    this.#agent.send({ to: peer, channel: HANDSHAKE_CHANNEL, kind: A2A_KIND.refused, payload });
  }

  #fail(f: A2aFailure): void {
    this.#log.warn('a2a failure', { peer: f.peer, channel: f.channel, code: f.code, error: f.message });
    this.emit('failure', f);
  }

  #deliver(peer: string, channel: string, bytes: Uint8Array): void {
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
    this.emit('message', { peer, channel, msg: msg.msg });
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
        return this.#deliver(peer, channel, env.payload);

      case A2A_KIND.hs1: {
        if (!this.#opts.e2ee || this.#opts.role !== 'responder') {
          const message = `${this.#agent.agentId} runs with --a2a-e2ee=false and cannot take encrypted tasks: run both ends with the same --a2a-e2ee`;
          return this.#refuse(peer, 'plaintext_only', message);
        }
        try {
          const hs = new E2eeHandshake({
            role: 'responder',
            localId: this.#agent.agentId,
            remoteId: peer,
            pairingKey: this.#opts.pairingKey,
          });
          hs.readMessage(env.payload);
          const reply = hs.writeMessage();
          // A new handshake replaces any session we had: the peer restarted or reconnected.
          this.#agent.send({ to: peer, channel: HANDSHAKE_CHANNEL, kind: A2A_KIND.hs2, payload: reply });
          this.#ready(peer, hs.session());
        } catch (err) {
          const code = err instanceof E2eeError ? err.code : 'handshake';
          this.#refuse(peer, code, (err as Error).message);
          this.#fail({ peer, code, message: (err as Error).message });
        }
        return;
      }

      case A2A_KIND.hs2: {
        const state = this.#peers.get(peer);
        if (state?.type !== 'handshaking') return this.#log.warn('unexpected handshake reply', { peer });
        try {
          state.hs.readMessage(env.payload);
          this.#ready(peer, state.hs.session());
        } catch (err) {
          const code = err instanceof E2eeError ? err.code : 'handshake';
          this.#failHandshake(peer, state, new A2aError(code, (err as Error).message));
          this.#fail({ peer, code, message: (err as Error).message });
        }
        return;
      }

      case A2A_KIND.refused: {
        let body: { code?: string; message?: string } = {};
        try {
          body = JSON.parse(Buffer.from(env.payload).toString('utf8'));
        } catch {}
        const err = new A2aError(
          String(body.code ?? 'refused'),
          `${peer} refused: ${String(body.message ?? 'no reason given')}`,
        );
        const state = this.#peers.get(peer);
        if (state?.type === 'handshaking') this.#failHandshake(peer, state, err);
        // A session the peer no longer has is useless to us: handshake again next time.
        if (body.code === 'no_session') this.#peers.delete(peer);
        return this.#fail({ peer, code: err.code, message: err.message });
      }

      case A2A_KIND.sealed: {
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
        let plaintext: Uint8Array;
        try {
          plaintext = state.session.opener(channel).open(env.seq, env.payload);
        } catch (err) {
          const code = err instanceof E2eeError ? err.code : 'tampered';
          return this.#fail({
            peer,
            channel,
            code: 'e2ee_violation',
            message: `${code}: ${(err as Error).message}`,
          });
        }
        return this.#deliver(peer, channel, plaintext);
      }

      default:
        this.#log.debug('ignoring envelope of unknown kind', { peer, kind: env.kind });
    }
  }
}
