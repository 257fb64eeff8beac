// A FlashArea over a file, for emulated boards: the same ring the firmware keeps in its "outbox"
// partition, kept in one file per board, so an emulated board can be killed or power-cut and recover
// from what it wrote. It behaves as NOR flash does (a fresh file reads 0xFF, a write may only clear
// bits, an erase sets a sector back to 0xFF), so a ring bug that would corrupt real flash fails here too
// instead of being masked by a file's overwrite semantics. Each write is one pwrite: a process killed
// between the two writes of a record leaves it torn exactly as a power cut between them would.
// No fsync: this models the board's flash against a crash of the emulator's process, not of the host.
import { closeSync, fstatSync, openSync, readSync, writeSync } from "node:fs";
import { FLASH_WRITE_UNIT, type FlashArea } from "../../../firmware/src/outbox/flash-area";

export interface FileFlashAreaOptions {
  path: string;
  sectors: number;
  /** Default 4096, as on the ESP32. */
  sectorSize?: number;
}

export default class FileFlashArea implements FlashArea {
  readonly byteLength: number;
  readonly sectorSize: number;
  readonly path: string;
  #fd: number | undefined;

  /** Opens the file, creating it erased (all 0xFF) if it does not exist; an existing file must have the same size. */
  constructor(options: FileFlashAreaOptions) {
    this.sectorSize = options.sectorSize ?? 4096;
    if (!Number.isInteger(options.sectors) || options.sectors < 1)
      throw new RangeError("file flash: sectors must be a positive integer");
    this.byteLength = options.sectors * this.sectorSize;
    this.path = options.path;
    const fd = openSync(options.path, "a+", 0o600); // create if missing, never truncate
    closeSync(fd);
    this.#fd = openSync(options.path, "r+");
    const size = fstatSync(this.#fd).size;
    if (size === 0) for (let s = 0; s < options.sectors; s++) this.erase(s);
    else if (size !== this.byteLength) {
      this.close();
      throw new Error(
        `file flash ${options.path}: ${size} bytes, expected ${this.byteLength} (${options.sectors} × ${this.sectorSize})`,
      );
    }
  }

  read(offset: number, length: number): Uint8Array {
    this.#bounds(offset, length);
    const out = new Uint8Array(length);
    let done = 0;
    while (done < length) {
      const n = readSync(this.#open(), out, done, length - done, offset + done);
      if (n === 0) throw new Error(`file flash ${this.path}: short read at ${offset + done}`);
      done += n;
    }
    return out;
  }

  write(offset: number, bytes: Uint8Array): void {
    if (offset % FLASH_WRITE_UNIT !== 0 || bytes.length % FLASH_WRITE_UNIT !== 0)
      throw new RangeError(`file flash: unaligned write at ${offset}, ${bytes.length} bytes`);
    const old = this.read(offset, bytes.length);
    for (let i = 0; i < bytes.length; i++)
      if ((old[i]! & bytes[i]!) !== bytes[i])
        throw new Error(`file flash ${this.path}: write would set bits at ${offset + i}`);
    this.#writeAll(offset, bytes);
  }

  erase(sector: number): void {
    if (!Number.isInteger(sector) || sector < 0 || (sector + 1) * this.sectorSize > this.byteLength)
      throw new RangeError(`file flash: no sector ${sector}`);
    this.#writeAll(sector * this.sectorSize, new Uint8Array(this.sectorSize).fill(0xff));
  }

  close(): void {
    if (this.#fd !== undefined) closeSync(this.#fd);
    this.#fd = undefined;
  }

  #writeAll(offset: number, bytes: Uint8Array): void {
    let done = 0;
    while (done < bytes.length)
      done += writeSync(this.#open(), bytes, done, bytes.length - done, offset + done);
  }

  #bounds(offset: number, length: number): void {
    if (
      !Number.isInteger(offset) ||
      !Number.isInteger(length) ||
      offset < 0 ||
      length < 0 ||
      offset + length > this.byteLength
    )
      throw new RangeError(`file flash: ${length} bytes at ${offset} out of bounds`);
  }

  #open(): number {
    if (this.#fd === undefined) throw new Error(`file flash ${this.path}: closed`);
    return this.#fd;
  }
}
