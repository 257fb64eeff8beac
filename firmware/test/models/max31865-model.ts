/*
	Register-level model of the Maxim MAX31865 behind an ECMA-419 SPI object
	(datasheet 19-6478 Rev 3: Table 1 register map, Table 2 configuration, Fault Status).
	Chip select asserts with the first byte after a deselect and releases on flush(true)
	(Moddable's SPI). The first byte is the address (bit 7 = write), data bytes follow with
	the address auto-incrementing. Automatic conversion happens while VBIAS and the
	conversion-mode bit are on: each chip-select assertion stands for at least one elapsed
	conversion period. Conversions compare the result against the threshold registers
	(High: RTD ≥ threshold, Low: RTD ≤ threshold) and latch D7/D6; the automatic fault
	detection cycle (write 100X010Xb) latches the injected D5…D3 voltage-comparator faults and
	reads D3:D2 = 01 for a number of reads before self-clearing. Fault Clear only works when
	D5, D3 and D2 are written 0.
*/

import type { BufferSource, SPIConstructor, SPIIO, SPIOptions } from "../../src/drivers/io";

export type RtdCondition = "ok" | "open" | "shorted";

export class Max31865Model {
  /** Ω across RTDIN+/RTDIN- when the condition is "ok". */
  rtdOhms = 100;
  referenceOhms = 430;
  condition: RtdCondition = "ok";
  /** D5…D3 bits the fault detection cycle will find (cable faults per datasheet Tables 10–12). */
  cycleFaults = 0;
  /** A protected input above VDD or below GND1: latches D2 on the next conversion. */
  overvoltage = false;
  /** Reads the fault detection cycle stays busy for; Infinity = never finishes. */
  cycleBusyReads = 1;
  /** MISO floating high: no chip on the bus. */
  absent = false;
  /** The SPI peripheral reports an error (Moddable throws from transfer/write). */
  busError = false;
  readonly registers = new Uint8Array(8);
  readonly transactions: Uint8Array[] = [];
  #cycleReadsLeft = 0;

  constructor() {
    this.registers.set([0x00, 0x00, 0x00, 0xff, 0xff, 0x00, 0x00, 0x00]);
  }

  spi(): SPIConstructor {
    return spiFor(this);
  }

  /** 15-bit code the ADC would produce now. */
  get adcCode(): number {
    if (this.condition === "open") return 0x7fff;
    const ohms = this.condition === "shorted" ? 0.05 : this.rtdOhms;
    return Math.max(0, Math.min(0x7fff, Math.round((ohms / this.referenceOhms) * 32768)));
  }

  /** Runs a conversion as the chip does in automatic mode. */
  convert(): void {
    const code = this.adcCode;
    const high = (((this.registers[3] ?? 0) << 8) | (this.registers[4] ?? 0)) >> 1;
    const low = (((this.registers[5] ?? 0) << 8) | (this.registers[6] ?? 0)) >> 1;
    let status = this.registers[7] ?? 0;
    if (code >= high) status |= 0x80;
    if (code <= low) status |= 0x40;
    if (this.overvoltage) status |= 0x04;
    this.registers[7] = status;
    this.registers[1] = (code >> 7) & 0xff;
    this.registers[2] = ((code << 1) & 0xfe) | (status !== 0 ? 1 : 0);
  }

  /** Chip select asserted. */
  select(): void {
    const config = this.registers[0] ?? 0;
    if ((config & 0xc0) === 0xc0 && (config & 0x0c) === 0) this.convert();
  }

  readRegister(address: number): number {
    const value = this.registers[address] ?? 0;
    if (address === 0 && this.#cycleReadsLeft > 0) {
      this.#cycleReadsLeft--;
      if (this.#cycleReadsLeft === 0) this.#finishCycle();
    }
    return value;
  }

  writeRegister(address: number, value: number): void {
    if (address === 1 || address === 2 || address === 7) return; // read-only
    if (address !== 0) {
      this.registers[address] = value;
      return;
    }
    let config = value & ~0x22; // 1-shot and fault-clear self-clear
    if (value & 0x02 && (value & 0x2c) === 0) {
      this.registers[7] = 0;
      this.registers[2] = (this.registers[2] ?? 0) & 0xfe;
    }
    if (value & 0x20 && value & 0x80) this.convert();
    const cycle = value & 0x0c;
    if (cycle === 0x04 && (value & 0xc0) === 0x80) {
      this.#cycleReadsLeft = this.cycleBusyReads;
      if (this.#cycleReadsLeft === 0) {
        this.registers[0] = config;
        this.#finishCycle();
        return;
      }
    } else if (cycle !== 0 && cycle !== 0x04) {
      config &= ~0x0c; // manual cycles are not modelled
    }
    this.registers[0] = config;
  }

  #finishCycle(): void {
    const condition = this.condition === "open" ? 0x20 : 0;
    this.registers[7] = (this.registers[7] ?? 0) | condition | (this.cycleFaults & 0x38);
    this.registers[0] = (this.registers[0] ?? 0) & ~0x0c;
  }
}

/** The chip select / shift register side of the model, as Moddable's SPI class behaves. */
function spiFor(chip: Max31865Model): SPIConstructor {
  return class ModelSPI implements SPIIO {
    #selected = false;
    #address = 0;
    #write = false;
    #open = true;

    constructor(options: SPIOptions & { hz: number; mode: number }) {
      if (options.mode !== 1 && options.mode !== 3)
        throw new RangeError("MAX31865 supports SPI modes 1 and 3");
      if (options.hz > 5_000_000) throw new RangeError("MAX31865 SCLK is 5 MHz at most");
    }

    transfer(buffer: ArrayBufferView): void {
      const bytes = new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength);
      for (let i = 0; i < bytes.length; i++) bytes[i] = this.#clock(bytes[i] ?? 0);
    }

    write(buffer: BufferSource): void {
      const bytes = ArrayBuffer.isView(buffer)
        ? new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength)
        : new Uint8Array(buffer);
      for (const byte of bytes) this.#clock(byte);
    }

    flush(deselect?: boolean): void {
      if (deselect) this.#selected = false;
    }

    close(): void {
      this.#open = false;
    }

    /** One byte in on SDI, one byte out on SDO. */
    #clock(input: number): number {
      if (!this.#open) throw new Error("closed");
      if (chip.busError) throw new Error("SPI transfer failed");
      if (!this.#selected) {
        this.#selected = true;
        this.#address = input & 0x7f;
        this.#write = (input & 0x80) !== 0;
        chip.transactions.push(Uint8Array.of(input));
        chip.select();
        return 0xff;
      }
      const address = this.#address & 0x07;
      this.#address = (address + 1) & 0x07;
      if (this.#write) {
        chip.writeRegister(address, input);
        return chip.absent ? 0xff : 0x00;
      }
      const output = chip.readRegister(address);
      return chip.absent ? 0xff : output;
    }
  };
}
