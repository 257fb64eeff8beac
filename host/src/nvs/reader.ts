/**
 * Decodes an ESP-IDF NVS partition image back into namespaces and typed values, checking page and entry
 * CRCs on the way. Used by the tests, by `provision inspect` and to read a board's current NVS before it is
 * overwritten (its boot counter must carry forward).
 */
import {
  BITMAP_OFFSET,
  ENTRIES_PER_PAGE,
  ENTRY_SIZE,
  EntryState,
  FIRST_ENTRY_OFFSET,
  FORMAT_VERSION_1,
  FORMAT_VERSION_2,
  ItemType,
  KEY_FIELD_SIZE,
  NvsError,
  PAGE_SIZE,
  PAGE_STATE_ACTIVE,
  PAGE_STATE_EMPTY,
  PAGE_STATE_FULL,
  entryCrc,
  nvsCrc32,
  pageHeaderCrc,
} from "./format";

export type NvsValue =
  | { type: "u8" | "i8" | "u16" | "i16" | "u32" | "i32"; value: number }
  | { type: "u64" | "i64"; value: bigint }
  | { type: "string"; value: string }
  | { type: "blob"; value: Uint8Array };

export interface NvsPageInfo {
  index: number;
  state: "empty" | "active" | "full" | "other";
  seq?: number;
  usedEntries: number;
}

export interface DecodedNvs {
  namespaces: Map<string, Map<string, NvsValue>>;
  pages: NvsPageInfo[];
  /** Damage found while reading (bad CRCs, dangling chunks); empty for a sound image. */
  problems: string[];
  /** ESP-IDF needs one erased page to initialise; false means the firmware would stop at boot. */
  hasSparePage: boolean;
}

interface RawItem {
  ns: number;
  type: number;
  chunkIndex: number;
  key: string;
  data: Uint8Array; // the 8-byte data field
  payload?: Uint8Array; // strings and blob data
}

export function readNvsImage(image: Uint8Array): DecodedNvs {
  if (image.length === 0 || image.length % PAGE_SIZE !== 0) {
    throw new NvsError("bad_size", `image is ${image.length} bytes, not a whole number of 4096-byte pages`);
  }
  const problems: string[] = [];
  const pages: NvsPageInfo[] = [];
  const live: { seq: number; items: RawItem[] }[] = [];

  for (let p = 0; p < image.length / PAGE_SIZE; p++) {
    const page = image.subarray(p * PAGE_SIZE, (p + 1) * PAGE_SIZE);
    const dv = new DataView(page.buffer, page.byteOffset, page.byteLength);
    const state = dv.getUint32(0, true);
    if (state === PAGE_STATE_EMPTY) {
      pages.push({ index: p, state: "empty", usedEntries: 0 });
      continue;
    }
    const seq = dv.getUint32(4, true);
    const info: NvsPageInfo = {
      index: p,
      seq,
      usedEntries: 0,
      state: state === PAGE_STATE_ACTIVE ? "active" : state === PAGE_STATE_FULL ? "full" : "other",
    };
    pages.push(info);
    if (dv.getUint32(28, true) !== pageHeaderCrc(page)) {
      problems.push(`page ${p}: header CRC mismatch`);
      continue;
    }
    if (page[8] !== FORMAT_VERSION_2 && page[8] !== FORMAT_VERSION_1) {
      problems.push(`page ${p}: unknown format version 0x${page[8]?.toString(16)}`);
      continue;
    }
    const items: RawItem[] = [];
    for (let i = 0; i < ENTRIES_PER_PAGE;) {
      const st = entryState(page, i);
      if (st !== EntryState.written) {
        i++;
        continue;
      }
      const e = page.subarray(FIRST_ENTRY_OFFSET + i * ENTRY_SIZE, FIRST_ENTRY_OFFSET + (i + 1) * ENTRY_SIZE);
      const edv = new DataView(e.buffer, e.byteOffset, e.byteLength);
      if (edv.getUint32(4, true) !== entryCrc(e)) {
        problems.push(`page ${p} entry ${i}: CRC mismatch`);
        info.usedEntries++;
        i++;
        continue;
      }
      const span = e[2] ?? 1;
      if (span < 1 || i + span > ENTRIES_PER_PAGE) {
        problems.push(`page ${p} entry ${i}: span ${span} runs past the page`);
        i++;
        continue;
      }
      const item: RawItem = {
        ns: e[0]!,
        type: e[1]!,
        chunkIndex: e[3]!,
        key: keyOf(e),
        data: e.slice(24, 32),
      };
      if (item.type === ItemType.string || item.type === ItemType.blobData || item.type === ItemType.blobV1) {
        const size = edv.getUint16(24, true);
        const start = FIRST_ENTRY_OFFSET + (i + 1) * ENTRY_SIZE;
        if (size > (span - 1) * ENTRY_SIZE) {
          problems.push(`page ${p} entry ${i} "${item.key}": size ${size} larger than its span`);
        } else {
          const payload = page.slice(start, start + size);
          if (nvsCrc32(payload) !== edv.getUint32(28, true)) {
            problems.push(`page ${p} entry ${i} "${item.key}": data CRC mismatch`);
          } else item.payload = payload;
        }
      }
      if (
        (item.type !== ItemType.string && item.type !== ItemType.blobData && item.type !== ItemType.blobV1) ||
        item.payload
      ) {
        items.push(item);
      }
      info.usedEntries += span;
      i += span;
    }
    live.push({ seq, items });
  }

  live.sort((a, b) => a.seq - b.seq);
  const all = live.flatMap((p) => p.items);
  const nsNames = new Map<number, string>();
  for (const it of all) if (it.ns === 0 && it.type === ItemType.u8) nsNames.set(it.data[0]!, it.key);

  const chunks = new Map<string, Uint8Array>();
  for (const it of all)
    if (it.type === ItemType.blobData && it.payload)
      chunks.set(`${it.ns}/${it.key}/${it.chunkIndex}`, it.payload);

  const namespaces = new Map<string, Map<string, NvsValue>>();
  for (const name of nsNames.values()) namespaces.set(name, new Map());
  for (const it of all) {
    if (it.ns === 0 || it.type === ItemType.blobData) continue;
    const nsName = nsNames.get(it.ns);
    if (nsName === undefined) {
      problems.push(`"${it.key}" belongs to unknown namespace index ${it.ns}`);
      continue;
    }
    const value = decodeValue(it, chunks, problems);
    if (value) namespaces.get(nsName)!.set(it.key, value);
  }
  return { namespaces, pages, problems, hasSparePage: pages.some((p) => p.state === "empty") };
}

function decodeValue(it: RawItem, chunks: Map<string, Uint8Array>, problems: string[]): NvsValue | undefined {
  const dv = new DataView(it.data.buffer, it.data.byteOffset, 8);
  switch (it.type) {
    case ItemType.u8:
      return { type: "u8", value: dv.getUint8(0) };
    case ItemType.i8:
      return { type: "i8", value: dv.getInt8(0) };
    case ItemType.u16:
      return { type: "u16", value: dv.getUint16(0, true) };
    case ItemType.i16:
      return { type: "i16", value: dv.getInt16(0, true) };
    case ItemType.u32:
      return { type: "u32", value: dv.getUint32(0, true) };
    case ItemType.i32:
      return { type: "i32", value: dv.getInt32(0, true) };
    case ItemType.u64:
      return { type: "u64", value: dv.getBigUint64(0, true) };
    case ItemType.i64:
      return { type: "i64", value: dv.getBigInt64(0, true) };
    case ItemType.string: {
      const p = it.payload!;
      const end = p.indexOf(0);
      return { type: "string", value: Buffer.from(p.subarray(0, end < 0 ? p.length : end)).toString("utf8") };
    }
    case ItemType.blobV1:
      return { type: "blob", value: it.payload! };
    case ItemType.blobIndex: {
      const size = dv.getUint32(0, true);
      const count = it.data[4]!;
      const start = it.data[5]!;
      const parts: Uint8Array[] = [];
      for (let c = 0; c < count; c++) {
        const part = chunks.get(`${it.ns}/${it.key}/${start + c}`);
        if (!part) {
          problems.push(`blob "${it.key}": chunk ${start + c} missing`);
          return undefined;
        }
        parts.push(part);
      }
      const value = Buffer.concat(parts);
      if (value.length !== size) {
        problems.push(`blob "${it.key}": chunks hold ${value.length} bytes, index says ${size}`);
        return undefined;
      }
      return { type: "blob", value: new Uint8Array(value) };
    }
    default:
      problems.push(`"${it.key}": unknown item type 0x${it.type.toString(16)}`);
      return undefined;
  }
}

function entryState(page: Uint8Array, i: number): number {
  const bit = i * 2;
  return (page[BITMAP_OFFSET + (bit >> 3)]! >> (bit & 7)) & 3;
}

function keyOf(e: Uint8Array): string {
  const k = e.subarray(8, 8 + KEY_FIELD_SIZE);
  const end = k.indexOf(0);
  return String.fromCharCode(...k.subarray(0, end < 0 ? KEY_FIELD_SIZE : end));
}
