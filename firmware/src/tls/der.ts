/**
 * A minimal DER reader (ITU-T X.690 §8.1, §10): enough to walk an X.509 certificate without trusting it.
 * Definite lengths only, at most four length octets; every read is bounds-checked against its parent, so a
 * truncated or lying length is an error, never an out-of-range read. Pure: runs under XS and Node.
 */

export interface Tlv {
  /** The identifier octet (class, constructed bit, tag number < 31). */
  tag: number;
  /** Offset of the identifier octet in the buffer. */
  start: number;
  /** Offset of the first content octet. */
  valueStart: number;
  /** Offset just past the last content octet. */
  end: number;
}

export class DerError extends Error {
  constructor(message: string) {
    super(`DER: ${message}`);
    this.name = "DerError";
  }
}

export const DerTag = Object.freeze({
  BOOLEAN: 0x01,
  INTEGER: 0x02,
  BIT_STRING: 0x03,
  OCTET_STRING: 0x04,
  OID: 0x06,
  UTC_TIME: 0x17,
  GENERALIZED_TIME: 0x18,
  SEQUENCE: 0x30,
  SET: 0x31,
} as const);

/** Reads the TLV at `offset`, which must end at or before `limit`. */
export function readTlv(bytes: Uint8Array, offset: number, limit: number = bytes.length): Tlv {
  if (offset + 2 > limit) throw new DerError("truncated header");
  const tag = bytes[offset]!;
  // High tag numbers (0x1f) never occur in certificates; refusing them keeps the reader small.
  if ((tag & 0x1f) === 0x1f) throw new DerError("high tag numbers are not supported");
  let length = bytes[offset + 1]!;
  let valueStart = offset + 2;
  if (length & 0x80) {
    const n = length & 0x7f;
    if (n === 0) throw new DerError("indefinite length is not DER");
    if (n > 4) throw new DerError("length too large");
    if (valueStart + n > limit) throw new DerError("truncated length");
    length = 0;
    for (let i = 0; i < n; i++) length = length * 256 + bytes[valueStart + i]!;
    valueStart += n;
  }
  const end = valueStart + length;
  if (end > limit) throw new DerError("content runs past its container");
  return { tag, start: offset, valueStart, end };
}

/** Reads a TLV and checks its tag. */
export function expectTlv(bytes: Uint8Array, offset: number, limit: number, tag: number, what: string): Tlv {
  const tlv = readTlv(bytes, offset, limit);
  if (tlv.tag !== tag) throw new DerError(`${what}: expected tag 0x${hex2(tag)}, found 0x${hex2(tlv.tag)}`);
  return tlv;
}

/** The children of a constructed TLV, in order. */
export function children(bytes: Uint8Array, parent: Tlv): Tlv[] {
  const out: Tlv[] = [];
  let at = parent.valueStart;
  while (at < parent.end) {
    const child = readTlv(bytes, at, parent.end);
    out.push(child);
    at = child.end;
  }
  return out;
}

/** Dotted form of an OBJECT IDENTIFIER's content (X.690 §8.19). */
export function oidString(bytes: Uint8Array, tlv: Tlv): string {
  if (tlv.tag !== DerTag.OID || tlv.end === tlv.valueStart) throw new DerError("not an OID");
  const arcs: number[] = [];
  let value = 0;
  for (let i = tlv.valueStart; i < tlv.end; i++) {
    const b = bytes[i]!;
    value = value * 128 + (b & 0x7f);
    if (value > Number.MAX_SAFE_INTEGER / 128) throw new DerError("OID arc too large");
    if (!(b & 0x80)) {
      if (arcs.length === 0) {
        const first = value < 80 ? Math.floor(value / 40) : 2;
        arcs.push(first, value - first * 40);
      } else arcs.push(value);
      value = 0;
    }
  }
  if (bytes[tlv.end - 1]! & 0x80) throw new DerError("OID ends inside an arc");
  return arcs.join(".");
}

/** A small non-negative INTEGER (pathLenConstraint and the like). */
export function smallInteger(bytes: Uint8Array, tlv: Tlv): number {
  if (tlv.tag !== DerTag.INTEGER) throw new DerError("not an INTEGER");
  const n = tlv.end - tlv.valueStart;
  if (n < 1 || n > 4 || bytes[tlv.valueStart]! & 0x80) throw new DerError("INTEGER out of range");
  let v = 0;
  for (let i = tlv.valueStart; i < tlv.end; i++) v = v * 256 + bytes[i]!;
  return v;
}

/** UTCTime (YYMMDDHHMMSSZ, RFC 5280 §4.1.2.5.1) or GeneralizedTime (YYYYMMDDHHMMSSZ) as ms since the epoch. */
export function timeValue(bytes: Uint8Array, tlv: Tlv): number {
  let text = "";
  for (let i = tlv.valueStart; i < tlv.end; i++) text += String.fromCharCode(bytes[i]!);
  let m: RegExpExecArray | null;
  let year: number;
  if (tlv.tag === DerTag.UTC_TIME) {
    m = /^(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/.exec(text);
    if (!m) throw new DerError("malformed UTCTime");
    const yy = Number(m[1]);
    year = yy >= 50 ? 1900 + yy : 2000 + yy;
  } else if (tlv.tag === DerTag.GENERALIZED_TIME) {
    m = /^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/.exec(text);
    if (!m) throw new DerError("malformed GeneralizedTime");
    year = Number(m[1]);
  } else throw new DerError("not a time");
  return Date.UTC(year, Number(m[2]) - 1, Number(m[3]), Number(m[4]), Number(m[5]), Number(m[6]));
}

export function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i]! ^ b[i]!;
  return diff === 0;
}

function hex2(n: number): string {
  return (n < 16 ? "0" : "") + n.toString(16);
}
