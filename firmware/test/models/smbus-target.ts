/*
	The I2C side of a register-level device model: turns ECMA-419 SMBus calls (register
	pointer write, then data bytes, MSB first unless the caller asks for little-endian) into
	byte-level register reads and writes on the chip model. The chip answers with the bytes it
	would clock out; byte order is applied here, as the real SMBus class does, so a driver that
	forgets bigEndian reads swapped values just as on hardware.
	A wrong address, a powered-down chip or an injected fault makes every call throw, which is
	what Moddable's SMBus does on a NACK.
*/

import type { BufferSource, SMBusConstructor, SMBusIO, SMBusOptions } from "../../src/drivers/io";

export interface RegisterChip {
  readonly address: number;
  /** true: the chip does not acknowledge (unpowered, wire off, injected NACK). */
  nack: boolean;
  readRegister(register: number, byteLength: number): Uint8Array;
  writeRegister(register: number, bytes: Uint8Array): void;
}

export interface SMBusLog {
  opened: Array<SMBusOptions & { hz: number; address: number }>;
  closed: number;
}

export function smbusFor(chip: RegisterChip, log: SMBusLog = { opened: [], closed: 0 }): SMBusConstructor {
  return class ModelSMBus implements SMBusIO {
    readonly #address: number;
    #open = true;

    constructor(options: SMBusOptions & { hz: number; address: number }) {
      if (!(options.hz > 0 && options.hz <= 1_000_000)) throw new RangeError(`unsupported hz ${options.hz}`);
      log.opened.push(options);
      this.#address = options.address;
    }

    readUint8(register: number): number {
      return this.#read(register, 1)[0] ?? 0;
    }

    writeUint8(register: number, value: number): void {
      this.#write(register, Uint8Array.of(value & 0xff));
    }

    readUint16(register: number, bigEndian?: boolean): number {
      const [first = 0, second = 0] = this.#read(register, 2);
      return bigEndian ? (first << 8) | second : (second << 8) | first;
    }

    writeUint16(register: number, value: number, bigEndian?: boolean): void {
      const high = (value >> 8) & 0xff;
      const low = value & 0xff;
      this.#write(register, bigEndian ? Uint8Array.of(high, low) : Uint8Array.of(low, high));
    }

    readBuffer(register: number, byteLength: number): ArrayBuffer {
      return this.#read(register, byteLength).slice().buffer;
    }

    writeBuffer(register: number, buffer: BufferSource): void {
      const bytes = ArrayBuffer.isView(buffer)
        ? new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength)
        : new Uint8Array(buffer);
      this.#write(register, bytes.slice());
    }

    close(): void {
      if (this.#open) log.closed++;
      this.#open = false;
    }

    #read(register: number, byteLength: number): Uint8Array {
      this.#acknowledge();
      return chip.readRegister(register, byteLength);
    }

    #write(register: number, bytes: Uint8Array): void {
      this.#acknowledge();
      chip.writeRegister(register, bytes);
    }

    #acknowledge(): void {
      if (!this.#open) throw new Error("closed");
      if (chip.nack || this.#address !== chip.address)
        throw new Error(`I2C NACK at address 0x${this.#address.toString(16)}`);
    }
  };
}
