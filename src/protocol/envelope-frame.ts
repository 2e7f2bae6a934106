/**
 * @module The two frames that carry envelopes (`AgentFrame.envelopes`, `RelayFrame.envelopes`),
 * encoded by hand (see ./wire-writer.ts): one buffer of the exact size, one copy of each payload.
 * The bytes are the ones toBinary writes (test/protocol/wire-writer.test.ts). Pure: no I/O.
 */
import type { Envelope } from './gen/nfltr/v1/control_pb.js';
import {
  lenFieldSize,
  uint64FieldSize,
  unknownFieldsSize,
  utf8Length,
  varintSize,
  writeBytes,
  writeLenHeader,
  writeString,
  writeUint64,
  writeUnknownFields,
} from './wire-writer.js';

/** Field numbers of the EnvelopeBatch in AgentFrame and in RelayFrame (control.proto). */
const AGENT_FRAME_ENVELOPES = 3;
const RELAY_FRAME_ENVELOPES = 2;
/** Per envelope in `sizes`: UTF-8 lengths of to, from, channel, kind, then the envelope's size. */
const STRIDE = 5;

function encodeEnvelopesFrame(frameField: number, envelopes: readonly Envelope[]): Buffer {
  const sizes: number[] = [];
  let batchSize = 0;
  for (const e of envelopes) {
    const to = utf8Length(e.to);
    const from = utf8Length(e.from);
    const channel = utf8Length(e.channel);
    const kind = utf8Length(e.kind);
    const size =
      lenFieldSize(to) +
      lenFieldSize(from) +
      lenFieldSize(channel) +
      uint64FieldSize(e.seq) +
      lenFieldSize(kind) +
      lenFieldSize(e.payload.byteLength) +
      unknownFieldsSize(e.$unknown);
    sizes.push(to, from, channel, kind, size);
    batchSize += 1 + varintSize(size) + size;
  }
  const buf = Buffer.allocUnsafe(1 + varintSize(batchSize) + batchSize);
  let pos = writeLenHeader(buf, 0, frameField, batchSize);
  for (let i = 0; i < envelopes.length; i++) {
    const e = envelopes[i]!;
    const s = i * STRIDE;
    // EnvelopeBatch.envelopes = 1; Envelope: to 1, from 2, channel 3, seq 4, kind 5, payload 6.
    pos = writeLenHeader(buf, pos, 1, sizes[s + 4]!);
    pos = writeString(buf, pos, 1, e.to, sizes[s]!);
    pos = writeString(buf, pos, 2, e.from, sizes[s + 1]!);
    pos = writeString(buf, pos, 3, e.channel, sizes[s + 2]!);
    pos = writeUint64(buf, pos, 4, e.seq);
    pos = writeString(buf, pos, 5, e.kind, sizes[s + 3]!);
    pos = writeBytes(buf, pos, 6, e.payload);
    pos = writeUnknownFields(buf, pos, e.$unknown);
  }
  return buf;
}

/** `AgentFrame{envelopes: EnvelopeBatch{envelopes}}`, encoded. */
export const encodeAgentEnvelopes = (envelopes: readonly Envelope[]): Buffer =>
  encodeEnvelopesFrame(AGENT_FRAME_ENVELOPES, envelopes);

/** `RelayFrame{envelopes: EnvelopeBatch{envelopes}}`, encoded. */
export const encodeRelayEnvelopes = (envelopes: readonly Envelope[]): Buffer =>
  encodeEnvelopesFrame(RELAY_FRAME_ENVELOPES, envelopes);
