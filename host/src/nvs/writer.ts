/**
 * Writes an ESP-IDF NVS partition image (format version 2) from namespaces and typed values.
 *
 * Placement follows ESP-IDF's nvs_partition_gen.py so that the same input gives the same bytes: entries are
 * appended page after page, a string never crosses a page, a blob is cut into chunks that fill each page's
 * tail, its index entry follows the last chunk, and the last page of the partition is left erased as the
 * spare page the runtime needs (without it `nvs_flash_init` fails and the firmware stops at boot).
 * Only the types Moddable's `Preference` reads back are offered: u8, i32, string, blob.
 */
import {
  BITMAP_OFFSET,
  CHUNK_ANY,
  ENTRIES_PER_PAGE,
  ENTRY_SIZE,
  FIRST_ENTRY_OFFSET,
  FORMAT_VERSION_2,
  ItemType,
  KEY_FIELD_SIZE,
  KEY_MAX_CHARS,
  MIN_PARTITION_SIZE,
  NvsError,
  PAGE_SIZE,
  PAGE_STATE_ACTIVE,
  PAGE_STATE_FULL,
  STRING_MAX_BYTES,
  entryCrc,
  nvsCrc32,
  pageHeaderCrc,
} from "./format";

export type NvsWriteItem =
  | { kind: "namespace"; name: string }
  | { kind: "u8"; key: string; value: number }
  | { kind: "i32"; key: string; value: number }
  | { kind: "string"; key: string; value: string }
  | { kind: "blob"; key: string; value: Uint8Array };

/** Namespace index 0 holds the namespace table; 255 means "any" in lookups. */
const MAX_NAMESPACES = 254;

export function buildNvsImage(items: readonly NvsWriteItem[], partitionSize: number): Uint8Array {
  const image = new ImageBuilder(partitionSize);
  for (const item of items) image.add(item);
  return image.finish();
}

/** Checks a namespace or key name the way ESP-IDF does, with a message naming the culprit. */
export function checkKeyName(name: string, what: "key" | "namespace"): void {
  if (name.length === 0) throw new NvsError("empty_key", `${what} name is empty`);
  if (!/^[\x20-\x7e]+$/.test(name))
    throw new NvsError("bad_value", `${what} "${name}" must be printable ASCII`);
  if (name.length > KEY_MAX_CHARS) {
    throw new NvsError(
      "key_too_long",
      `${what} "${name}" is ${name.length} characters; NVS allows at most ${KEY_MAX_CHARS}`,
    );
  }
}

class ImageBuilder {
  readonly #pages: Uint8Array[] = [];
  /** Pages that may still be opened; the spare page is never counted. */
  #pagesLeft: number;
  readonly #totalPages: number;
  #entry = 0;
  readonly #namespaces = new Map<string, number>();
  #currentNs: number | undefined;

  constructor(size: number) {
    if (!Number.isInteger(size) || size % PAGE_SIZE !== 0) {
      throw new NvsError("bad_size", `partition size 0x${size.toString(16)} is not a multiple of 0x1000`);
    }
    if (size < MIN_PARTITION_SIZE) {
      throw new NvsError(
        "bad_size",
        `partition size 0x${size.toString(16)} is below 0x3000, the smallest read/write NVS partition`,
      );
    }
    this.#totalPages = size / PAGE_SIZE;
    this.#pagesLeft = this.#totalPages - 1;
    this.#openPage();
  }

  add(item: NvsWriteItem): void {
    if (item.kind === "namespace") {
      this.#namespace(item.name);
      return;
    }
    checkKeyName(item.key, "key");
    const ns = this.#currentNs;
    if (ns === undefined) throw new NvsError("no_namespace", `key "${item.key}" comes before any namespace`);
    switch (item.kind) {
      case "u8":
        this.#primitive(ns, item.key, ItemType.u8, u8Bytes(item.key, item.value));
        break;
      case "i32":
        this.#primitive(ns, item.key, ItemType.i32, i32Bytes(item.key, item.value));
        break;
      case "string":
        this.#string(ns, item.key, item.value);
        break;
      case "blob":
        this.#blob(ns, item.key, item.value);
        break;
    }
  }

  finish(): Uint8Array {
    const out = new Uint8Array(this.#totalPages * PAGE_SIZE).fill(0xff);
    this.#pages.forEach((page, i) => out.set(page, i * PAGE_SIZE));
    return out;
  }

  #namespace(name: string): void {
    checkKeyName(name, "namespace");
    const known = this.#namespaces.get(name);
    if (known !== undefined) {
      this.#currentNs = known;
      return;
    }
    const index = this.#namespaces.size + 1;
    if (index > MAX_NAMESPACES)
      throw new NvsError("too_many_namespaces", `more than ${MAX_NAMESPACES} namespaces`);
    this.#primitive(0, name, ItemType.u8, Uint8Array.of(index));
    this.#namespaces.set(name, index);
    this.#currentNs = index;
  }

  #primitive(ns: number, key: string, type: number, value: Uint8Array): void {
    if (this.#entry >= ENTRIES_PER_PAGE) this.#nextPage(key);
    const e = newEntry(ns, type, 1, CHUNK_ANY, key);
    e.set(value, 24);
    this.#putEntry(e);
  }

  #string(ns: number, key: string, value: string): void {
    const text = Buffer.from(value, "utf8");
    const data = new Uint8Array(text.length + 1);
    data.set(text);
    if (data.length > STRING_MAX_BYTES) {
      throw new NvsError(
        "string_too_long",
        `string "${key}" is ${text.length} bytes; NVS stores at most ${STRING_MAX_BYTES - 1} (plus its NUL)`,
      );
    }
    const dataEntries = Math.ceil(data.length / ENTRY_SIZE);
    // nvs_partition_gen.py moves a string that would exactly fill the page's tail to a fresh page; same here.
    // On a fresh page a full-page string is written (the generator gives up there; the runtime reads it fine).
    if (this.#entry > 0 && this.#entry + dataEntries + 1 >= ENTRIES_PER_PAGE) this.#nextPage(key);
    const e = newEntry(ns, ItemType.string, dataEntries + 1, CHUNK_ANY, key);
    setVarlenHeader(e, data);
    this.#putEntry(e);
    this.#putData(data);
  }

  #blob(ns: number, key: string, value: Uint8Array): void {
    if (this.#entry >= ENTRIES_PER_PAGE) this.#nextPage(key);
    const chunkStart = 0;
    let chunkCount = 0;
    let offset = 0;
    for (;;) {
      const tailroom = (ENTRIES_PER_PAGE - this.#entry - 1) * ENTRY_SIZE;
      const chunk = value.subarray(offset, offset + Math.min(tailroom, value.length - offset));
      const dataEntries = Math.ceil(chunk.length / ENTRY_SIZE);
      const e = newEntry(ns, ItemType.blobData, dataEntries + 1, chunkStart + chunkCount, key);
      setVarlenHeader(e, chunk);
      this.#putEntry(e);
      this.#putData(chunk);
      chunkCount++;
      offset += chunk.length;
      const done = offset >= value.length;
      // The index must share a page with free room; like the generator, open the next page when less than
      // one entry of tail is left, even if the blob just ended.
      if (!done || tailroom - chunk.length < ENTRY_SIZE) this.#nextPage(key);
      if (done) break;
    }
    const index = newEntry(ns, ItemType.blobIndex, 1, CHUNK_ANY, key);
    const dv = new DataView(index.buffer, index.byteOffset, index.byteLength);
    dv.setUint32(24, value.length, true);
    index[28] = chunkCount;
    index[29] = chunkStart;
    this.#putEntry(index);
  }

  #openPage(): void {
    const page = new Uint8Array(PAGE_SIZE).fill(0xff);
    const dv = new DataView(page.buffer);
    dv.setUint32(0, PAGE_STATE_ACTIVE, true);
    dv.setUint32(4, this.#pages.length, true);
    page[8] = FORMAT_VERSION_2;
    dv.setUint32(28, pageHeaderCrc(page), true);
    this.#pages.push(page);
    this.#pagesLeft--;
    this.#entry = 0;
  }

  #nextPage(key: string): void {
    if (this.#pagesLeft <= 0) {
      throw new NvsError(
        "partition_full",
        `partition full at "${key}": ${this.#totalPages} pages of which the last stays free as NVS's spare page; use a larger partition or less data`,
      );
    }
    const current = this.#pages[this.#pages.length - 1];
    if (current) new DataView(current.buffer).setUint32(0, PAGE_STATE_FULL, true);
    this.#openPage();
  }

  #page(): Uint8Array {
    const page = this.#pages[this.#pages.length - 1];
    if (!page) throw new Error("no page open");
    return page;
  }

  #putEntry(entry: Uint8Array): void {
    entry.set(u32le(entryCrc(entry)), 4);
    this.#page().set(entry, FIRST_ENTRY_OFFSET + this.#entry * ENTRY_SIZE);
    this.#markWritten(1);
  }

  #putData(data: Uint8Array): void {
    this.#page().set(data, FIRST_ENTRY_OFFSET + this.#entry * ENTRY_SIZE);
    this.#markWritten(Math.ceil(data.length / ENTRY_SIZE));
  }

  #markWritten(count: number): void {
    const page = this.#page();
    for (let i = 0; i < count; i++) {
      const bit = this.#entry * 2;
      // 0b11 (empty) → 0b10 (written): clear the low bit of the entry's pair.
      page[BITMAP_OFFSET + (bit >> 3)]! &= ~(1 << (bit & 7));
      this.#entry++;
    }
  }
}

function newEntry(ns: number, type: number, span: number, chunkIndex: number, key: string): Uint8Array {
  const e = new Uint8Array(ENTRY_SIZE).fill(0xff);
  e[0] = ns;
  e[1] = type;
  e[2] = span;
  e[3] = chunkIndex;
  e.fill(0, 8, 8 + KEY_FIELD_SIZE);
  for (let i = 0; i < key.length; i++) e[8 + i] = key.charCodeAt(i);
  return e;
}

/** Strings and blob chunks: size u16, two reserved 0xFF bytes, CRC32 of the payload. */
function setVarlenHeader(e: Uint8Array, data: Uint8Array): void {
  e[24] = data.length & 0xff;
  e[25] = data.length >> 8;
  e.set(u32le(nvsCrc32(data)), 28);
}

function u8Bytes(key: string, v: number): Uint8Array {
  if (!Number.isInteger(v) || v < 0 || v > 255)
    throw new NvsError("bad_value", `u8 "${key}" must be an integer 0..255`);
  return Uint8Array.of(v);
}

function i32Bytes(key: string, v: number): Uint8Array {
  if (!Number.isInteger(v) || v < -0x80000000 || v > 0x7fffffff) {
    throw new NvsError("bad_value", `i32 "${key}" must be an integer -2147483648..2147483647`);
  }
  const b = new Uint8Array(4);
  new DataView(b.buffer).setInt32(0, v, true);
  return b;
}

function u32le(v: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, v >>> 0, true);
  return b;
}
