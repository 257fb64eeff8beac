/*
	Register-level model of the TI ADS1115 (datasheet SBAS444E, section 8.6 Register Map):
	Conversion (00h, read-only, two's complement), Config (01h, POR 8583h), Lo_thresh (02h,
	POR 8000h), Hi_thresh (03h, POR 7FFFh). Single-shot: writing OS = 1 starts a conversion
	that takes 1/DR of virtual time; OS reads 0 until it completes. The result saturates at
	7FFFh / 8000h like the real ADC.
*/

import type { FakeTimer } from "./fake-timer";
import type { RegisterChip } from "./smbus-target";

const FULL_SCALE = [6.144, 4.096, 2.048, 1.024, 0.512, 0.256, 0.256, 0.256];
const DATA_RATE = [8, 16, 32, 64, 128, 250, 475, 860];
// MUX 000…111: [positive input, negative input or -1 for GND]
const MUX: ReadonlyArray<readonly [number, number]> = [
  [0, 1],
  [0, 3],
  [1, 3],
  [2, 3],
  [0, -1],
  [1, -1],
  [2, -1],
  [3, -1],
];

export class Ads1115Model implements RegisterChip {
  readonly address: number;
  nack = false;
  /** Conversions never finish (a damaged or hung chip). */
  stuck = false;
  /** Volts on AIN0…AIN3 against GND. */
  readonly inputs = [0, 0, 0, 0];
  readonly conversionsStarted: number[] = [];
  #config = 0x8583;
  #conversion = 0;
  #loThresh = 0x8000;
  #hiThresh = 0x7fff;
  #busyUntil: number | undefined;
  #clock: FakeTimer;

  constructor(clock: FakeTimer, address = 0x48) {
    this.#clock = clock;
    this.address = address;
  }

  /** Loop current into a shunt on one input: volts = mA × Ω / 1000. */
  setLoopCurrent(input: number, milliamps: number, shuntOhms: number): void {
    this.inputs[input] = (milliamps * shuntOhms) / 1000;
  }

  readRegister(register: number, byteLength: number): Uint8Array {
    this.#complete();
    let value: number;
    switch (register & 0x03) {
      case 0:
        value = this.#conversion & 0xffff;
        break;
      case 1:
        value = (this.#config & 0x7fff) | (this.#busyUntil === undefined ? 0x8000 : 0);
        break;
      case 2:
        value = this.#loThresh;
        break;
      default:
        value = this.#hiThresh;
    }
    const bytes = new Uint8Array(byteLength);
    bytes[0] = value >> 8;
    if (byteLength > 1) bytes[1] = value & 0xff;
    return bytes;
  }

  writeRegister(register: number, bytes: Uint8Array): void {
    if (bytes.length < 2) return; // 16-bit registers: a partial write is not latched
    const value = ((bytes[0] ?? 0) << 8) | (bytes[1] ?? 0);
    switch (register & 0x03) {
      case 0:
        return; // read-only
      case 1:
        this.#complete();
        this.#config = value & 0x7fff;
        if (value & 0x8000 && value & 0x0100 && this.#busyUntil === undefined) this.#start();
        return;
      case 2:
        this.#loThresh = value;
        return;
      default:
        this.#hiThresh = value;
    }
  }

  get config(): number {
    return this.#config;
  }

  #start(): void {
    const rate = DATA_RATE[(this.#config >> 5) & 0x7] ?? 128;
    this.#busyUntil = this.#clock.now + 1000 / rate;
    this.conversionsStarted.push(this.#config);
  }

  #complete(): void {
    if (this.#busyUntil === undefined || this.stuck || this.#clock.now < this.#busyUntil) return;
    this.#busyUntil = undefined;
    const [positive = 0, negative = -1] = MUX[(this.#config >> 12) & 0x7] ?? [0, 1];
    const volts = (this.inputs[positive] ?? 0) - (negative < 0 ? 0 : (this.inputs[negative] ?? 0));
    const fullScale = FULL_SCALE[(this.#config >> 9) & 0x7] ?? 2.048;
    this.#conversion = Math.max(-32768, Math.min(32767, Math.round((volts / fullScale) * 32768)));
  }
}
