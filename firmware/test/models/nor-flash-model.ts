// A model of SPI NOR flash as on the ESP32, with power cuts. What it enforces:
// - erased bytes are 0xFF; only a sector erase sets bits back to 1;
// - a write can only clear bits: writing a 1 over a 0 is an error, as the chip would silently keep the 0;
// - writes are whole units (4 bytes) at aligned offsets, within the area.
// A power cut is armed with a budget of bytes: each write spends its length and each erase one sector's
// worth. The operation that runs out is torn and throws PowerCut; the flash is then dead until powerOn().
// - A torn write programs a prefix of its bytes (whole bytes; the rest keeps its old content). Real chips
//   program a page at a time with bits part-way: the ring's CRC covers that case, the prefix covers order.
// - A torn erase leaves each sixteenth of the sector (256 bytes of a 4096-byte sector) either erased or
//   as it was, chosen by the seed: holes anywhere, including a still-intact sector header.
import type { FlashArea } from "../../src/outbox/flash-area";
import { FLASH_WRITE_UNIT } from "../../src/outbox/flash-area";

export class PowerCut extends Error {
  constructor() {
    super("power cut");
    this.name = "PowerCut";
  }
}

const ERASE_PIECES = 16;

export interface NorFlashModelOptions {
  sectors: number;
  sectorSize?: number;
  /** Chooses which pages a torn erase leaves erased. */
  seed?: number;
}

export default class NorFlashModel implements FlashArea {
  readonly sectorSize: number;
  readonly byteLength: number;
  readonly bytes: Uint8Array;
  readonly erasesPerSector: number[];
  #budget = Infinity;
  #dead = false;
  #rng: number;

  constructor(options: NorFlashModelOptions) {
    this.sectorSize = options.sectorSize ?? 4096;
    this.byteLength = options.sectors * this.sectorSize;
    this.bytes = new Uint8Array(this.byteLength).fill(0xff);
    this.erasesPerSector = new Array<number>(options.sectors).fill(0);
    this.#rng = (options.seed ?? 1) >>> 0 || 1;
  }

  /** The next operations may program or erase `bytes` bytes in total; the one that needs more is torn. */
  cutAfter(bytes: number): void {
    this.#budget = bytes;
  }

  /** Power is back: the next mount sees what the cut left. */
  powerOn(): void {
    this.#dead = false;
    this.#budget = Infinity;
  }

  get armed(): boolean {
    return this.#budget !== Infinity;
  }

  read(offset: number, length: number): Uint8Array {
    this.#alive();
    if (offset < 0 || length < 0 || offset + length > this.byteLength)
      throw new RangeError("read out of bounds");
    return this.bytes.slice(offset, offset + length);
  }

  write(offset: number, data: Uint8Array): void {
    this.#alive();
    if (offset % FLASH_WRITE_UNIT !== 0 || data.length % FLASH_WRITE_UNIT !== 0)
      throw new RangeError(`unaligned write at ${offset}, ${data.length} bytes`);
    if (offset < 0 || offset + data.length > this.byteLength) throw new RangeError("write out of bounds");
    for (let i = 0; i < data.length; i++)
      if ((this.bytes[offset + i]! & data[i]!) !== data[i])
        throw new Error(
          `NOR write would set bits at ${offset + i} (0x${this.bytes[offset + i]!.toString(16)} ← 0x${data[i]!.toString(16)})`,
        );
    const n = Math.min(data.length, this.#budget);
    for (let i = 0; i < n; i++) this.bytes[offset + i]! &= data[i]!;
    this.#spend(data.length);
  }

  erase(sector: number): void {
    this.#alive();
    if (!Number.isInteger(sector) || sector < 0 || sector >= this.erasesPerSector.length)
      throw new RangeError("erase out of bounds");
    const base = sector * this.sectorSize;
    if (this.#budget >= this.sectorSize) this.bytes.fill(0xff, base, base + this.sectorSize);
    else if (this.#budget > 0)
      for (let piece = 0, size = this.sectorSize / ERASE_PIECES; piece < ERASE_PIECES; piece++)
        if (this.#nextRandom() & 1) this.bytes.fill(0xff, base + piece * size, base + (piece + 1) * size);
    this.erasesPerSector[sector]!++;
    this.#spend(this.sectorSize);
  }

  #spend(n: number): void {
    if (this.#budget === Infinity) return;
    if (n > this.#budget) {
      this.#budget = 0;
      this.#dead = true;
      throw new PowerCut();
    }
    this.#budget -= n;
  }

  #alive(): void {
    if (this.#dead) throw new PowerCut();
  }

  #nextRandom(): number {
    // xorshift32: reproducible from the seed, so a failing case replays.
    let x = this.#rng;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.#rng = x >>> 0;
    return this.#rng;
  }
}
