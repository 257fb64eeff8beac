/*
	Texas Instruments INA228
	85-V, 20-Bit, Ultra-Precise Power/Energy/Charge Monitor With I2C Interface
	https://www.ti.com/lit/ds/symlink/ina228.pdf (SBOSA20)

	Stack voltage and stack current. The bus input is rated 0–85 V, and a stack runs above
	that, so VBUS sees the stack through a resistive divider: stack V = VBUS × dividerRatio
	(ratio = (R_top + R_bottom) / R_bottom, calibrated). The IN+/IN- common-mode limit is also
	85 V: the shunt must sit in the low side (stack return) for a stack above 85 V.
	Current: CURRENT_LSB = I_max / 2^19, SHUNT_CAL = 13107.2·10^6 × CURRENT_LSB × R_shunt
	(×4 with ADCRANGE = 1), I = CURRENT × CURRENT_LSB (datasheet 8.1.2).
*/

import type { SMBusConstructor, SMBusIO, SMBusOptions } from "./io";
import { errorText, faulted, measured } from "./measurement";
import type { FaultReason, Measured } from "./measurement";

const Register = Object.freeze({
  CONFIG: 0x00,
  ADC_CONFIG: 0x01,
  SHUNT_CAL: 0x02,
  SHUNT_TEMPCO: 0x03,
  VSHUNT: 0x04, // 24 bits, D23:D4 = 20-bit two's complement
  VBUS: 0x05, // 24 bits, D23:D4
  DIETEMP: 0x06, // 16 bits
  CURRENT: 0x07, // 24 bits, D23:D4
  POWER: 0x08, // 24 bits
  DIAG_ALRT: 0x0b,
  MANUFACTURER_ID: 0x3e,
  DEVICE_ID: 0x3f,
});

const ConfigBit = Object.freeze({ RST: 0x8000, ADCRANGE: 0x0010 });

/** DIAG_ALRT flags (datasheet Table 7-15). */
const Diag = Object.freeze({ MATHOF: 0x0200, CNVRF: 0x0002, MEMSTAT: 0x0001 });

const MANUFACTURER_TI = 0x5449; // "TI"
const DIE_ID = 0x228;

/** Continuous shunt + bus + temperature, 1052 µs per conversion, 16 averages (datasheet Table 7-6). */
const ADC_CONFIG_VALUE = (0xf << 12) | (0x5 << 9) | (0x5 << 6) | (0x5 << 3) | 0x2;

export const Ina228Lsb = Object.freeze({
  VBUS_V: 195.3125e-6,
  VSHUNT_V: [312.5e-9, 78.125e-9] as const, // by ADCRANGE
  DIETEMP_C: 7.8125e-3,
  BUS_MAX_V: 85,
});

const CODE20_MAX = 0x7ffff;
const CODE20_MIN = -0x80000;
const SHUNT_CAL_MAX = 0x7fff;

export interface Ina228Calibration {
  adcRange: 0 | 1;
  currentLsb: number;
  shuntCal: number;
}

/**
 * ADCRANGE = 1 (±40.96 mV, 4× finer) when the shunt drop at I_max fits, else ±163.84 mV.
 * Throws when the shunt drop exceeds ±163.84 mV or SHUNT_CAL leaves its 15 bits.
 */
export function ina228Calibration(shuntOhms: number, maxCurrentA: number): Ina228Calibration {
  if (!(shuntOhms > 0) || !(maxCurrentA > 0))
    throw new RangeError("shuntOhms and maxCurrentA must be positive");
  const drop = shuntOhms * maxCurrentA;
  if (drop > 0.16384)
    throw new RangeError(`${(drop * 1000).toFixed(1)} mV across the shunt exceeds ±163.84 mV`);
  const adcRange: 0 | 1 = drop <= 0.04096 ? 1 : 0;
  const currentLsb = maxCurrentA / 2 ** 19;
  const shuntCal = Math.round(13107.2e6 * currentLsb * shuntOhms * (adcRange === 1 ? 4 : 1));
  if (shuntCal < 1 || shuntCal > SHUNT_CAL_MAX)
    throw new RangeError(`SHUNT_CAL ${shuntCal} outside 1…${SHUNT_CAL_MAX}`);
  return { adcRange, currentLsb, shuntCal };
}

export interface Ina228Options {
  sensor: SMBusOptions & { io: SMBusConstructor };
  /** Calibrated shunt resistance, Ω. */
  shuntOhms: number;
  /** Largest current to measure, A: sets CURRENT_LSB. */
  maxCurrentA: number;
  /** Stack volts per volt at the VBUS pin (1 without a divider). */
  dividerRatio?: number;
  onError?: (message: string) => void;
}

export type Ina228Configuration = Partial<Pick<Ina228Options, "shuntOhms" | "maxCurrentA" | "dividerRatio">>;

export interface Ina228Sample {
  /** Stack voltage, V (after the divider). */
  voltage: Measured;
  /** Stack current, A. */
  current: Measured;
  shuntVoltage: number | null;
  dieTemperature: number | null;
}

export default class INA228 {
  #io: SMBusIO | undefined;
  #onError: ((message: string) => void) | undefined;
  #shuntOhms: number;
  #maxCurrentA: number;
  #dividerRatio = 1;
  #calibration: Ina228Calibration;
  #ready = false;
  #problem = "not configured";

  constructor(options: Ina228Options) {
    this.#onError = options.onError;
    this.#shuntOhms = options.shuntOhms;
    this.#maxCurrentA = options.maxCurrentA;
    this.#calibration = ina228Calibration(this.#shuntOhms, this.#maxCurrentA);
    this.#io = new options.sensor.io({ hz: 400_000, address: 0x40, ...options.sensor });
    this.configure(options);
  }

  get calibration(): Readonly<Ina228Calibration> {
    return this.#calibration;
  }

  configure(options: Ina228Configuration): void {
    if (options.shuntOhms !== undefined) this.#shuntOhms = options.shuntOhms;
    if (options.maxCurrentA !== undefined) this.#maxCurrentA = options.maxCurrentA;
    if (options.dividerRatio !== undefined) {
      if (!(options.dividerRatio >= 1) || !Number.isFinite(options.dividerRatio))
        throw new RangeError("dividerRatio must be a finite number ≥ 1");
      this.#dividerRatio = options.dividerRatio;
    }
    this.#calibration = ina228Calibration(this.#shuntOhms, this.#maxCurrentA);
    this.#initialise();
  }

  sample(): Ina228Sample {
    if (!this.#ready) this.#initialise();
    if (!this.#ready) return failed("no_device", this.#problem);
    const io = this.#io;
    if (!io) return failed("no_device", "closed");
    try {
      if (io.readUint16(Register.SHUNT_CAL, true) !== this.#calibration.shuntCal) {
        // Brown-out reset the chip: its current readings use the wrong calibration.
        this.#ready = false;
        return failed("no_device", "SHUNT_CAL lost (device reset)");
      }
      const diag = io.readUint16(Register.DIAG_ALRT, true);
      const vbus = read20(io, Register.VBUS);
      const vshunt = read20(io, Register.VSHUNT);
      const current = read20(io, Register.CURRENT);
      const dieTemperature = signed16(io.readUint16(Register.DIETEMP, true)) * Ina228Lsb.DIETEMP_C;
      const shuntVoltage = vshunt * Ina228Lsb.VSHUNT_V[this.#calibration.adcRange];
      return {
        voltage: this.#voltage(vbus, diag),
        current: this.#current(current, vshunt, diag),
        shuntVoltage,
        dieTemperature,
      };
    } catch (error) {
      return failed("bus_error", `I2C: ${errorText(error)}`);
    }
  }

  close(): void {
    const io = this.#io;
    if (io) {
      try {
        io.writeUint16(Register.ADC_CONFIG, 0x0000, true); // shutdown mode
      } catch {
        // closing anyway
      }
      io.close();
    }
    this.#io = undefined;
    this.#ready = false;
  }

  #voltage(code: number, diag: number): Measured {
    if (!(diag & Diag.MEMSTAT))
      return faulted("sensor_fault", "trim memory checksum error (DIAG_ALRT MEMSTAT = 0)");
    if (code < 0) return faulted("invalid_value", "negative bus voltage code");
    const pinVolts = code * Ina228Lsb.VBUS_V;
    if (pinVolts > Ina228Lsb.BUS_MAX_V)
      return faulted("over_range", `VBUS pin ${pinVolts.toFixed(3)} V > 85 V`);
    return measured(pinVolts * this.#dividerRatio);
  }

  #current(code: number, shuntCode: number, diag: number): Measured {
    if (!(diag & Diag.MEMSTAT))
      return faulted("sensor_fault", "trim memory checksum error (DIAG_ALRT MEMSTAT = 0)");
    if (diag & Diag.MATHOF) return faulted("over_range", "current arithmetic overflow (DIAG_ALRT MATHOF)");
    if (shuntCode >= CODE20_MAX || shuntCode <= CODE20_MIN)
      return faulted("over_range", "shunt voltage at ADC full scale");
    return measured(code * this.#calibration.currentLsb);
  }

  #initialise(): void {
    this.#ready = false;
    const io = this.#io;
    if (!io) return;
    try {
      const manufacturer = io.readUint16(Register.MANUFACTURER_ID, true);
      const device = io.readUint16(Register.DEVICE_ID, true);
      if (manufacturer !== MANUFACTURER_TI || device >> 4 !== DIE_ID) {
        this.#problem = `unexpected device: manufacturer 0x${manufacturer.toString(16)}, device 0x${device.toString(16)}`;
        this.#onError?.(`INA228: ${this.#problem}`);
        return;
      }
      const { adcRange, shuntCal } = this.#calibration;
      io.writeUint16(Register.CONFIG, ConfigBit.RST, true);
      io.writeUint16(Register.CONFIG, adcRange === 1 ? ConfigBit.ADCRANGE : 0, true);
      io.writeUint16(Register.ADC_CONFIG, ADC_CONFIG_VALUE, true);
      io.writeUint16(Register.SHUNT_CAL, shuntCal, true);
      if (
        io.readUint16(Register.SHUNT_CAL, true) !== shuntCal ||
        io.readUint16(Register.ADC_CONFIG, true) !== ADC_CONFIG_VALUE
      ) {
        this.#problem = "configuration read back differs";
        this.#onError?.(`INA228: ${this.#problem}`);
        return;
      }
      this.#ready = true;
    } catch (error) {
      this.#problem = `I2C: ${errorText(error)}`;
      this.#onError?.(`INA228: ${this.#problem}`);
    }
  }
}

/** A 24-bit register holding a 20-bit two's-complement value in D23:D4. */
function read20(io: SMBusIO, register: number): number {
  const bytes = new Uint8Array(io.readBuffer(register, 3));
  const raw = (((bytes[0] ?? 0) << 16) | ((bytes[1] ?? 0) << 8) | (bytes[2] ?? 0)) >> 4;
  return raw & 0x80000 ? raw - 0x100000 : raw;
}

function signed16(value: number): number {
  return value & 0x8000 ? value - 0x10000 : value;
}

function failed(reason: FaultReason, detail: string): Ina228Sample {
  return {
    voltage: faulted(reason, detail),
    current: faulted(reason, detail),
    shuntVoltage: null,
    dieTemperature: null,
  };
}
