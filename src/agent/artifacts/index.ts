/**
 * @module Files over an A2A task channel, both ways (planner → worker input files, worker → planner
 * results). Names are sanitised; every chunk carries its own SHA-256 and the whole file is checked
 * against the announced one; writes stay inside one folder. The receiver acknowledges what it wrote
 * (`ArtifactAck`), which gives end-to-end flow control (at most a window of unacknowledged bytes in
 * flight, however slow the other end) and resumption: after a reconnect the sender sends each unfinished
 * file again from its acknowledged offset, and the receiver, which kept the partial file (across its own
 * restart too), skips what it already has.
 *
 * Transfer flow, per task channel:
 *   sender:   [announce: TaskStart.input_files / Respond.files, or later: TaskEvent.artifacts]
 *             ArtifactChunk{name, offset, data, chunk_sha256, last} …   (≤ window unacknowledged)
 *   receiver: ArtifactAck{name, offset} per chunk written; {done} once the file is whole on disk (and
 *             verified when announced); {error} when it discarded the file; {resend} when a chunk came
 *             past a hole.
 *
 * Layers, each file importing only those above it: errors, names, limits → local-files, progress →
 * send-window, receive-ledger (pure) → sender, receiver (I/O and time). This list is the public surface.
 */
export { ArtifactError } from './errors.js';
export {
  ARTIFACT_CHUNK_BYTES,
  ARTIFACT_WINDOW_BYTES,
  checkArtifactLimit,
  DEFAULT_MAX_ARTIFACT_BYTES,
  MAX_ARTIFACT_FILES,
  PROGRESS_MIN_BYTES,
} from './limits.js';
export {
  describeFiles,
  hashFile,
  type LocalFile,
  listFiles,
  resolveLocalPaths,
  walkFiles,
} from './local-files.js';
export { assertUniqueNames, sanitizeArtifactName } from './names.js';
export { ProgressThrottle, progressText } from './progress.js';
export {
  ArtifactReceiver,
  type ArtifactReceiverOptions,
  type ExpectOptions,
  type ReceivedFile,
  type VerifyOutcome,
} from './receiver.js';
export {
  ArtifactSender,
  type ArtifactSenderOptions,
  type ChunkRef,
  parseChunkRef,
  type SendReport,
} from './sender.js';
