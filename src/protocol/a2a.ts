/**
 * @module A2A message types (`a2a-mcp-v1`), generated from proto/nfltr/v1/a2a.proto, plus the task
 * state names exactly as the product documents give them.
 */
import { create, toBinary } from '@bufbuild/protobuf';
import { type A2aMessage, A2aMessageSchema, type ArtifactChunk, TaskState } from './gen/nfltr/v1/a2a_pb.js';
import {
  lenFieldSize,
  uint64FieldSize,
  unknownFieldsSize,
  utf8Length,
  varintSize,
  writeBool,
  writeBytes,
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
 * `A2aMessage{artifact_chunk}` encoded by hand (see ./wire-writer.ts): chunks are nearly all of the
 * bytes a task channel carries. The bytes are the ones toBinary writes.
 */
function encodeArtifactChunk(c: ArtifactChunk): Buffer {
  const taskId = utf8Length(c.taskId);
  const name = utf8Length(c.name);
  const sha = utf8Length(c.chunkSha256);
  const size =
    lenFieldSize(taskId) +
    lenFieldSize(name) +
    uint64FieldSize(c.offset) +
    lenFieldSize(c.data.byteLength) +
    lenFieldSize(sha) +
    (c.last ? 2 : 0) +
    unknownFieldsSize(c.$unknown);
  const buf = Buffer.allocUnsafe(1 + varintSize(size) + size);
  let pos = writeLenHeader(buf, 0, ARTIFACT_CHUNK_FIELD, size);
  pos = writeString(buf, pos, 1, c.taskId, taskId);
  pos = writeString(buf, pos, 2, c.name, name);
  pos = writeUint64(buf, pos, 3, c.offset);
  pos = writeBytes(buf, pos, 4, c.data);
  pos = writeString(buf, pos, 5, c.chunkSha256, sha);
  writeUnknownFields(buf, writeBool(buf, pos, 6, c.last), c.$unknown);
  return buf;
}

/** Encodes one A2A message. */
export const encodeA2aMessage = (msg: A2aMessage['msg']): Uint8Array =>
  msg.case === 'artifactChunk'
    ? encodeArtifactChunk(msg.value)
    : toBinary(A2aMessageSchema, create(A2aMessageSchema, { msg }));
