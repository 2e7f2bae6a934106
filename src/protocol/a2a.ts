/**
 * @module A2A message types (`a2a-mcp-v1`), generated from proto/nfltr/v1/a2a.proto, plus the task
 * state names exactly as the product documents give them.
 */
import { create, toBinary } from '@bufbuild/protobuf';
import { type A2aMessage, A2aMessageSchema, type ArtifactChunk, TaskState } from './gen/nfltr/v1/a2a_pb.js';
import { encodeHttpDataFrame } from './http-proxy.js';
import {
  lenFieldSize,
  uint64FieldSize,
  unknownFieldsSize,
  utf8Length,
  varintSize,
  writeBool,
  writeLenHeader,
  writeString,
  writeUint64,
  writeUnknownFields,
} from './wire-writer.js';

export * from './gen/nfltr/v1/a2a_pb.js';

export const A2A_PROTOCOL = 'a2a-mcp-v1';

export type TaskStateName = 'accepted' | 'running' | 'waiting_input' | 'completed' | 'failed' | 'cancelled';

const NAMES: Record<TaskStateName, TaskState> = {
  accepted: TaskState.ACCEPTED,
  running: TaskState.RUNNING,
  waiting_input: TaskState.WAITING_INPUT,
  completed: TaskState.COMPLETED,
  failed: TaskState.FAILED,
  cancelled: TaskState.CANCELLED,
};

export const taskStateFromName = (name: TaskStateName): TaskState => NAMES[name];

export function taskStateName(state: TaskState): TaskStateName | undefined {
  for (const [name, value] of Object.entries(NAMES)) if (value === state) return name as TaskStateName;
  return undefined;
}

export const TERMINAL_STATES: ReadonlySet<TaskStateName> = new Set(['completed', 'failed', 'cancelled']);

/** Probes and their results travel on this channel; task messages on the task id. */
export const PROBE_CHANNEL = 'probe';
/** The A2A handshake, its refusals and re-keys travel on this channel. */
export const HANDSHAKE_CHANNEL = 'handshake';

/**
 * The one task-id rule, on both ends: a task id is its channel and the worker's folder name, so a
 * conservative alphabet, no leading dot or dash, and never a channel the protocol reserves.
 */
const TASK_ID_RE = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/;

/** Checks a task id; returns the problem in words, or undefined when it is fine. */
export function taskIdProblem(id: string): string | undefined {
  if (TASK_ID_RE.test(id) && id !== PROBE_CHANNEL && id !== HANDSHAKE_CHANNEL) return undefined;
  return `task_id ${JSON.stringify(id)} is not usable: 1-128 characters of letters, digits, '.', '_', ':' or '-', starting with a letter or digit, and not ${PROBE_CHANNEL} or ${HANDSHAKE_CHANNEL}`;
}

/** Why a task failed (TaskEvent.reason of a `failed` event). */
export type FailureReason =
  // Written by the worker.
  | 'executor_unavailable'
  | 'executor_failed'
  | 'executor_crashed'
  | 'worker_error'
  | 'worker_restarted'
  | 'worker_shutdown'
  | 'timeout'
  | 'e2ee_violation'
  | 'artifact_error'
  | 'lease_expired'
  // Decided by the planner itself.
  | 'worker_lost'
  | 'artifact_integrity';

/** Why a worker refuses a TaskStart or another task message (TaskRefused.reason). */
export type RefusalReason =
  | 'no_free_slots'
  | 'duplicate_task_id'
  | 'draining'
  | 'invalid_task'
  | 'executor_unavailable'
  | 'unknown_task';

/**
 * An answer (Respond `content_json`, parsed) as the elicitation `content` object its question wants: an
 * object is used as it is; a bare value goes into the schema's first required property (else its first
 * property, else `answer`). The planner checks the result against the schema; the worker hands it on.
 */
export function answerObject(
  value: unknown,
  schema: { required?: string[]; properties?: Record<string, unknown> } | undefined,
): Record<string, unknown> {
  if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
    return value as Record<string, unknown>;
  }
  const key = schema?.required?.[0] ?? Object.keys(schema?.properties ?? {})[0] ?? 'answer';
  return { [key]: value };
}

/** A2aMessage.artifact_chunk (a2a.proto). */
const ARTIFACT_CHUNK_FIELD = 10;

/**
 * `A2aMessage{artifact_chunk}` encoded by hand (see ./wire-writer.ts) as three parts, the chunk's data
 * in the middle untouched: chunks are nearly all of the bytes a task channel carries, and a sealing
 * end encrypts the parts one after the other, so the data is never copied before encryption. The
 * parts joined are the bytes toBinary writes.
 */
function artifactChunkParts(c: ArtifactChunk): [Buffer, Uint8Array, Buffer] {
  const taskId = utf8Length(c.taskId);
  const name = utf8Length(c.name);
  const sha = utf8Length(c.chunkSha256);
  const dataLen = c.data.byteLength;
  const tailSize = lenFieldSize(sha) + (c.last ? 2 : 0) + unknownFieldsSize(c.$unknown);
  const size =
    lenFieldSize(taskId) + lenFieldSize(name) + uint64FieldSize(c.offset) + lenFieldSize(dataLen) + tailSize;
  // Everything up to the data's bytes (their field header included when there are any).
  const headSize = 1 + varintSize(size) + size - tailSize - dataLen;
  const head = Buffer.allocUnsafe(headSize);
  let pos = writeLenHeader(head, 0, ARTIFACT_CHUNK_FIELD, size);
  pos = writeString(head, pos, 1, c.taskId, taskId);
  pos = writeString(head, pos, 2, c.name, name);
  pos = writeUint64(head, pos, 3, c.offset);
  if (dataLen > 0) writeLenHeader(head, pos, 4, dataLen);
  const tail = Buffer.allocUnsafe(tailSize);
  writeUnknownFields(
    tail,
    writeBool(tail, writeString(tail, 0, 5, c.chunkSha256, sha), 6, c.last),
    c.$unknown,
  );
  return [head, c.data, tail];
}

/** A2aMessage.http's field number: `proxy_request` body chunks are encoded like artifact chunks. */
const A2A_HTTP_FIELD = A2aMessageSchema.field.http!.number;

/**
 * Encodes one A2A message as parts whose concatenation is its encoding: an artifact chunk's data stays
 * its own part (see {@link artifactChunkParts}); any other message is one part.
 */
export const encodeA2aParts = (msg: A2aMessage['msg']): Uint8Array[] =>
  msg.case === 'artifactChunk' ? artifactChunkParts(msg.value) : [encodeA2aMessage(msg)];

/** Encodes one A2A message. */
export const encodeA2aMessage = (msg: A2aMessage['msg']): Uint8Array =>
  (msg.case === 'artifactChunk' ? Buffer.concat(artifactChunkParts(msg.value)) : undefined) ??
  (msg.case === 'http' ? encodeHttpDataFrame(A2A_HTTP_FIELD, msg.value) : undefined) ??
  toBinary(A2aMessageSchema, create(A2aMessageSchema, { msg }));
