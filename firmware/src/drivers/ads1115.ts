/*
	Texas Instruments ADS1115
	Ultra-Small, Low-Power, I2C-Compatible, 860-SPS, 16-Bit ADCs With Internal Reference,
	Oscillator, and Programmable Comparator
	https://www.ti.com/lit/ds/symlink/ads1115.pdf (SBAS444E)

	4–20 mA transmitters (stack pressure, H2 purity analyser) read as the voltage across a
	shunt. Each channel is converted single-shot: write the Config register with OS = 1, wait
	one conversion period, poll OS until it reads 1 (idle), read the Conversion register.
	The PGA full-scale range is chosen per channel so the NE 43 failure band above 20.5 mA
	still reads below full scale: with a 150 Ω shunt, 24 mA is 3.6 V → ±4.096 V (125 µV/LSB).
*/

import { loopCurrentToValue } from "./current-loop";
import type { LoopCalibration } from "./current-loop";
import type { DelayFunction, SMBusConstructor, SMBusIO, SMBusOptions } from "./io";
import { errorText, faulted } from "./measurement";
import type { FaultReason, Measured } from "./measurement";

const Register = Object.freeze({
  CONVERSION: 0x00,
  CONFIG: 0x01,
  LO_THRESH: 0x02,
  HI_THRESH: 0x03,
});

/** Config register fields (datasheet Table 8). */
const Config = Object.freeze({
  OS: 0x8000, // write: start a single conversion; read: 1 = idle
  MUX_SHIFT: 12,
  PGA_SHIFT: 9,
  MODE_SINGLE_SHOT: 0x0100,
  DR_SHIFT: 5,
  COMP_QUE_DISABLE: 0x0003,
});

export const Ads1115Input = Object.freeze({
  "AIN0-AIN1": 0b000,
  "AIN0-AIN3": 0b001,
  "AIN1-AIN3": 0b010,
  "AIN2-AIN3": 0b011,
  AIN0: 0b100,
  AIN1: 0b101,
  AIN2: 0b110,
  AIN3: 0b111,
});
export type Ads1115InputName = keyof typeof Ads1115Input;

/** Full-scale range (V) → PGA field (datasheet Table 3; 0.256 V also has codes 110b, 111b). */
const PgaCode: ReadonlyMap<number, number> = new Map([
  [6.144, 0b000],
  [4.096, 0b001],
  [2.048, 0b010],
  [1.024, 0b011],
  [0.512, 0b100],
  [0.256, 0b101],
]);
export type Ads1115FullScale = 6.144 | 4.096 | 2.048 | 1.024 | 0.512 | 0.256;

const DataRateCode: ReadonlyMap<number, number> = new Map([
  [8, 0b000],
  [16, 0b001],
  [32, 0b010],
  [64, 0b011],
  [128, 0b100],
  [250, 0b101],
  [475, 0b110],
  [860, 0b111],
]);
export type Ads1115DataRate = 8 | 16 | 32 | 64 | 128 | 250 | 475 | 860;

/** The highest loop current the chosen range must still resolve (well past the NE 43 failure level). */
const HEADROOM_MA = 24;
const READY_POLLS = 5;
const POSITIVE_FULL_SCALE = 0x7fff;

/** LSB size in volts: FSR / 2^15 (datasheet Table 3). */
export function ads1115LsbVolts(fullScale: Ads1115FullScale): number {
  return fullScale / 32768;
}

/** Smallest range that still reads 24 mA across the shunt. */
export function ads1115RangeForShunt(shuntOhms: number): Ads1115FullScale {
  const needed = (shuntOhms * HEADROOM_MA) / 1000;
  const ranges = [...PgaCode.keys()].sort((a, b) => a - b) as Ads1115FullScale[];
  const range = ranges.find((fsr) => fsr >= needed);
  if (range === undefined)
    throw new RangeError(`a ${shuntOhms} Ω shunt at ${HEADROOM_MA} mA exceeds ±6.144 V`);
  return range;
}

export interface Ads1115LoopChannel extends LoopCalibration {
  name: string;
  input: Ads1115InputName;
  /** Calibrated shunt resistance, Ω. */
  shuntOhms: number;
  /** Override the automatic range; must read beyond 20.5 mA across the shunt. */
  fullScale?: Ads1115FullScale;
}

export interface Ads1115Options {
  sensor: SMBusOptions & { io: SMBusConstructor };
  /** Moddable's Timer.delay: waits out a conversion. */
  delay: DelayFunction;
  channels: readonly Ads1115LoopChannel[];
  dataRate?: Ads1115DataRate;
  onError?: (message: string) => void;
}

export type Ads1115Configuration = Partial<Pick<Ads1115Options, "channels" | "dataRate">>;

export type LoopSample = Measured & { milliamps: number | null };
export type Ads1115Sample = Record<string, LoopSample>;

interface PreparedChannel {
  channel: Ads1115LoopChannel;
  config: number;
  lsbVolts: number;
}

export default class ADS1115 {
  #io: SMBusIO | undefined;
  #delay: DelayFunction;
  #onError: ((message: string) => void) | undefined;
  #dataRate: Ads1115DataRate = 128;
  #channels: readonly Ads1115LoopChannel[] = [];
  #prepared: PreparedChannel[] = [];
  #present = false;

  constructor(options: Ads1115Options) {
    this.#delay = options.delay;
    this.#onError = options.onError;
    this.#io = new options.sensor.io({ hz: 400_000, address: 0x48, ...options.sensor });
    this.configure(options);
    this.#probe();
  }

  configure(options: Ads1115Configuration): void {
    if (options.dataRate !== undefined) {
      if (!DataRateCode.has(options.dataRate))
        throw new RangeError(`unsupported data rate ${options.dataRate}`);
      this.#dataRate = options.dataRate;
    }
    if (options.channels !== undefined) this.#channels = [...options.channels];
    this.#prepared = this.#channels.map((channel) => this.#prepare(channel));
  }

  sample(): Ads1115Sample {
    const result: Ads1115Sample = {};
    if (!this.#present) this.#probe();
    for (const prepared of this.#prepared) {
      const name = prepared.channel.name;
      if (!this.#present) {
        result[name] = loopFault("no_device", "ADS1115 did not answer");
        continue;
      }
      try {
        result[name] = this.#convert(prepared);
      } catch (error) {
        result[name] = loopFault("bus_error", `I2C: ${errorText(error)}`);
      }
    }
    return result;
  }

  close(): void {
    this.#io?.close();
    this.#io = undefined;
    this.#present = false;
  }

  #convert({ channel, config, lsbVolts }: PreparedChannel): LoopSample {
    const io = this.#io;
    if (!io) return loopFault("no_device", "closed");
    io.writeUint16(Register.CONFIG, config, true);
    // Conversion time is 1/DR; the internal oscillator may run 10 % slow (datasheet 7.5).
    this.#delay(Math.ceil(1100 / this.#dataRate));
    let idle = (io.readUint16(Register.CONFIG, true) & Config.OS) !== 0;
    for (let i = 0; i < READY_POLLS && !idle; i++) {
      this.#delay(1);
      idle = (io.readUint16(Register.CONFIG, true) & Config.OS) !== 0;
    }
    if (!idle)
      return loopFault(
        "conversion_timeout",
        `no conversion within ${Math.ceil(1100 / this.#dataRate) + READY_POLLS} ms`,
      );

    const raw = io.readUint16(Register.CONVERSION, true);
    const code = raw >= 0x8000 ? raw - 0x10000 : raw;
    if (code >= POSITIVE_FULL_SCALE) return loopFault("over_range", "ADC at positive full scale");
    const milliamps = ((code * lsbVolts) / channel.shuntOhms) * 1000;
    return { ...loopCurrentToValue(milliamps, channel), milliamps };
  }

  #prepare(channel: Ads1115LoopChannel): PreparedChannel {
    const mux = Ads1115Input[channel.input];
    if (mux === undefined) throw new RangeError(`${channel.name}: unknown input ${channel.input}`);
    if (!(channel.shuntOhms > 0)) throw new RangeError(`${channel.name}: shuntOhms must be positive`);
    if (
      !Number.isFinite(channel.rangeLow) ||
      !Number.isFinite(channel.rangeHigh) ||
      channel.rangeLow === channel.rangeHigh
    )
      throw new RangeError(`${channel.name}: rangeLow and rangeHigh must be distinct numbers`);
    const fullScale = channel.fullScale ?? ads1115RangeForShunt(channel.shuntOhms);
    const pga = PgaCode.get(fullScale);
    if (pga === undefined) throw new RangeError(`${channel.name}: unsupported full scale ${fullScale} V`);
    if (fullScale <= (channel.shuntOhms * 20.5) / 1000)
      throw new RangeError(
        `${channel.name}: ±${fullScale} V clips below 20.5 mA across ${channel.shuntOhms} Ω`,
      );
    const dataRate = DataRateCode.get(this.#dataRate) ?? 0b100;
    const config =
      Config.OS |
      (mux << Config.MUX_SHIFT) |
      (pga << Config.PGA_SHIFT) |
      Config.MODE_SINGLE_SHOT |
      (dataRate << Config.DR_SHIFT) |
      Config.COMP_QUE_DISABLE;
    return { channel, config, lsbVolts: ads1115LsbVolts(fullScale) };
  }

  #probe(): void {
    try {
      this.#io?.readUint16(Register.CONFIG, true);
      this.#present = this.#io !== undefined;
    } catch (error) {
      this.#present = false;
      this.#onError?.(`ADS1115: ${errorText(error)}`);
    }
  }
}

function loopFault(reason: FaultReason, detail: string): LoopSample {
  return { ...faulted(reason, detail), milliamps: null };
}
