/*
	Maxim (Analog Devices) MAX31865
	RTD-to-Digital Converter
	https://www.analog.com/media/en/technical-documentation/data-sheets/MAX31865.pdf (19-6478 Rev 3)

	PT100 stack temperature. The chip converts continuously (automatic conversion mode, bias
	always on); each sample() reads the registers in one SPI burst, optionally runs the automatic
	fault detection cycle (REFIN-/RTDIN- checks that plain conversions cannot see), decodes the
	Fault Status register, clears latched faults, and converts the 15-bit RTD ratio to
	resistance (× R_REF / 2^15) and temperature (Callendar–Van Dusen, IEC 60751).
*/

import { RTD_MAX_C, RTD_MIN_C, rtdResistance, rtdTemperature } from "./callendar-van-dusen";
import type { DelayFunction, SPIConstructor, SPIIO, SPIOptions } from "./io";
import { errorText, faulted, measured } from "./measurement";
import type { FaultReason, Measured } from "./measurement";

/** Read addresses; a write sets bit 7 (datasheet Table 1). */
const Register = Object.freeze({
  CONFIG: 0x00,
  RTD_MSB: 0x01,
  RTD_LSB: 0x02,
  HIGH_FAULT_MSB: 0x03,
  HIGH_FAULT_LSB: 0x04,
  LOW_FAULT_MSB: 0x05,
  LOW_FAULT_LSB: 0x06,
  FAULT_STATUS: 0x07,
});
const WRITE = 0x80;

/** Configuration register bits (datasheet Table 2). */
const Config = Object.freeze({
  VBIAS: 0x80,
  AUTO_CONVERSION: 0x40,
  ONE_SHOT: 0x20,
  THREE_WIRE: 0x10,
  FAULT_CYCLE_MASK: 0x0c,
  FAULT_CYCLE_AUTOMATIC: 0x04,
  FAULT_CLEAR: 0x02,
  FILTER_50HZ: 0x01,
});

/** Fault Status register bits (datasheet Table 8); D1 and D0 are unused. */
export const Max31865FaultBit = Object.freeze({
  RTD_HIGH_THRESHOLD: 0x80,
  RTD_LOW_THRESHOLD: 0x40,
  REFIN_HIGH: 0x20, // V(REFIN-) > 0.85 × V(BIAS)
  REFIN_LOW_FORCE_OPEN: 0x10, // V(REFIN-) < 0.85 × V(BIAS), FORCE- open
  RTDIN_LOW_FORCE_OPEN: 0x08, // V(RTDIN-) < 0.85 × V(BIAS), FORCE- open
  OVER_UNDER_VOLTAGE: 0x04,
});
export type Max31865FaultName = keyof typeof Max31865FaultBit;

const FULL_SCALE = 0x7fff;
/** An open RTD reads full scale (datasheet "Decoding RTD and Cable Fault Conditions"); allow a little noise. */
const OPEN_RTD_CODE = FULL_SCALE - 16;
/** A shorted RTD reads near zero. */
const SHORTED_RTD_CODE = 64;
/** Quantisation puts the ends of the IEC 60751 span a few LSBs either side; beyond this margin is extrapolation. */
const CURVE_MARGIN_C = 1;
/** The automatic fault cycle takes well under a millisecond; 10 ms without completion means the chip is stuck. */
const FAULT_CYCLE_POLLS = 10;

export interface Max31865Options {
  sensor: SPIOptions & { io: SPIConstructor };
  /** Reference resistor, Ω (430 Ω on common PT100 boards). */
  referenceOhms?: number;
  /** RTD resistance at 0 °C, Ω (100 for PT100). */
  nominalOhms?: number;
  wires?: 2 | 3 | 4;
  /** Mains frequency to reject. */
  filterHz?: 50 | 60;
  /** Chip fault thresholds, °C: readings at or beyond them set RTD High/Low faults. */
  faultThresholdsC?: { low: number; high: number };
  /** Run the automatic fault detection cycle on every sample (catches FORCE-/REFIN- faults). */
  faultDetectionCycle?: boolean;
  /** Moddable's Timer.delay: waits for the fault detection cycle (well under 1 ms per step). */
  delay: DelayFunction;
  onError?: (message: string) => void;
}

export type Max31865Configuration = Partial<Omit<Max31865Options, "sensor" | "onError" | "delay">>;

export interface Max31865Sample {
  temperature: Measured;
  resistance: Measured;
  /** Fault Status register as read (and then cleared); 0 when none. */
  faultStatus: number;
  faults: Max31865FaultName[];
}

export function decodeMax31865Faults(status: number): Max31865FaultName[] {
  const names: Max31865FaultName[] = [];
  for (const name of Object.keys(Max31865FaultBit) as Max31865FaultName[])
    if (status & Max31865FaultBit[name]) names.push(name);
  return names;
}

/** The register value (15-bit ratio in D15:D1) for a resistance. */
export function max31865ThresholdRegister(ohms: number, referenceOhms: number): number {
  const code = Math.min(FULL_SCALE, Math.max(0, Math.round((ohms / referenceOhms) * 32768)));
  return code << 1;
}

export default class MAX31865 {
  #io: SPIIO | undefined;
  #onError: ((message: string) => void) | undefined;
  #delay: DelayFunction;
  #referenceOhms = 430;
  #nominalOhms = 100;
  #wires: 2 | 3 | 4 = 4;
  #filterHz: 50 | 60 = 50;
  #thresholdsC = { low: -100, high: 400 };
  #faultDetectionCycle = true;
  #ready = false;

  constructor(options: Max31865Options) {
    this.#onError = options.onError;
    this.#delay = options.delay;
    // SPI modes 1 and 3 only (datasheet "Serial Interface"); 5 MHz maximum.
    this.#io = new options.sensor.io({ hz: 1_000_000, mode: 1, ...options.sensor });
    this.configure(options);
  }

  configure(options: Max31865Configuration): void {
    if (options.referenceOhms !== undefined)
      this.#referenceOhms = positive(options.referenceOhms, "referenceOhms");
    if (options.nominalOhms !== undefined) this.#nominalOhms = positive(options.nominalOhms, "nominalOhms");
    if (options.wires !== undefined) {
      if (![2, 3, 4].includes(options.wires)) throw new RangeError("wires must be 2, 3 or 4");
      this.#wires = options.wires;
    }
    if (options.filterHz !== undefined) {
      if (options.filterHz !== 50 && options.filterHz !== 60)
        throw new RangeError("filterHz must be 50 or 60");
      this.#filterHz = options.filterHz;
    }
    if (options.faultThresholdsC !== undefined) {
      const { low, high } = options.faultThresholdsC;
      if (!(low < high)) throw new RangeError("faultThresholdsC.low must be below high");
      this.#thresholdsC = { low, high };
    }
    if (options.faultDetectionCycle !== undefined) this.#faultDetectionCycle = options.faultDetectionCycle;
    this.#initialise();
  }

  sample(): Max31865Sample {
    if (!this.#ready && this.#io) this.#initialise();
    if (!this.#ready) return failed("no_device", "MAX31865 did not accept its configuration");
    try {
      return this.#sample();
    } catch (error) {
      return failed("bus_error", `SPI: ${errorText(error)}`);
    }
  }

  close(): void {
    if (this.#io) {
      try {
        this.#write(Register.CONFIG, 0); // bias off: no self-heating, no current while idle
      } catch {
        // closing anyway
      }
      this.#io.close();
    }
    this.#io = undefined;
    this.#ready = false;
  }

  #sample(): Max31865Sample {
    const registers = this.#read(Register.CONFIG, 8);
    const config = registers[0] ?? 0;
    if ((config & ~Config.FAULT_CYCLE_MASK) !== this.#runningConfig()) {
      // Power loss resets the chip; a missing chip reads a floating MISO. Either way: reconfigure next time.
      this.#ready = false;
      return failed("no_device", `configuration register reads 0x${hex(config)}`);
    }
    const rtd = ((registers[1] ?? 0) << 8) | (registers[2] ?? 0);
    const code = rtd >> 1;
    let status = (registers[7] ?? 0) & 0xfc;

    if (this.#faultDetectionCycle) {
      const cycle = this.#runFaultDetectionCycle();
      if (cycle === undefined) return failed("sensor_fault", "fault detection cycle did not complete");
      status |= cycle;
    }

    if (status !== 0 || (rtd & 1) !== 0) {
      // Fault Clear needs D5, D3 and D2 written as 0 (datasheet Table 2, D1).
      this.#write(Register.CONFIG, this.#runningConfig() | Config.FAULT_CLEAR);
      const fault = classifyFault(status, code);
      return {
        temperature: faulted(fault.reason, fault.detail),
        resistance: faulted(fault.reason, fault.detail),
        faultStatus: status,
        faults: decodeMax31865Faults(status),
      };
    }

    const ohms = (code * this.#referenceOhms) / 32768;
    const temperatureC = rtdTemperature(ohms, this.#nominalOhms);
    let temperature: Measured;
    if (Number.isNaN(temperatureC))
      temperature = faulted("invalid_value", `${ohms.toFixed(3)} Ω is not on the RTD curve`);
    else if (temperatureC < RTD_MIN_C - CURVE_MARGIN_C)
      temperature = faulted("under_range", `${temperatureC.toFixed(2)} °C below IEC 60751 range`);
    else if (temperatureC > RTD_MAX_C + CURVE_MARGIN_C)
      temperature = faulted("over_range", `${temperatureC.toFixed(2)} °C above IEC 60751 range`);
    else temperature = measured(temperatureC);
    return { temperature, resistance: measured(ohms), faultStatus: 0, faults: [] };
  }

  /** Datasheet "Fault Detection Cycle (D3:D2)": write 100X010Xb, wait for D3:D2 to read 00. */
  #runFaultDetectionCycle(): number | undefined {
    const base = this.#baseConfig();
    this.#write(Register.CONFIG, base | Config.FAULT_CYCLE_AUTOMATIC);
    let done = false;
    for (let i = 0; i < FAULT_CYCLE_POLLS && !done; i++) {
      this.#delay(1);
      done = ((this.#read(Register.CONFIG, 1)[0] ?? 0) & Config.FAULT_CYCLE_MASK) === 0;
    }
    const status = done ? (this.#read(Register.FAULT_STATUS, 1)[0] ?? 0) & 0xfc : undefined;
    // The cycle leaves the ADC "normally off": back to automatic conversions.
    this.#write(Register.CONFIG, this.#runningConfig());
    return status;
  }

  #initialise(): void {
    this.#ready = false;
    if (!this.#io) return;
    try {
      const high = max31865ThresholdRegister(
        rtdResistance(this.#thresholdsC.high, this.#nominalOhms),
        this.#referenceOhms,
      );
      const low = max31865ThresholdRegister(
        rtdResistance(this.#thresholdsC.low, this.#nominalOhms),
        this.#referenceOhms,
      );
      // The notch filter must not change during automatic conversion (datasheet Table 2, D0): stop first.
      this.#write(Register.CONFIG, this.#baseConfig());
      this.#write(Register.HIGH_FAULT_MSB, high >> 8, high & 0xff, low >> 8, low & 0xff);
      this.#write(Register.CONFIG, this.#baseConfig() | Config.FAULT_CLEAR);
      this.#write(Register.CONFIG, this.#runningConfig());
      const readBack = this.#read(Register.CONFIG, 7);
      const ok =
        readBack[0] === this.#runningConfig() &&
        readBack[3] === high >> 8 &&
        readBack[4] === (high & 0xff) &&
        readBack[5] === low >> 8 &&
        readBack[6] === (low & 0xff);
      if (!ok) {
        this.#onError?.("MAX31865 not responding (configuration read back differs)");
        return;
      }
      this.#ready = true;
    } catch (error) {
      this.#onError?.(`MAX31865: ${errorText(error)}`);
    }
  }

  #baseConfig(): number {
    return (
      Config.VBIAS |
      (this.#wires === 3 ? Config.THREE_WIRE : 0) |
      (this.#filterHz === 50 ? Config.FILTER_50HZ : 0)
    );
  }

  #runningConfig(): number {
    return this.#baseConfig() | Config.AUTO_CONVERSION;
  }

  #read(address: number, count: number): Uint8Array {
    const io = this.#io;
    if (!io) throw new Error("closed");
    const buffer = new Uint8Array(count + 1);
    buffer[0] = address;
    io.transfer(buffer);
    io.flush(true);
    return buffer.subarray(1);
  }

  #write(address: number, ...values: number[]): void {
    const io = this.#io;
    if (!io) throw new Error("closed");
    io.write(Uint8Array.of(address | WRITE, ...values));
    io.flush(true);
  }
}

function classifyFault(status: number, code: number): { reason: FaultReason; detail: string } {
  const names = decodeMax31865Faults(status);
  const detail =
    names.length > 0 ? `fault status 0x${hex(status)}: ${names.join(", ")}` : "RTD fault bit set";
  const bit = Max31865FaultBit;
  if (status & bit.RTD_HIGH_THRESHOLD && code >= OPEN_RTD_CODE)
    return { reason: "open_circuit", detail: `open RTD; ${detail}` };
  if (status & bit.REFIN_HIGH) return { reason: "open_circuit", detail: `open RTD; ${detail}` };
  if (status & bit.RTD_LOW_THRESHOLD && code <= SHORTED_RTD_CODE)
    return { reason: "short_circuit", detail: `shorted RTD; ${detail}` };
  if (status & bit.RTD_HIGH_THRESHOLD) return { reason: "over_range", detail };
  if (status & bit.RTD_LOW_THRESHOLD) return { reason: "under_range", detail };
  return { reason: "sensor_fault", detail };
}

function failed(reason: FaultReason, detail: string): Max31865Sample {
  return {
    temperature: faulted(reason, detail),
    resistance: faulted(reason, detail),
    faultStatus: 0,
    faults: [],
  };
}

function positive(value: number, name: string): number {
  if (!(value > 0) || !Number.isFinite(value)) throw new RangeError(`${name} must be a positive number`);
  return value;
}

function hex(value: number): string {
  return value.toString(16).padStart(2, "0");
}
