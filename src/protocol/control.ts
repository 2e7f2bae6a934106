/**
 * @module The control stream's wire rules: limits, protocol version, frame codec and validation.
 * The schema itself is proto/nfltr/v1/control.proto (generated into ./gen). Pure: no I/O.
 */
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import {
  type AgentFrame,
  AgentFrameSchema,
  AgentKind,
  type Envelope,
  ErrorCode,
  type Hello,
  type RelayFrame,
  RelayFrameSchema,
} from './gen/nfltr/v1/control_pb.js';
import { encodeHttpDataFrame } from './http-proxy.js';

export * from './gen/nfltr/v1/control_pb.js';

/** Version of the control protocol spoken by this build; see the changelog in control.proto. */
export const PROTOCOL_VERSION = 1;

/** Default bound on one encoded frame, either direction. `nfltr relay --max-frame-bytes` changes it. */
export const DEFAULT_MAX_FRAME_BYTES = 4 * 1024 * 1024;

/** gRPC method path of the one control-stream RPC. */
export const CONNECT_METHOD_PATH = '/nfltr.v1.Relay/Connect';

export const LIMITS = {
  agentIdChars: 128,
  labels: 64,
  labelKeyChars: 128,
  labelValueChars: 256,
  channelChars: 256,
  kindChars: 64,
  sessionTokenChars: 128,
} as const;

const AGENT_ID_RE = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;
const LABEL_KEY_RE = /^[A-Za-z0-9][A-Za-z0-9._/-]*$/;

/** A frame or field the peer sent that breaks the wire rules. Crosses the wire as a FrameError. */
export class WireError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'WireError';
  }
}

const invalid = (message: string) => new WireError(ErrorCode.INVALID_ARGUMENT, message);

function checkSize(bytes: Uint8Array, maxBytes: number, what: string): void {
  if (bytes.byteLength > maxBytes) {
    throw invalid(`${what} of ${bytes.byteLength} bytes exceeds the limit of ${maxBytes} bytes`);
  }
}

/** Decodes one agent → relay frame; throws {@link WireError} when it is oversized or malformed. */
export function decodeAgentFrame(bytes: Uint8Array, maxBytes: number): AgentFrame {
  checkSize(bytes, maxBytes, 'frame');
  let frame: AgentFrame;
  try {
    frame = fromBinary(AgentFrameSchema, bytes);
  } catch (err) {
    throw invalid(`malformed frame: ${(err as Error).message}`);
  }
  if (frame.frame.case === undefined) throw invalid('frame carries no known message');
  return frame;
}

/** Decodes one relay → agent frame; throws {@link WireError} when it is oversized or malformed. */
export function decodeRelayFrame(bytes: Uint8Array, maxBytes: number): RelayFrame {
  checkSize(bytes, maxBytes, 'frame');
  try {
    return fromBinary(RelayFrameSchema, bytes);
  } catch (err) {
    throw invalid(`malformed frame: ${(err as Error).message}`);
  }
}

/** A Buffer over the same memory: gRPC wants Buffers, and a copy per frame costs more than the codec. */
const asBuffer = (bytes: Uint8Array): Buffer => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);

export const encodeAgentFrame = (frame: AgentFrame['frame']): Buffer =>
  (frame.case === 'http'
    ? encodeHttpDataFrame(AgentFrameSchema.field.http!.number, frame.value)
    : undefined) ?? asBuffer(toBinary(AgentFrameSchema, create(AgentFrameSchema, { frame })));

export const encodeRelayFrame = (frame: RelayFrame['frame']): Buffer =>
  (frame.case === 'http'
    ? encodeHttpDataFrame(RelayFrameSchema.field.http!.number, frame.value)
    : undefined) ?? asBuffer(toBinary(RelayFrameSchema, create(RelayFrameSchema, { frame })));

/** The message every relay (and the in-memory one) uses for "nobody holds this agent". */
export const notFoundMessage = (agentId: string): string =>
  `no agent ${agentId} is connected under this account`;

/** Checks an agent id; returns the problem in words, or undefined when it is fine. */
export function agentIdProblem(id: string): string | undefined {
  if (id.length === 0) return 'agent id is empty';
  if (id.length > LIMITS.agentIdChars) return `agent id is longer than ${LIMITS.agentIdChars} characters`;
  if (!AGENT_ID_RE.test(id)) {
    return `agent id ${JSON.stringify(id)} may only hold letters, digits, '.', '_' and '-', and must start with a letter or digit`;
  }
  return undefined;
}

/** Checks a label set; returns the problem in words, or undefined when it is fine. */
export function labelsProblem(labels: Record<string, string>): string | undefined {
  const entries = Object.entries(labels);
  if (entries.length > LIMITS.labels) return `${entries.length} labels exceed the limit of ${LIMITS.labels}`;
  for (const [k, v] of entries) {
    if (k.length === 0 || k.length > LIMITS.labelKeyChars || !LABEL_KEY_RE.test(k)) {
      return `label key ${JSON.stringify(k)} must be 1-${LIMITS.labelKeyChars} characters of letters, digits, '.', '_', '/' or '-'`;
    }
    if (v.length > LIMITS.labelValueChars) {
      return `label ${k} has a value longer than ${LIMITS.labelValueChars} characters`;
    }
  }
  return undefined;
}

/** Checks a hello's identity fields; returns the first problem in words, or undefined. */
export function helloProblem(hello: Pick<Hello, 'agentId' | 'labels' | 'sessionToken'>): string | undefined {
  const token = hello.sessionToken.length;
  return (
    agentIdProblem(hello.agentId) ??
    labelsProblem(hello.labels) ??
    (token === 0 || token > LIMITS.sessionTokenChars ? 'hello carries no valid session token' : undefined)
  );
}

/** Checks an envelope header (never its payload); returns the problem in words, or undefined. */
export function envelopeProblem(env: Envelope): string | undefined {
  const to = agentIdProblem(env.to);
  if (to) return `envelope "to": ${to}`;
  if (env.channel.length > LIMITS.channelChars) {
    return `envelope channel is longer than ${LIMITS.channelChars} characters`;
  }
  if (env.kind.length === 0 || env.kind.length > LIMITS.kindChars) {
    return `envelope kind must be 1-${LIMITS.kindChars} characters`;
  }
  return undefined;
}

export type AgentKindName = 'worker' | 'planner' | 'tunnel';

const KIND_NAMES: Record<AgentKindName, AgentKind> = {
  worker: AgentKind.WORKER,
  planner: AgentKind.PLANNER,
  tunnel: AgentKind.TUNNEL,
};

export const agentKindFromName = (name: AgentKindName): AgentKind => KIND_NAMES[name];

/** Built once: a relay names the kind of every agent it lists, so the lookup must not allocate. */
const KIND_BY_VALUE = new Map(
  Object.entries(KIND_NAMES).map(([name, value]) => [value, name as AgentKindName] as const),
);

export const agentKindName = (kind: AgentKind): AgentKindName | undefined => KIND_BY_VALUE.get(kind);

/**
 * An envelope's payload, whole or as parts whose concatenation it is: a sealed frame's parts are copied
 * straight into the outgoing frame (./envelope-frame.ts) instead of being joined first.
 */
export type Payload = Uint8Array | readonly Uint8Array[];

export const payloadLength = (p: Payload): number =>
  p instanceof Uint8Array ? p.byteLength : p.reduce((n, part) => n + part.byteLength, 0);

/** An envelope on its way out: its payload may be in parts. */
export type OutEnvelope = Omit<Envelope, 'payload'> & { payload: Payload };

/** Encoded size of an envelope on the wire, close enough to bound batches without encoding twice. */
export const envelopeWireSize = (env: OutEnvelope): number =>
  payloadLength(env.payload) + envelopeHeaderSize(env);

/** {@link envelopeWireSize} less the payload. */
export const envelopeHeaderSize = (env: Pick<Envelope, 'to' | 'channel' | 'kind'> & { from?: string }) =>
  env.to.length + (env.from?.length ?? 0) + env.channel.length + env.kind.length + 24;
