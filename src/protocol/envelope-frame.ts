/**
 * @module The two frames that carry envelopes (`AgentFrame.envelopes`, `RelayFrame.envelopes`),
 * encoded by hand (see ./wire-writer.ts): one buffer of the exact size, one copy of each payload.
 * The bytes are the ones toBinary writes (test/protocol/wire-writer.test.ts). Pure: no I/O.
 */
import { type OutEnvelope, payloadLength } from './control.js';
import {
  lenFieldSize,
  uint64FieldSize,
  unknownFieldsSize,
  utf8Length,
  varintSize,
  writeLenHeader,
  writeString,
  writeUint64,
  writeUnknownFields,
} from './wire-writer.js';

/** Field numbers of the EnvelopeBatch in AgentFrame and in RelayFrame (control.proto). */
const AGENT_FRAME_ENVELOPES = 3;
const RELAY_FRAME_ENVELOPES = 2;
/** Per envelope in `sizes`: UTF-8 lengths of to, from, channel, kind, payload, then the envelope's size. */
const STRIDE = 6;

/** Where an encoder gets its frame buffer (a {@link FramePool}'s `take`); contents need not be zero. */
export type FrameAlloc = (size: number) => Buffer;

function encodeEnvelopesFrame(
  frameField: number,
  envelopes: readonly OutEnvelope[],
  alloc: FrameAlloc = Buffer.allocUnsafe,
): Buffer {
  const sizes: number[] = [];
  let batchSize = 0;
  for (const e of envelopes) {
    const to = utf8Length(e.to);
    const from = utf8Length(e.from);
    const channel = utf8Length(e.channel);
    const kind = utf8Length(e.kind);
    const payload = payloadLength(e.payload);
    const size =
      lenFieldSize(to) +
      lenFieldSize(from) +
      lenFieldSize(channel) +
      uint64FieldSize(e.seq) +
      lenFieldSize(kind) +
      lenFieldSize(payload) +
      unknownFieldsSize(e.$unknown);
    sizes.push(to, from, channel, kind, payload, size);
    batchSize += 1 + varintSize(size) + size;
  }
  const buf = alloc(1 + varintSize(batchSize) + batchSize);
  let pos = writeLenHeader(buf, 0, frameField, batchSize);
  for (let i = 0; i < envelopes.length; i++) {
    const e = envelopes[i]!;
    const s = i * STRIDE;
    // EnvelopeBatch.envelopes = 1; Envelope: to 1, from 2, channel 3, seq 4, kind 5, payload 6.
    pos = writeLenHeader(buf, pos, 1, sizes[s + 5]!);
    pos = writeString(buf, pos, 1, e.to, sizes[s]!);
    pos = writeString(buf, pos, 2, e.from, sizes[s + 1]!);
    pos = writeString(buf, pos, 3, e.channel, sizes[s + 2]!);
    pos = writeUint64(buf, pos, 4, e.seq);
    pos = writeString(buf, pos, 5, e.kind, sizes[s + 3]!);
    pos = writePayload(buf, pos, e.payload, sizes[s + 4]!);
    pos = writeUnknownFields(buf, pos, e.$unknown);
  }
  return buf;
}

/** Envelope.payload (field 6) of `len` bytes, copied part by part when in parts. */
function writePayload(buf: Buffer, pos: number, payload: OutEnvelope['payload'], len: number): number {
  if (len === 0) return pos;
  pos = writeLenHeader(buf, pos, 6, len);
  // Whole is what the relay routes, every envelope: no array made for it.
  if (payload instanceof Uint8Array) {
    buf.set(payload, pos);
    return pos + len;
  }
  for (const part of payload) {
    buf.set(part, pos);
    pos += part.byteLength;
  }
  return pos;
}

/** `AgentFrame{envelopes: EnvelopeBatch{envelopes}}`, encoded. */
export const encodeAgentEnvelopes = (envelopes: readonly OutEnvelope[], alloc?: FrameAlloc): Buffer =>
  encodeEnvelopesFrame(AGENT_FRAME_ENVELOPES, envelopes, alloc);

/** `RelayFrame{envelopes: EnvelopeBatch{envelopes}}`, encoded. */
export const encodeRelayEnvelopes = (envelopes: readonly OutEnvelope[], alloc?: FrameAlloc): Buffer =>
  encodeEnvelopesFrame(RELAY_FRAME_ENVELOPES, envelopes, alloc);
