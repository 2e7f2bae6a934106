/**
 * @module The agent side of `nfltr ai`: a terminal's output sealed for its browser viewers, their sealed
 * keystrokes and resizes back to the terminal, one writer at a time, and a bounded scrollback replayed
 * to each viewer that (re)joins. The terminal is an interface: the CLI plugs a PTY in, tests anything.
 */
import {
  A2V,
  AI_CHANNEL,
  AI_RELAY_ADDRESS,
  AI_VIEWERS_ADDRESS,
  AiAgentCrypto,
  type AiRegistration,
  accessToken,
  tokenHash,
  V2A,
} from '../protocol/ai-session.js';
import type { Logger } from '../util/log.js';
import type { AgentClient, InboundEnvelope } from './client.js';

/** What the session drives: a PTY in production. */
export interface AiTerminal {
  write(data: string): void;
  resize(cols: number, rows: number): void;
}

export interface AiHostOptions {
  client: AgentClient;
  terminal: AiTerminal;
  /** The session key (the link's fragment). */
  key: Uint8Array;
  readOnly: boolean;
  /** Epoch ms when the link stops working. */
  expiresAt: number;
  logger: Logger;
  /** Bytes of recent output replayed to a viewer that joins. */
  scrollbackBytes?: number;
  /** The relay ended the link (`nfltr ai revoke`). */
  onRevoked?: () => void;
}

export const DEFAULT_SCROLLBACK_BYTES = 256 * 1024;
/** Output is sealed in pieces this big at most, well under the relay's frame bound. */
const CHUNK_BYTES = 16 * 1024;

export class AiHost {
  readonly #o: AiHostOptions;
  readonly #crypto: AiAgentCrypto;
  readonly #max: number;
  #scrollback: Buffer[] = [];
  #scrollbackLen = 0;
  #writer: string | undefined;
  #size = { cols: 80, rows: 24 };
  #exit: { code: number; signal?: number } | undefined;

  constructor(o: AiHostOptions) {
    this.#o = o;
    this.#max = o.scrollbackBytes ?? DEFAULT_SCROLLBACK_BYTES;
    this.#crypto = new AiAgentCrypto(o.key, o.client.agentId);
    o.client.on('envelope', (env) => {
      if (env.channel === AI_CHANNEL) this.#inbound(env);
    });
    // Every (re)connect registers again: a relay restart forgets sessions.
    o.client.on('status', (s) => {
      if (s.type === 'connected') this.#register();
    });
    if (o.client.connected) this.#register();
  }

  get writer(): string | undefined {
    return this.#writer;
  }

  /** Terminal output: kept for replay, sealed once for every viewer. */
  output(data: Buffer): void {
    this.#scrollback.push(data);
    this.#scrollbackLen += data.byteLength;
    while (this.#scrollbackLen - (this.#scrollback[0]?.byteLength ?? 0) >= this.#max) {
      this.#scrollbackLen -= this.#scrollback.shift()!.byteLength;
    }
    for (let i = 0; i < data.byteLength; i += CHUNK_BYTES)
      this.#frame(AI_VIEWERS_ADDRESS, A2V.output, data.subarray(i, i + CHUNK_BYTES));
  }

  /** The local terminal was resized: the PTY follows, viewers are told. */
  resized(cols: number, rows: number): void {
    this.#size = { cols, rows };
    this.#o.terminal.resize(cols, rows);
    this.#state(AI_VIEWERS_ADDRESS);
  }

  /** The command exited: viewers see the code, then the relay closes their sockets. */
  async exited(code: number, signal?: number): Promise<void> {
    this.#exit = { code, signal };
    this.#frame(AI_VIEWERS_ADDRESS, A2V.exit, Buffer.from(JSON.stringify(this.#exit)));
    this.#send(AI_RELAY_ADDRESS, 'end', new Uint8Array());
  }

  #register(): void {
    const reg: AiRegistration = {
      token_sha256: tokenHash(accessToken(this.#o.key)),
      expires_at: this.#o.expiresAt,
      read_only: this.#o.readOnly,
    };
    this.#send(AI_RELAY_ADDRESS, 'register', Buffer.from(JSON.stringify(reg)));
  }

  #inbound(env: InboundEnvelope): void {
    if (env.from === AI_RELAY_ADDRESS) {
      if (env.kind === 'revoked') this.#o.onRevoked?.();
      return;
    }
    const viewer = env.from;
    if (env.kind === 'leave') {
      this.#crypto.forget(viewer);
      if (this.#writer === viewer) {
        this.#writer = undefined;
        this.#state(AI_VIEWERS_ADDRESS);
      }
      return;
    }
    if (env.kind !== 'frame') return;
    let msg: { type: number; body: Buffer };
    try {
      msg = this.#crypto.open(viewer, env.payload);
    } catch (err) {
      this.#o.logger.warn('ai: dropped a viewer frame', { viewer, error: (err as Error).message });
      return;
    }
    const mayWrite = !this.#o.readOnly && this.#writer === viewer && !this.#exit;
    switch (msg.type) {
      case V2A.hello:
        return this.#welcome(viewer);
      case V2A.input:
        if (mayWrite) this.#o.terminal.write(msg.body.toString('utf8'));
        return;
      case V2A.resize: {
        if (!mayWrite) return;
        const { cols, rows } = JSON.parse(msg.body.toString('utf8')) as { cols: number; rows: number };
        if (
          Number.isInteger(cols) &&
          Number.isInteger(rows) &&
          cols > 0 &&
          rows > 0 &&
          cols <= 1000 &&
          rows <= 1000
        )
          this.resized(cols, rows);
        return;
      }
      case V2A.takeControl:
        if (this.#o.readOnly || this.#exit) return;
        this.#writer = viewer;
        return this.#state(AI_VIEWERS_ADDRESS);
    }
  }

  /** A viewer said hello: its screen is reset and replayed, and the first viewer gets the keyboard. */
  #welcome(viewer: string): void {
    if (!this.#writer && !this.#o.readOnly && !this.#exit) this.#writer = viewer;
    this.#frame(viewer, A2V.reset);
    for (const piece of this.#scrollback)
      for (let i = 0; i < piece.byteLength; i += CHUNK_BYTES)
        this.#frame(viewer, A2V.output, piece.subarray(i, i + CHUNK_BYTES));
    this.#state(viewer);
    if (this.#exit) this.#frame(viewer, A2V.exit, Buffer.from(JSON.stringify(this.#exit)));
    this.#state(AI_VIEWERS_ADDRESS);
  }

  #state(to: string): void {
    const state = {
      you: to === AI_VIEWERS_ADDRESS ? undefined : to,
      writer: this.#writer ?? null,
      read_only: this.#o.readOnly,
      ...this.#size,
    };
    this.#frame(to, A2V.state, Buffer.from(JSON.stringify(state)));
  }

  #frame(to: string, type: number, body?: Uint8Array): void {
    this.#send(to, 'frame', this.#crypto.seal(type, body));
  }

  #send(to: string, kind: string, payload: Uint8Array): void {
    try {
      this.#o.client.send({ to, channel: AI_CHANNEL, kind, payload });
    } catch (err) {
      // Queue full or closed: viewers miss output now and get it back from the scrollback on reconnect.
      this.#o.logger.debug('ai: frame not sent', { to, error: (err as Error).message });
    }
  }
}
