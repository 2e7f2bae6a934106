/** @module Sizes of the transfer and the one check of a set of files against `--max-artifact-bytes`. */
import { ArtifactError } from './errors.js';

/**
 * Bytes per chunk. Each chunk costs a fixed amount of work in all three processes (an envelope, a
 * seal, an ack back), so larger chunks carry more bytes per CPU second: 1 MiB moved ~30% more than
 * 256 KiB in the artifacts bench. A relay whose frame limit is lower gets smaller chunks (see
 * `ArtifactSender`).
 */
export const ARTIFACT_CHUNK_BYTES = 1024 * 1024;
/** The sender halves its chunks down to this when the relay's frame limit refuses them. */
export const MIN_CHUNK_BYTES = 16 * 1024;
export const DEFAULT_MAX_ARTIFACT_BYTES = 1024 * 1024 * 1024;
/** Unacknowledged bytes one transfer may have in flight (planner, relay and peer buffers together). */
export const ARTIFACT_WINDOW_BYTES = 8 * 1024 * 1024;
/** Files in one announcement, at most: bounds the state both ends keep per transfer. */
export const MAX_ARTIFACT_FILES = 10_000;
/** Transfers at least this large report progress as task events. */
export const PROGRESS_MIN_BYTES = 8 * 1024 * 1024;
/** Named in size errors when the caller does not name its program. */
export const LIMIT_FLAG = '--max-artifact-bytes';

/**
 * Refuses a set of files over the per-file / per-task limit, naming the flag of the program that set
 * it. `already` counts bytes of the same task announced before (a second round of input files).
 */
export function checkArtifactLimit(
  files: readonly { name: string; size: number }[],
  maxBytes: number,
  flag = LIMIT_FLAG,
  already = 0,
): void {
  if (files.length > MAX_ARTIFACT_FILES) {
    throw new ArtifactError(
      'too_large',
      `${files.length} files, more than ${MAX_ARTIFACT_FILES} per transfer`,
    );
  }
  let total = already;
  for (const f of files) {
    if (f.size > maxBytes) {
      throw new ArtifactError(
        'too_large',
        `artifact ${f.name} is ${f.size} bytes, over the limit of ${maxBytes} bytes (${flag})`,
      );
    }
    total += f.size;
  }
  if (total > maxBytes) {
    throw new ArtifactError(
      'too_large',
      `the files total ${total} bytes, over the limit of ${maxBytes} bytes per task (${flag})`,
    );
  }
}
