// A ring of unconfirmed readings in NOR flash, so that a reboot or a power cut loses none of the readings
// the store has not yet confirmed. It is a log of records over the sectors of one flash area, used
// round robin so that erases spread evenly; when the ring is full, the oldest sector is reclaimed and the
// unconfirmed readings in it are dropped and counted. Confirmations are small marker records in the same
// log, so confirming costs 20 bytes, never a rewrite.
//
// Layout (little-endian):
//   sector header, 12 bytes:  magic "OBR1" | generation u32 | crc32(bytes 0..7)
//   record, 16 + payload (padded with 0xFF to 4 bytes) + 4:
//     kind u8 ('R' reading, 'C' confirmation) | 0x00 | payload length u16 | boot u32 | seq u32
//     | crc32(bytes 0..11 and the payload) | payload | commit "CMIT"
// CRC-32 is ESP-ROM's (seed 0xFFFFFFFF), as in NVS.
//
// Why it survives a power cut at any byte:
// - A record is written in two writes, the body then the commit word. A record without its whole commit
//   word, or whose CRC fails, was torn; it is always the last one in its sector (appending never
//   continues after a torn record: recovery starts a fresh sector), so scanning stops there.
// - A sector is reclaimed by first clearing its magic (a write, which only clears bits) and then erasing
//   it, so an erase cut part way (which may leave any mix of old and erased pages) leaves a sector whose
//   header no longer validates, never a sector with holes that still looks live.
// - Sectors are ordered by the generation in their header, not by position.
import { crc32, ESP_CRC_SEED } from "../util/crc32";
import { FLASH_WRITE_UNIT, type FlashArea } from "./flash-area";

export interface StoredReading {
  readonly boot: number;
  readonly seq: number;
  readonly payload: Uint8Array;
}

export interface FlashRingOptions {
  flash: FlashArea;
  /** The largest payload accepted, in bytes (default 1024, the codec's limit). */
  maxPayload?: number;
}

const SECTOR_MAGIC = 0x3152424f; // "OBR1"
const COMMIT = 0x54494d43; // "CMIT"
const KIND_READING = 0x52;
const KIND_CONFIRM = 0x43;
const SECTOR_HEADER = 12;
const RECORD_HEADER = 16;
const COMMIT_BYTES = 4;
const U32_MAX = 0xffffffff;

/** A run of consecutive sequence numbers of one boot, all in one sector: enough to count what a reclaim drops. */
interface Run {
  boot: number;
  first: number;
  last: number;
}

interface LiveSector {
  generation: number;
  runs: Run[];
}

type Parsed =
  | { kind: "end" }
  | { kind: "torn" }
  | { kind: "record"; type: number; boot: number; seq: number; payload: Uint8Array; next: number };

const pad = (n: number) => Math.ceil(n / FLASH_WRITE_UNIT) * FLASH_WRITE_UNIT;
const isU32 = (n: number) => Number.isInteger(n) && n >= 0 && n <= U32_MAX;

export default class FlashRing {
  readonly #flash: FlashArea;
  readonly #sectorSize: number;
  readonly #sectorCount: number;
  readonly #maxPayload: number;
  /** Live sectors by physical index; undefined = free (erased, torn or reclaimed). */
  readonly #live: (LiveSector | undefined)[];
  /** Physical indexes of live sectors, oldest first; the last is the head. */
  #order: number[] = [];
  /** Where the next record goes in the head sector; sectorSize when a fresh sector is needed. */
  #headOffset: number;
  #nextGeneration = 0;
  /** Per boot, the highest confirmed seq: every reading of that boot up to it is in the store. */
  readonly #confirmed = new Map<number, number>();
  #dropped = 0;
  #erases = 0;

  /** Mounts the ring: scans the flash and recovers every fully written, unconfirmed reading. */
  constructor(options: FlashRingOptions) {
    const flash = options.flash;
    if (
      !Number.isInteger(flash.sectorSize) ||
      flash.sectorSize < 256 ||
      flash.sectorSize % FLASH_WRITE_UNIT !== 0 ||
      flash.byteLength % flash.sectorSize !== 0 ||
      flash.byteLength / flash.sectorSize < 2
    )
      throw new RangeError("flash ring: the area must hold at least two whole sectors");
    this.#flash = flash;
    this.#sectorSize = flash.sectorSize;
    this.#sectorCount = flash.byteLength / flash.sectorSize;
    this.#maxPayload = options.maxPayload ?? 1024;
    if (
      !Number.isInteger(this.#maxPayload) ||
      this.#maxPayload < 0 ||
      FlashRing.recordSize(this.#maxPayload) > this.#sectorSize - SECTOR_HEADER
    )
      throw new RangeError("flash ring: maxPayload must fit one sector");
    this.#live = new Array<LiveSector | undefined>(this.#sectorCount).fill(undefined);
    this.#headOffset = this.#sectorSize;
    this.#mount();
  }

  /** Bytes a reading with a payload of `payloadLength` bytes takes in flash. */
  static recordSize(payloadLength: number): number {
    return RECORD_HEADER + pad(payloadLength) + COMMIT_BYTES;
  }

  /** Bytes a confirmation takes in flash. */
  static get confirmationSize(): number {
    return RECORD_HEADER + COMMIT_BYTES;
  }

  /** Readings dropped (unconfirmed, in the oldest sector when the ring was full) since mount. */
  get dropped(): number {
    return this.#dropped;
  }
  /** Sector erases since mount (each sector is erased in turn, so wear per sector = erases / sectors). */
  get erases(): number {
    return this.#erases;
  }
  get sectorCount(): number {
    return this.#sectorCount;
  }
  /** Readings held and not confirmed. */
  get unconfirmed(): number {
    let n = 0;
    for (const s of this.#order) n += this.#unconfirmedIn(this.#live[s]!);
    return n;
  }

  /**
   * Persists a reading. Returns when both its body and its commit word are written: from then on a power
   * cut cannot lose it, unless the ring fills and drops it (counted in `dropped`).
   */
  append(boot: number, seq: number, payload: Uint8Array): void {
    if (!isU32(boot) || !isU32(seq))
      throw new RangeError("flash ring: boot and seq must be 32-bit unsigned integers");
    if (payload.length > this.#maxPayload)
      throw new RangeError(`flash ring: payload of ${payload.length} bytes exceeds ${this.#maxPayload}`);
    this.#writeRecord(KIND_READING, boot, seq, payload);
    const runs = this.#live[this.#head()]!.runs;
    const last = runs[runs.length - 1];
    if (last && last.boot === boot && last.last + 1 === seq) last.last = seq;
    else runs.push({ boot, first: seq, last: seq });
  }

  /**
   * The store holds every reading of `boot` up to `throughSeq`. Persisted as a marker record; a confirmation
   * lost to a power cut only makes the board send those readings again, which the store absorbs.
   * Clamped to the highest seq appended for that boot, so a confirmation cannot cover readings not yet taken.
   */
  confirm(boot: number, throughSeq: number): void {
    if (!isU32(boot) || !isU32(throughSeq))
      throw new RangeError("flash ring: boot and seq must be 32-bit unsigned integers");
    const highest = this.#highestSeq(boot);
    if (highest === undefined) return;
    const seq = Math.min(throughSeq, highest);
    const known = this.#confirmed.get(boot);
    if (known !== undefined && known >= seq) return;
    this.#confirmed.set(boot, seq);
    this.#writeRecord(KIND_CONFIRM, boot, seq, new Uint8Array(0));
  }

  /** The highest confirmed seq of `boot`, if any. */
  confirmedThrough(boot: number): number | undefined {
    return this.#confirmed.get(boot);
  }

  /** Unconfirmed readings in the order they were appended, read back from flash. */
  *readings(): Generator<StoredReading> {
    for (const s of [...this.#order]) {
      const bytes = this.#flash.read(s * this.#sectorSize, this.#sectorSize);
      let offset = SECTOR_HEADER;
      for (;;) {
        const rec = this.#parse(bytes, offset);
        if (rec.kind !== "record") break;
        offset = rec.next;
        if (rec.type !== KIND_READING) continue;
        const c = this.#confirmed.get(rec.boot);
        if (c === undefined || rec.seq > c) yield { boot: rec.boot, seq: rec.seq, payload: rec.payload };
      }
    }
  }

  #head(): number {
    return this.#order[this.#order.length - 1]!;
  }

  #writeRecord(type: number, boot: number, seq: number, payload: Uint8Array): void {
    const size = FlashRing.recordSize(payload.length);
    if (this.#order.length === 0 || this.#headOffset + size > this.#sectorSize) this.#advance();
    const at = this.#head() * this.#sectorSize + this.#headOffset;
    const body = new Uint8Array(RECORD_HEADER + pad(payload.length)).fill(0xff);
    const view = new DataView(body.buffer);
    view.setUint8(0, type);
    view.setUint8(1, 0);
    view.setUint16(2, payload.length, true);
    view.setUint32(4, boot, true);
    view.setUint32(8, seq, true);
    body.set(payload, RECORD_HEADER);
    view.setUint32(12, crc32(payload, crc32(body.subarray(0, 12), ESP_CRC_SEED)), true);
    this.#flash.write(at, body);
    this.#flash.write(at + body.length, u32le(COMMIT));
    this.#headOffset += size;
  }

  /** Moves the head to the next sector in turn, reclaiming it (and dropping what it held) if it is live. */
  #advance(): void {
    const next = this.#order.length === 0 ? 0 : (this.#head() + 1) % this.#sectorCount;
    const old = this.#live[next];
    if (old) {
      this.#dropped += this.#unconfirmedIn(old);
      this.#live[next] = undefined;
      this.#order = this.#order.filter((s) => s !== next);
      this.#flash.write(next * this.#sectorSize, new Uint8Array(FLASH_WRITE_UNIT)); // clear the magic first
      this.#forgetBootsNotHeld();
    }
    this.#flash.erase(next);
    this.#erases++;
    const generation = this.#nextGeneration++;
    const header = new Uint8Array(SECTOR_HEADER);
    const view = new DataView(header.buffer);
    view.setUint32(0, SECTOR_MAGIC, true);
    view.setUint32(4, generation >>> 0, true);
    view.setUint32(8, crc32(header.subarray(0, 8), ESP_CRC_SEED), true);
    this.#flash.write(next * this.#sectorSize, header);
    this.#live[next] = { generation, runs: [] };
    this.#order.push(next);
    this.#headOffset = SECTOR_HEADER;
  }

  #mount(): void {
    const confirms: { boot: number; seq: number }[] = [];
    let headOpen = false;
    let newest = -1;
    for (let s = 0; s < this.#sectorCount; s++) {
      const bytes = this.#flash.read(s * this.#sectorSize, this.#sectorSize);
      const generation = this.#parseHeader(bytes);
      if (generation === undefined) continue;
      const sector: LiveSector = { generation, runs: [] };
      let offset = SECTOR_HEADER;
      let rec: Parsed;
      for (;;) {
        rec = this.#parse(bytes, offset);
        if (rec.kind !== "record") break;
        offset = rec.next;
        if (rec.type === KIND_CONFIRM) confirms.push({ boot: rec.boot, seq: rec.seq });
        else {
          const last = sector.runs[sector.runs.length - 1];
          if (last && last.boot === rec.boot && last.last + 1 === rec.seq) last.last = rec.seq;
          else sector.runs.push({ boot: rec.boot, first: rec.seq, last: rec.seq });
        }
      }
      this.#live[s] = sector;
      if (generation > newest) {
        newest = generation;
        // Appending may continue in the newest sector only after its last record, and only if nothing at
        // all was programmed past it (a torn record, or a torn write that left a few bits, ends the sector).
        headOpen = rec.kind === "end";
        this.#headOffset = headOpen ? offset : this.#sectorSize;
      }
    }
    this.#order = this.#live
      .map((sector, index) => ({ sector, index }))
      .filter((e): e is { sector: LiveSector; index: number } => e.sector !== undefined)
      .sort((a, b) => a.sector.generation - b.sector.generation)
      .map((e) => e.index);
    this.#nextGeneration = newest + 1;
    if (!headOpen) this.#headOffset = this.#sectorSize;
    for (const c of confirms) {
      const known = this.#confirmed.get(c.boot);
      if (known === undefined || c.seq > known) this.#confirmed.set(c.boot, c.seq);
    }
    this.#forgetBootsNotHeld();
  }

  #parseHeader(bytes: Uint8Array): number | undefined {
    const view = new DataView(bytes.buffer, bytes.byteOffset, SECTOR_HEADER);
    if (view.getUint32(0, true) !== SECTOR_MAGIC) return undefined;
    if (view.getUint32(8, true) !== crc32(bytes.subarray(0, 8), ESP_CRC_SEED)) return undefined;
    return view.getUint32(4, true);
  }

  /** The record at `offset` of a sector's bytes: a whole record, the clean end of the log, or a torn write. */
  #parse(bytes: Uint8Array, offset: number): Parsed {
    if (offset + RECORD_HEADER + COMMIT_BYTES > bytes.length)
      return allErased(bytes, offset) ? { kind: "end" } : { kind: "torn" };
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
    if (view.getUint32(offset, true) === U32_MAX)
      return allErased(bytes, offset) ? { kind: "end" } : { kind: "torn" };
    const type = view.getUint8(offset);
    const length = view.getUint16(offset + 2, true);
    const next = offset + FlashRing.recordSize(length);
    if (
      (type !== KIND_READING && type !== KIND_CONFIRM) ||
      view.getUint8(offset + 1) !== 0 ||
      length > this.#maxPayload ||
      next > bytes.length
    )
      return { kind: "torn" };
    if (view.getUint32(next - COMMIT_BYTES, true) !== COMMIT) return { kind: "torn" };
    const payload = bytes.slice(offset + RECORD_HEADER, offset + RECORD_HEADER + length);
    const crc = crc32(payload, crc32(bytes.subarray(offset, offset + 12), ESP_CRC_SEED));
    if (view.getUint32(offset + 12, true) !== crc) return { kind: "torn" };
    return {
      kind: "record",
      type,
      boot: view.getUint32(offset + 4, true),
      seq: view.getUint32(offset + 8, true),
      payload,
      next,
    };
  }

  #unconfirmedIn(sector: LiveSector): number {
    let n = 0;
    for (const run of sector.runs) {
      const c = this.#confirmed.get(run.boot);
      const from = c === undefined ? run.first : Math.max(run.first, c + 1);
      if (run.last >= from) n += run.last - from + 1;
    }
    return n;
  }

  #highestSeq(boot: number): number | undefined {
    let highest: number | undefined;
    for (const s of this.#order)
      for (const run of this.#live[s]!.runs)
        if (run.boot === boot && (highest === undefined || run.last > highest)) highest = run.last;
    return highest;
  }

  /** A confirmation is needed only while a reading of its boot is held: keeps the map as small as the ring. */
  #forgetBootsNotHeld(): void {
    const held = new Set<number>();
    for (const s of this.#order) for (const run of this.#live[s]!.runs) held.add(run.boot);
    for (const boot of [...this.#confirmed.keys()]) if (!held.has(boot)) this.#confirmed.delete(boot);
  }
}

function u32le(n: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, n, true);
  return b;
}

function allErased(bytes: Uint8Array, from: number): boolean {
  for (let i = from; i < bytes.length; i++) if (bytes[i] !== 0xff) return false;
  return true;
}
