/**
 * @module Splits a text stream into lines, keeping a partial last line until more data or the end. Only
 * the new chunk is searched for line breaks, so a line of many megabytes costs linear time.
 */

export interface LineSplitter {
  push(chunk: string): void;
  /** Emits a last line that had no line break, if any. */
  end(): void;
}

/** Calls `emit` once per complete line, without its `\n` (or `\r\n`). */
export function lineSplitter(emit: (line: string) => void): LineSplitter {
  let pending = '';
  return {
    push(chunk) {
      let nl = chunk.indexOf('\n');
      if (nl === -1) {
        pending += chunk;
        return;
      }
      emit((pending + chunk.slice(0, nl)).replace(/\r$/, ''));
      let start = nl + 1;
      for (nl = chunk.indexOf('\n', start); nl !== -1; nl = chunk.indexOf('\n', start)) {
        emit(chunk.slice(start, nl).replace(/\r$/, ''));
        start = nl + 1;
      }
      pending = chunk.slice(start);
    },
    end() {
      if (pending !== '') emit(pending.replace(/\r$/, ''));
      pending = '';
    },
  };
}
