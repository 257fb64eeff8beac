/**
 * ESP-IDF NVS on-flash format, version 2 (multi-page blobs): the constants both the image writer and the
 * reader need. Layout as documented by ESP-IDF (components/nvs_flash) and produced by nvs_partition_gen.py.
 */
import { crc32 } from "node:zlib";

export const PAGE_SIZE = 4096;
export const ENTRY_SIZE = 32;
export const ENTRIES_PER_PAGE = 126;
export const FIRST_ENTRY_OFFSET = 64;
export const BITMAP_OFFSET = 32;
export const BITMAP_SIZE = 32;

export const PAGE_STATE_EMPTY = 0xffffffff;
export const PAGE_STATE_ACTIVE = 0xfffffffe;
export const PAGE_STATE_FULL = 0xfffffffc;
export const PAGE_STATE_FREEING = 0xfffffff8;
export const PAGE_STATE_CORRUPT = 0xfffffff0;

export const FORMAT_VERSION_2 = 0xfe;
export const FORMAT_VERSION_1 = 0xff;

/** Item type codes (nvs_types.h ItemType). */
export const ItemType = {
  u8: 0x01,
  i8: 0x11,
  u16: 0x02,
  i16: 0x12,
  u32: 0x04,
  i32: 0x14,
  u64: 0x08,
  i64: 0x18,
  string: 0x21,
  blobV1: 0x41,
  blobData: 0x42,
  blobIndex: 0x48,
} as const;

export const CHUNK_ANY = 0xff;
export const KEY_FIELD_SIZE = 16;
export const KEY_MAX_CHARS = 15;
/** Version 2: a string entry (NUL included) spans one page at most. */
export const STRING_MAX_BYTES = 4000;
/** A partition needs two pages in use plus the spare to be writable by the firmware. */
export const MIN_PARTITION_SIZE = 3 * PAGE_SIZE;

/** Entry-state bitmap: 2 bits per entry, 0b11 empty, 0b10 written, 0b00 erased. */
export const EntryState = { empty: 3, written: 2, erased: 0 } as const;

/** ESP ROM's CRC32 (little-endian, initial value 0xFFFFFFFF), which Node's zlib.crc32 reproduces with that seed. */
export function nvsCrc32(data: Uint8Array): number {
  // The CRC of nothing is the seed; Node 20's crc32 returns 0 for an empty view into a pooled Buffer.
  if (data.length === 0) return 0xffffffff;
  return crc32(data, 0xffffffff) >>> 0;
}

/** CRC of an entry: its first 4 bytes and bytes 8..31 (the CRC field itself excluded). */
export function entryCrc(entry: Uint8Array): number {
  const buf = new Uint8Array(28);
  buf.set(entry.subarray(0, 4), 0);
  buf.set(entry.subarray(8, 32), 4);
  return nvsCrc32(buf);
}

/** CRC of a page header: bytes 4..27 (sequence number, version, reserved). */
export function pageHeaderCrc(page: Uint8Array): number {
  return nvsCrc32(page.subarray(4, 28));
}

export type NvsErrorCode =
  | "key_too_long"
  | "empty_key"
  | "string_too_long"
  | "partition_full"
  | "bad_size"
  | "bad_value"
  | "no_namespace"
  | "too_many_namespaces"
  | "csv";

/** Every problem building or parsing an image: one line a technician can act on. */
export class NvsError extends Error {
  readonly code: NvsErrorCode;
  constructor(code: NvsErrorCode, message: string) {
    super(message);
    this.name = "NvsError";
    this.code = code;
  }
}
