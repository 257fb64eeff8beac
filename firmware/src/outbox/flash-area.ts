// The flash the outbox ring lives in, as NOR flash behaves (ESP32's SPI flash): erased bytes read
// 0xFF, a write can only clear bits (1 → 0), and only a whole sector can be set back to 0xFF. The
// firmware implements it over Moddable's `flash` module (src/platform/moddable-flash-area.ts), the
// emulator over a file (host/src/flash/file-flash-area.ts), the tests over a model that can be
// power-cut in the middle of any write or erase (firmware/test/models/nor-flash-model.ts).

/**
 * Writes are issued in whole units of this many bytes at offsets that are multiples of it: ESP-IDF's
 * `esp_partition_write` needs 16-byte alignment only on encrypted partitions, 4 bytes is what its
 * SPI flash driver programs without read-modify-write, and it is what the ring's records are padded to.
 */
export const FLASH_WRITE_UNIT = 4;

export interface FlashArea {
  /** Bytes in the area, a whole number of sectors. */
  readonly byteLength: number;
  /** The erase unit in bytes (4096 on the ESP32). */
  readonly sectorSize: number;
  read(offset: number, length: number): Uint8Array;
  /** Programs `bytes` at `offset`; both offset and length are multiples of FLASH_WRITE_UNIT. */
  write(offset: number, bytes: Uint8Array): void;
  /** Sets every byte of sector `sector` (0-based, within the area) to 0xFF. */
  erase(sector: number): void;
}
