/**
 * @module JSON-RPC 2.0 over newline-delimited JSON, both directions on one pipe pair: what the Agent
 * Client Protocol (ACP) runs on (https://agentclientprotocol.com/protocol/v1/overview), and Codex's
 * app-server too. Framing and correlation only; the ACP methods live in acp.ts. The peer does no I/O
 * itself: it is fed lines and given a `write` function, so it can be tested without a process.
 */

/** An error response from the other side (`code`, `message`, `data` as sent). */
export class RpcError extends Error {
  constructor(
    readonly code: number,
    message: string,
    readonly data?: unknown,
  ) {
    super(message);
    this.name = 'RpcError';
  }

  /** The message plus any detail the peer put in `data`, for a human. */
  describe(): string {
    const d = this.data;
    const detail =
      typeof d === 'string'
        ? d
        : d && typeof d === 'object' && typeof (d as { details?: unknown }).details === 'string'
          ? (d as { details: string }).details
          : d && typeof d === 'object' && typeof (d as { message?: unknown }).message === 'string'
            ? (d as { message: string }).message
            : d !== undefined && d !== null
              ? JSON.stringify(d)
              : '';
    return `${this.message}${detail && detail !== this.message ? `: ${detail}` : ''} (JSON-RPC error ${this.code})`;
  }
}

/** JSON-RPC error codes we send. */
export const METHOD_NOT_FOUND = -32601;
export const INTERNAL_ERROR = -32603;

export interface RpcHandlers {
  /** An incoming request; resolve with the result or throw an {@link RpcError}. */
  request(method: string, params: unknown): Promise<unknown>;
  /** An incoming notification. */
  notification(method: string, params: unknown): void;
  /** A line that is not a JSON-RPC message (logged by the caller; never fatal). */
  stray?(line: string): void;
}

type Pending = { resolve: (v: unknown) => void; reject: (e: Error) => void };

export class JsonRpcPeer {
  readonly #pending = new Map<number, Pending>();
  #nextId = 1;
  #closed: Error | undefined;

  constructor(
    private readonly write: (line: string) => void,
    private readonly handlers: RpcHandlers,
  ) {}

  /** Sends a request and resolves with its result; rejects with an {@link RpcError} or the close reason. */
  request<T = unknown>(method: string, params: unknown): Promise<T> {
    if (this.#closed) return Promise.reject(this.#closed);
    const id = this.#nextId++;
    return new Promise<T>((resolve, reject) => {
      this.#pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.write(`${JSON.stringify({ jsonrpc: '2.0', id, method, params })}\n`);
    });
  }

  notify(method: string, params: unknown): void {
    if (this.#closed) return;
    this.write(`${JSON.stringify({ jsonrpc: '2.0', method, params })}\n`);
  }

  /** Feeds one received line. */
  line(line: string): void {
    if (line.trim() === '') return;
    let msg: Record<string, unknown>;
    try {
      msg = JSON.parse(line) as Record<string, unknown>;
    } catch {
      this.handlers.stray?.(line);
      return;
    }
    // Codex's app-server leaves out the `jsonrpc` member; a message that names another version is stray.
    if (!msg || typeof msg !== 'object' || (msg.jsonrpc !== undefined && msg.jsonrpc !== '2.0')) {
      this.handlers.stray?.(line);
      return;
    }
    const id = msg.id;
    if (typeof msg.method === 'string') {
      if (id === undefined || id === null) {
        this.handlers.notification(msg.method, msg.params);
        return;
      }
      this.#answer(id as string | number, msg.method, msg.params);
      return;
    }
    const waiter = typeof id === 'number' ? this.#pending.get(id) : undefined;
    if (!waiter) return; // a response to nothing we sent: ignore
    this.#pending.delete(id as number);
    if (msg.error && typeof msg.error === 'object') {
      const e = msg.error as { code?: unknown; message?: unknown; data?: unknown };
      waiter.reject(
        new RpcError(
          typeof e.code === 'number' ? e.code : INTERNAL_ERROR,
          String(e.message ?? 'error'),
          e.data,
        ),
      );
    } else {
      waiter.resolve(msg.result);
    }
  }

  #answer(id: string | number, method: string, params: unknown): void {
    this.handlers.request(method, params).then(
      (result) => {
        if (!this.#closed) this.write(`${JSON.stringify({ jsonrpc: '2.0', id, result: result ?? null })}\n`);
      },
      (err: unknown) => {
        if (this.#closed) return;
        const e =
          err instanceof RpcError
            ? err
            : new RpcError(INTERNAL_ERROR, err instanceof Error ? err.message : String(err));
        this.write(
          `${JSON.stringify({ jsonrpc: '2.0', id, error: { code: e.code, message: e.message, ...(e.data !== undefined ? { data: e.data } : {}) } })}\n`,
        );
      },
    );
  }

  /** Rejects every pending request with `reason`; later requests reject at once. */
  close(reason: Error): void {
    if (this.#closed) return;
    this.#closed = reason;
    for (const [id, p] of this.#pending) {
      this.#pending.delete(id);
      p.reject(reason);
    }
  }
}
