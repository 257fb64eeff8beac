// The end-to-end confirmation the ingest sends a board on `electrolyser/<id>/down/stored` (topics.ts): which
// readings of one boot the store holds durably, so the board may forget them. PUBACK is hop by hop (the broker
// has it, maybe only in RAM); this says the reading is on the store's disk.
//
// Binary, not JSON: the board decodes it with a DataView and fixed offsets (no parser, no allocation beyond
// the ranges, no number-vs-string ambiguity), it is 14 bytes in the usual case (one range) against ~35 for
// the same in JSON, and a strict length check rejects every malformed or truncated message.
//
//   offset 0  u8      version, 1
//   offset 1  u32 BE  boot
//   offset 5  u8      n, the number of ranges, 1..MAX_CONFIRMATION_RANGES
//   offset 6  n × (u32 BE from, u32 BE to)   inclusive seq ranges, from ≤ to, in increasing order,
//                                              disjoint and not adjacent (to + 1 < next from)
//
// Every message restates what the ingest knows for the boot (the first range is usually
// [first seq, highest contiguous seq]), so a lost, duplicated or reordered confirmation is harmless: applying
// an old one again only drops readings already dropped. Ranges beyond the first cover what arrived past a
// gap (a reading still on its way, or one the board dropped when its outbox was full).

export const CONFIRMATION_VERSION = 1;
/** Bounds the message (6 + 8 × 8 = 70 bytes) and the ingest's state per board. */
export const MAX_CONFIRMATION_RANGES = 8;
const HEADER = 6;
const RANGE_BYTES = 8;
const U32_MAX = 0xffffffff;

export interface SeqRange {
  from: number;
  to: number;
}

export interface Confirmation {
  boot: number;
  ranges: readonly SeqRange[];
}

export type ConfirmationErrorCode =
  | "truncated"
  | "bad_length"
  | "unknown_version"
  | "no_ranges"
  | "too_many_ranges"
  | "bad_range"
  | "unordered";

export interface ConfirmationError {
  code: ConfirmationErrorCode;
  message: string;
}

export type ConfirmationResult = { ok: true; value: Confirmation } | { ok: false; error: ConfirmationError };

const fail = (code: ConfirmationErrorCode, message: string): ConfirmationResult => ({
  ok: false,
  error: { code, message },
});

const isU32 = (n: number): boolean => Number.isInteger(n) && n >= 0 && n <= U32_MAX;

/** Why `c` cannot be encoded, or undefined when it can (the same rules decode enforces). */
export function confirmationProblem(c: Confirmation): string | undefined {
  if (!isU32(c.boot)) return "boot must be a u32";
  const n = c.ranges.length;
  if (n === 0) return "at least one range";
  if (n > MAX_CONFIRMATION_RANGES) return `at most ${MAX_CONFIRMATION_RANGES} ranges`;
  let previousTo = -2;
  for (const r of c.ranges) {
    if (!isU32(r.from) || !isU32(r.to) || r.from > r.to) return "each range is u32 from ≤ to";
    if (r.from <= previousTo + 1) return "ranges must be increasing, disjoint and not adjacent";
    previousTo = r.to;
  }
  return undefined;
}

export function encodeConfirmation(c: Confirmation): Uint8Array {
  const problem = confirmationProblem(c);
  if (problem) throw new RangeError(`confirmation: ${problem}`);
  const bytes = new Uint8Array(HEADER + RANGE_BYTES * c.ranges.length);
  const view = new DataView(bytes.buffer);
  view.setUint8(0, CONFIRMATION_VERSION);
  view.setUint32(1, c.boot);
  view.setUint8(5, c.ranges.length);
  c.ranges.forEach((r, i) => {
    view.setUint32(HEADER + i * RANGE_BYTES, r.from);
    view.setUint32(HEADER + i * RANGE_BYTES + 4, r.to);
  });
  return bytes;
}

/** Never throws: whatever arrives on the downlink, the board gets a typed answer. */
export function decodeConfirmation(bytes: Uint8Array): ConfirmationResult {
  if (bytes.byteLength < HEADER)
    return fail("truncated", `${bytes.byteLength} bytes, need at least ${HEADER}`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const version = view.getUint8(0);
  if (version !== CONFIRMATION_VERSION) return fail("unknown_version", `version ${version}`);
  const boot = view.getUint32(1);
  const n = view.getUint8(5);
  if (n === 0) return fail("no_ranges", "a confirmation carries at least one range");
  if (n > MAX_CONFIRMATION_RANGES)
    return fail("too_many_ranges", `${n} ranges, at most ${MAX_CONFIRMATION_RANGES}`);
  const expected = HEADER + n * RANGE_BYTES;
  if (bytes.byteLength !== expected)
    return fail("bad_length", `${bytes.byteLength} bytes for ${n} range(s), expected ${expected}`);
  const ranges: SeqRange[] = [];
  let previousTo = -2;
  for (let i = 0; i < n; i++) {
    const from = view.getUint32(HEADER + i * RANGE_BYTES);
    const to = view.getUint32(HEADER + i * RANGE_BYTES + 4);
    if (from > to) return fail("bad_range", `range ${i}: from ${from} > to ${to}`);
    if (from <= previousTo + 1) return fail("unordered", `range ${i} overlaps or touches the one before`);
    ranges.push({ from, to });
    previousTo = to;
  }
  return { ok: true, value: { boot, ranges } };
}

/** Whether `seq` lies in one of the (sorted) ranges. */
export function rangesContain(ranges: readonly SeqRange[], seq: number): boolean {
  for (const r of ranges) {
    if (seq < r.from) return false;
    if (seq <= r.to) return true;
  }
  return false;
}
