/**
 * @module A JSON-RPC conversation with a CLI, kept as JSON lines in the task's output folder
 * (`{dir, message}` per line) so that a failed task can be read afterwards. Writing it never fails a task.
 */
import { createWriteStream } from 'node:fs';

export interface Transcript {
  /** Records one line as sent or received; kept raw when it is not JSON. */
  record(dir: 'sent' | 'received', line: string): void;
  /** Flushes and closes the file. */
  end(): Promise<void>;
}

export function openTranscript(path: string): Transcript {
  const out = createWriteStream(path);
  out.on('error', () => {});
  return {
    record(dir, line) {
      let message: unknown = line;
      try {
        message = JSON.parse(line);
      } catch {
        // keep the raw line
      }
      out.write(`${JSON.stringify({ dir, message })}\n`);
    },
    end: () => new Promise<void>((resolve) => out.end(resolve)),
  };
}
