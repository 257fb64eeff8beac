// Moddable's `flash` module (modules/files/flash) behind the outbox ring's FlashArea. On ESP32,
// `new Flash("outbox")` opens the data partition labelled "outbox" (esp_partition_find_first with
// ESP_PARTITION_TYPE_DATA, any subtype); offsets and sectors are relative to the partition, `blockSize`
// is SPI_FLASH_SEC_SIZE (4096), and read/write/erase call esp_partition_read/write/erase_range, throwing
// on failure. The module exists for esp, esp32 and nrf52, not for the Linux simulator.
// Its esp32 write reads the buffer with xsmcToArrayBuffer and its typings (typings/flash.d.ts) declare
// `write(offset, byteLength, buffer: ArrayBuffer)`, so writes hand it an ArrayBuffer of exactly the bytes.
import { FLASH_WRITE_UNIT, type FlashArea } from "../outbox/flash-area";

/** The part of Moddable's Flash class (typings/flash.d.ts) this adapter uses. */
export interface ModdableFlash {
  read(offset: number, byteLength: number): ArrayBuffer;
  write(offset: number, byteLength: number, buffer: ArrayBuffer): void;
  erase(sector: number): void;
  readonly byteLength: number;
  readonly blockSize: number;
}

export default class ModdableFlashArea implements FlashArea {
  readonly #flash: ModdableFlash;
  readonly byteLength: number;
  readonly sectorSize: number;

  constructor(options: { flash: ModdableFlash }) {
    this.#flash = options.flash;
    this.sectorSize = this.#flash.blockSize;
    // A partition whose size is not a whole number of sectors: use the whole sectors only.
    this.byteLength = Math.floor(this.#flash.byteLength / this.sectorSize) * this.sectorSize;
  }

  read(offset: number, length: number): Uint8Array {
    return new Uint8Array(this.#flash.read(offset, length));
  }

  write(offset: number, bytes: Uint8Array): void {
    if (offset % FLASH_WRITE_UNIT !== 0 || bytes.length % FLASH_WRITE_UNIT !== 0)
      throw new RangeError("flash: writes are whole 4-byte units");
    const exact =
      bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength
        ? (bytes.buffer as ArrayBuffer)
        : (bytes.slice().buffer as ArrayBuffer);
    this.#flash.write(offset, bytes.length, exact);
  }

  erase(sector: number): void {
    this.#flash.erase(sector);
  }
}
