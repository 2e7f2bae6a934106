/**
 * @module Protobuf wire encoding by hand for the few messages that carry bulk bytes (envelope frames,
 * artifact chunks): sizes first, then one buffer of the exact size, so a payload is copied once.
 * protobuf-es grows its buffer by doubling (zero-filled) and copies the result again, which for
 * megabytes of payload costs more than the rest of the work on them. Pure: no I/O.
 */

const WIRE_VARINT = 0;
const WIRE_LEN = 2;

export const varintSize = (n: number): number =>
  n < 0x80 ? 1 : n < 0x4000 ? 2 : n < 0x200000 ? 3 : n < 0x10000000 ? 4 : 5;

function varint64Size(n: bigint): number {
  // Sequence numbers fit in 32 bits almost always, and Number arithmetic is far cheaper than BigInt.
  if (n >= 0n && n <= 0xffffffffn) return varintSize(Number(n));
  let size = 1;
  for (let v = BigInt.asUintN(64, n) >> 7n; v > 0n; v >>= 7n) size++;
  return size;
}

function writeVarint(buf: Buffer, pos: number, n: number): number {
  while (n > 0x7f) {
    buf[pos++] = (n & 0x7f) | 0x80;
    n >>>= 7;
  }
  buf[pos++] = n;
  return pos;
}

function writeVarint64(buf: Buffer, pos: number, n: bigint): number {
  if (n >= 0n && n <= 0xffffffffn) return writeVarint(buf, pos, Number(n));
  let v = BigInt.asUintN(64, n);
  while (v > 0x7fn) {
    buf[pos++] = Number(v & 0x7fn) | 0x80;
    v >>= 7n;
  }
  buf[pos++] = Number(v);
  return pos;
}

// Sizes of proto3 fields with numbers 1-15 (one tag byte); a default value is not written at all.

/** A length-delimited field (string or bytes, or a message) of `len` bytes. */
export const lenFieldSize = (len: number): number => (len === 0 ? 0 : 1 + varintSize(len) + len);
export const uint64FieldSize = (n: bigint): number => (n === 0n ? 0 : 1 + varint64Size(n));

/** Writes the tag and length of a length-delimited field; its `len` bytes follow. */
export function writeLenHeader(buf: Buffer, pos: number, field: number, len: number): number {
  buf[pos++] = (field << 3) | WIRE_LEN;
  return writeVarint(buf, pos, len);
}

/** Up to this length, ASCII strings are measured and copied in JS (see {@link writeString}). */
const SHORT_ASCII = 64;

/** UTF-8 length of a string, counted in JS for short ASCII ones. */
export function utf8Length(s: string): number {
  if (s.length > SHORT_ASCII) return Buffer.byteLength(s);
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) > 0x7f) return Buffer.byteLength(s);
  return s.length;
}

/** A string field whose UTF-8 length ({@link utf8Length}) is `len`. */
export function writeString(buf: Buffer, pos: number, field: number, s: string, len: number): number {
  if (len === 0) return pos;
  pos = writeLenHeader(buf, pos, field, len);
  // Ids, channels and kinds are short ASCII (UTF-8 length = string length): a loop beats the native
  // call's overhead for them.
  if (len === s.length && len <= SHORT_ASCII) {
    for (let i = 0; i < len; i++) buf[pos + i] = s.charCodeAt(i);
    return pos + len;
  }
  return pos + buf.write(s, pos, len, 'utf8');
}

export function writeBytes(buf: Buffer, pos: number, field: number, bytes: Uint8Array): number {
  if (bytes.byteLength === 0) return pos;
  pos = writeLenHeader(buf, pos, field, bytes.byteLength);
  buf.set(bytes, pos);
  return pos + bytes.byteLength;
}

export function writeUint64(buf: Buffer, pos: number, field: number, n: bigint): number {
  if (n === 0n) return pos;
  buf[pos++] = (field << 3) | WIRE_VARINT;
  return writeVarint64(buf, pos, n);
}

export function writeBool(buf: Buffer, pos: number, field: number, b: boolean): number {
  if (!b) return pos;
  buf[pos++] = (field << 3) | WIRE_VARINT;
  buf[pos++] = 1;
  return pos;
}

/** Fields a newer peer added, kept by protobuf-es as `$unknown`: passed on as toBinary would. */
export type UnknownFields = { no: number; wireType: number; data: Uint8Array }[] | undefined;

export function unknownFieldsSize(unknown: UnknownFields): number {
  let size = 0;
  for (const u of unknown ?? []) size += varintSize(((u.no << 3) | u.wireType) >>> 0) + u.data.byteLength;
  return size;
}

export function writeUnknownFields(buf: Buffer, pos: number, unknown: UnknownFields): number {
  for (const u of unknown ?? []) {
    pos = writeVarint(buf, pos, ((u.no << 3) | u.wireType) >>> 0);
    buf.set(u.data, pos);
    pos += u.data.byteLength;
  }
  return pos;
}
