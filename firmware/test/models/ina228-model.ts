/*
	Register-level model of the TI INA228 (datasheet SBOSA20, 7.6 Register Map). The analog
	inputs are physical quantities (bus pin volts, shunt volts, die °C); registers are computed
	from them with the datasheet's LSB sizes: VSHUNT 312.5 nV or 78.125 nV (ADCRANGE), VBUS
	195.3125 µV, DIETEMP 7.8125 m°C, all 20-bit values left-aligned in 24 bits (D23:D4).
	CURRENT follows from eqs. 2–3: I = CURRENT × CURRENT_LSB = VSHUNT / R_SHUNT
	⇒ CURRENT = VSHUNT_code × 4096 / SHUNT_CAL (for either ADCRANGE), truncated as in the datasheet
	example (Table 8-4: 314572); MATHOF when it overflows.
*/

import type { RegisterChip } from "./smbus-target";

const SIZE: Readonly<Record<number, number>> = {
  0x00: 2,
  0x01: 2,
  0x02: 2,
  0x03: 2,
  0x04: 3,
  0x05: 3,
  0x06: 2,
  0x07: 3,
  0x08: 3,
  0x09: 5,
  0x0a: 5,
  0x0b: 2,
  0x0c: 2,
  0x0d: 2,
  0x0e: 2,
  0x0f: 2,
  0x10: 2,
  0x11: 2,
  0x3e: 2,
  0x3f: 2,
};
const DEFAULTS: ReadonlyArray<readonly [number, number]> = [
  [0x00, 0x0000],
  [0x01, 0xfb68],
  [0x02, 0x1000],
  [0x03, 0x0000],
  [0x0b, 0x0001],
  [0x0c, 0x7fff],
  [0x0d, 0x8000],
  [0x0e, 0x7fff],
  [0x0f, 0x0000],
  [0x10, 0x7fff],
  [0x11, 0xffff],
];
const MAX20 = 0x7ffff;
const MIN20 = -0x80000;

export class Ina228Model implements RegisterChip {
  readonly address: number;
  nack = false;
  busPinVolts = 0;
  shuntVolts = 0;
  dieTemperatureC = 25;
  manufacturerId = 0x5449;
  deviceId = 0x2281;
  /** Trim memory checksum failed (DIAG_ALRT MEMSTAT reads 0). */
  memoryError = false;
  readonly #registers = new Map<number, number>();

  constructor(address = 0x40) {
    this.address = address;
    this.reset();
  }

  /** Power-on reset / brown-out. */
  reset(): void {
    for (const [register, value] of DEFAULTS) this.#registers.set(register, value);
  }

  register(register: number): number {
    return this.#registers.get(register) ?? 0;
  }

  readRegister(register: number, byteLength: number): Uint8Array {
    const size = SIZE[register];
    const value = size === undefined ? 0 : this.#value(register);
    const width = size ?? 2;
    const bytes = new Uint8Array(byteLength);
    for (let i = 0; i < Math.min(byteLength, width); i++)
      bytes[i] = Math.floor(value / 2 ** (8 * (width - 1 - i))) & 0xff;
    return bytes;
  }

  writeRegister(register: number, bytes: Uint8Array): void {
    if (SIZE[register] !== 2 || bytes.length < 2) return; // measurement and ID registers are read-only
    if (register === 0x0b) return; // only ALATCH/APOL etc. are writable; not modelled
    const value = ((bytes[0] ?? 0) << 8) | (bytes[1] ?? 0);
    if (register === 0x00 && value & 0x8000) {
      this.reset();
      return;
    }
    this.#registers.set(register, register === 0x02 ? value & 0x7fff : value);
  }

  get shuntCode(): number {
    const adcRange = (this.register(0x00) >> 4) & 1;
    return clamp20(Math.round(this.shuntVolts / (adcRange ? 78.125e-9 : 312.5e-9)));
  }

  get currentCode(): { code: number; overflow: boolean } {
    const shuntCal = this.register(0x02);
    if (shuntCal === 0) return { code: 0, overflow: false };
    const exact = Math.trunc((this.shuntCode * 4096) / shuntCal);
    return { code: clamp20(exact), overflow: exact > MAX20 || exact < MIN20 };
  }

  #value(register: number): number {
    switch (register) {
      case 0x04:
        return left20(this.shuntCode);
      case 0x05:
        return left20(Math.max(0, Math.min(MAX20, Math.round(this.busPinVolts / 195.3125e-6))));
      case 0x06:
        return Math.round(this.dieTemperatureC / 7.8125e-3) & 0xffff;
      case 0x07:
        return left20(this.currentCode.code);
      case 0x0b:
        return (
          (this.register(0x0b) & 0xfffc & ~0x0200) |
          (this.currentCode.overflow ? 0x0200 : 0) |
          0x0002 |
          (this.memoryError ? 0 : 0x0001)
        );
      case 0x3e:
        return this.manufacturerId;
      case 0x3f:
        return this.deviceId;
      default:
        return this.register(register);
    }
  }
}

function clamp20(code: number): number {
  return Math.max(MIN20, Math.min(MAX20, code));
}

/** 20-bit two's complement in D23:D4 of a 24-bit register. */
function left20(code: number): number {
  return ((code < 0 ? code + 0x100000 : code) << 4) & 0xffffff;
}
