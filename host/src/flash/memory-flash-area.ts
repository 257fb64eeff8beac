// A FlashArea in memory, for emulated boards that are power-cut without a flash directory: it outlives the
// board's RAM state (the outbox, the session), as the board's flash chip does, but not the emulator process.
// NOR semantics as FileFlashArea: erased bytes read 0xFF, a write may only clear bits, an erase sets a sector
// back to 0xFF. A write here is never torn: a power cut in the emulator falls between two writes (the NOR
// model in firmware/test/models covers cuts inside a write or an erase).
import { FLASH_WRITE_UNIT, type FlashArea } from "../../../firmware/src/outbox/flash-area";

export default class MemoryFlashArea implements FlashArea {
  readonly byteLength: number;
  readonly sectorSize: number;
  readonly #bytes: Uint8Array;

  constructor(options: { sectors: number; sectorSize?: number }) {
    this.sectorSize = options.sectorSize ?? 4096;
    if (!Number.isInteger(options.sectors) || options.sectors < 1)
      throw new RangeError("memory flash: sectors must be a positive integer");
    this.byteLength = options.sectors * this.sectorSize;
    this.#bytes = new Uint8Array(this.byteLength).fill(0xff);
  }

  read(offset: number, length: number): Uint8Array {
    this.#bounds(offset, length);
    return this.#bytes.slice(offset, offset + length);
  }

  write(offset: number, bytes: Uint8Array): void {
    if (offset % FLASH_WRITE_UNIT !== 0 || bytes.length % FLASH_WRITE_UNIT !== 0)
      throw new RangeError(`memory flash: unaligned write at ${offset}, ${bytes.length} bytes`);
    this.#bounds(offset, bytes.length);
    const mem = this.#bytes;
    for (let i = 0; i < bytes.length; i++)
      if ((mem[offset + i]! & bytes[i]!) !== bytes[i])
        throw new Error(`memory flash: write would set bits at ${offset + i}`);
    mem.set(bytes, offset);
  }

  erase(sector: number): void {
    if (!Number.isInteger(sector) || sector < 0 || (sector + 1) * this.sectorSize > this.byteLength)
      throw new RangeError(`memory flash: no sector ${sector}`);
    this.#bytes.fill(0xff, sector * this.sectorSize, (sector + 1) * this.sectorSize);
  }

  #bounds(offset: number, length: number): void {
    if (!Number.isInteger(offset) || !Number.isInteger(length) || offset < 0 || length < 0)
      throw new RangeError(`memory flash: ${length} bytes at ${offset} out of bounds`);
    if (offset + length > this.byteLength)
      throw new RangeError(`memory flash: ${length} bytes at ${offset} out of bounds`);
  }
}
