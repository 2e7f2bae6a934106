/**
 * @module A guard in front of the MCP SDK's stdio transport: it passes whole lines (messages) on and
 * drops any line longer than a bound, answering the client with a JSON-RPC error. The SDK's own read
 * buffer (10 MiB) treats an oversized message as fatal: it closes its transport and the planner goes
 * deaf while it still holds its state-dir lock.
 */
import { Transform, type TransformCallback } from 'node:stream';

/** Longest MCP message the planner reads; below the SDK's 10 MiB buffer. Files travel by path. */
export const MAX_MCP_MESSAGE_BYTES = 8 * 1024 * 1024;

/** The start and end of an oversized message kept to find its request id (clients put it first or last). */
const EDGE_BYTES = 4096;

/** A JSON string or integer. */
const ID_VALUE = String.raw`("(?:[^"\\]|\\.)*"|-?\d+)`;
/** `"id": …}` closing the message, or `{"id": …` / `{"jsonrpc": "2.0", "id": …` opening it. */
const ID_LAST = new RegExp(String.raw`"id"\s*:\s*${ID_VALUE}\s*\}\s*$`);
const ID_FIRST = new RegExp(String.raw`^\s*\{\s*(?:"jsonrpc"\s*:\s*"2\.0"\s*,\s*)?"id"\s*:\s*${ID_VALUE}`);

/** JSON-RPC's "invalid request". */
const INVALID_REQUEST = -32600;

export class LineLimit extends Transform {
  readonly #max: number;
  readonly #onOversize: (edges: string, bytes: number) => void;
  /** The current line while it may still fit. */
  #parts: Buffer[] = [];
  #length = 0;
  /** Set while the rest of an oversized line is skipped: its first bytes, and its last ones so far. */
  #dropping: { head: Buffer; tail: Buffer } | undefined;

  constructor(opts: { maxBytes: number; onOversize: (edges: string, bytes: number) => void }) {
    super();
    this.#max = opts.maxBytes;
    this.#onOversize = opts.onOversize;
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    let start = 0;
    while (start < chunk.length) {
      const nl = chunk.indexOf(10, start);
      const end = nl < 0 ? chunk.length : nl + 1;
      const piece = chunk.subarray(start, end);
      start = end;
      this.#length += piece.length;
      if (this.#dropping === undefined && this.#length > this.#max + 1) {
        this.#dropping = {
          head: Buffer.concat([...this.#parts, piece]).subarray(0, EDGE_BYTES),
          tail: piece,
        };
        this.#parts = [];
      } else if (this.#dropping) {
        this.#dropping.tail = Buffer.concat([this.#dropping.tail, piece]).subarray(-EDGE_BYTES);
      }
      if (this.#dropping === undefined) this.#parts.push(piece);
      if (nl < 0) continue;
      if (this.#dropping) {
        const { head, tail } = this.#dropping;
        this.#onOversize(
          `${head.toString('utf8')}\n${tail.subarray(-EDGE_BYTES).toString('utf8')}`,
          this.#length - 1,
        );
      } else this.push(Buffer.concat(this.#parts));
      this.#parts = [];
      this.#length = 0;
      this.#dropping = undefined;
    }
    done();
  }

  override _flush(done: TransformCallback): void {
    if (this.#dropping === undefined && this.#length > 0) this.push(Buffer.concat(this.#parts));
    done();
  }
}

/**
 * The JSON-RPC error line answering an oversized message: with its id when the message's first or
 * last member is one (`edges` is its start, a newline, and its end).
 */
export function oversizeError(edges: string, bytes: number, maxBytes: number): string {
  const id = ID_LAST.exec(edges)?.[1] ?? ID_FIRST.exec(edges)?.[1];
  return `${JSON.stringify({
    jsonrpc: '2.0',
    id: id === undefined ? null : JSON.parse(id),
    error: {
      code: INVALID_REQUEST,
      message: `message of ${bytes} bytes exceeds nfltr mcp's limit of ${maxBytes} bytes and was dropped; pass large content as files (artifact_files) instead`,
    },
  })}\n`;
}
