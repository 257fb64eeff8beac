/**
 * What the board's instruments make of a true physical value, as far as the wire: the signal the sensor
 * produces (RTD resistance, loop current, shunt and bus voltage, a Modbus float), the converter's code for it,
 * and then the firmware's own driver maths back to a reading — Callendar–Van Dusen for the PT100, NAMUR NE 43
 * for the loops, the INA228's LSBs and calibration, the Modbus float32 decoder. A broken sensor shows as what
 * the driver sees (an open RTD, 0 mA on a broken loop) or as a value that stops moving.
 */
import { ads1115LsbVolts } from "../drivers/ads1115";
import { rtdResistance, rtdTemperature } from "../drivers/callendar-van-dusen";
import { loopCurrentToValue } from "../drivers/current-loop";
import { Ina228Lsb, ina228Calibration } from "../drivers/ina228";
import { decodeFloat32 } from "../drivers/modbus/rtu";

export type SensorFailure = "stuck" | "open_circuit" | "loop_broken";

/** A reading as the firmware's driver returns it: null means the driver flagged a fault. */
export type ConvertedValue = number | null;

export interface Converter {
  /** Step of the converted value in the channel's unit (near the operating point). */
  readonly lsb: number;
  /** Failure modes this kind of sensor can show. */
  readonly failures: readonly SensorFailure[];
  /** `noise` is one standard-normal draw, made by the caller on every sample so failures never shift the random stream. */
  convert(
    trueValue: number,
    noise: number,
    failure: SensorFailure | undefined,
    stuckAt: number | undefined,
  ): ConvertedValue;
}

const clamp = (x: number, lo: number, hi: number): number => Math.min(hi, Math.max(lo, x));

/**
 * MAX31865 with a PT100 against a reference resistor: the RTD's resistance (Callendar–Van Dusen) as a 15-bit
 * ratio to the reference, decoded by the driver's inverse. An open RTD drives the ratio to full scale and the
 * driver reports the fault.
 */
export function max31865Pt100(noiseC = 0.02, r0 = 100, referenceOhms = 430): Converter {
  const ohmsPerCode = referenceOhms / 32768;
  return {
    lsb: ohmsPerCode / (r0 * 3.9083e-3),
    failures: ["stuck", "open_circuit"],
    convert(t, noise, failure, stuckAt) {
      if (failure === "open_circuit") return null;
      if (failure === "stuck" && stuckAt !== undefined) return stuckAt;
      const code = clamp(Math.round(rtdResistance(t + noiseC * noise, r0) / ohmsPerCode), 0, 32767);
      const temperature = rtdTemperature(code * ohmsPerCode, r0);
      return Number.isFinite(temperature) ? temperature : null;
    },
  };
}

/**
 * A 4–20 mA transmitter read through a 150 Ω shunt by an ADS1115 at ±4.096 V; the driver's NAMUR NE 43 rule
 * turns the current into a value or a fault (under 3.8 mA, over 20.5 mA, or an open loop at 0 mA).
 */
export function loop4to20mA(
  spanMin: number,
  spanMax: number,
  noiseFractionOfSpan = 2e-4,
  /** Values the quantity cannot take (negative flow, purity over 100 %): firmware clips them, as a meter's zero cutoff does. */
  limits: { min?: number; max?: number } = {},
): Converter {
  const shuntOhm = 150;
  const mAPerCode = (ads1115LsbVolts(4.096) / shuntOhm) * 1000;
  const unitsPerMA = (spanMax - spanMin) / 16;
  const calibration = { rangeLow: spanMin, rangeHigh: spanMax };
  return {
    lsb: mAPerCode * unitsPerMA,
    failures: ["stuck", "loop_broken"],
    convert(value, noise, failure, stuckAt) {
      if (failure === "stuck" && stuckAt !== undefined) return stuckAt;
      // Transmitters saturate at 3.8/20.5 mA (NE 43 measuring range); a broken loop carries no current.
      const mA =
        failure === "loop_broken"
          ? 0
          : clamp(4 + (value - spanMin) / unitsPerMA + noiseFractionOfSpan * 16 * noise, 3.8, 20.5);
      const reading = loopCurrentToValue(Math.round(mA / mAPerCode) * mAPerCode, calibration);
      if (reading.value === null) return null;
      return clamp(
        reading.value,
        limits.min ?? Number.NEGATIVE_INFINITY,
        limits.max ?? Number.POSITIVE_INFINITY,
      );
    },
  };
}

/** INA228 bus voltage: the VBUS register's 20-bit code at 195.3125 µV, 0–85 V. */
export function ina228BusVoltage(noiseV = 0.002): Converter {
  const lsb = Ina228Lsb.VBUS_V;
  return {
    lsb,
    failures: ["stuck"],
    convert(v, noise, failure, stuckAt) {
      if (failure === "stuck" && stuckAt !== undefined) return stuckAt;
      const code = clamp(Math.round((v + noiseV * noise) / lsb), 0, Math.floor(Ina228Lsb.BUS_MAX_V / lsb));
      return code * lsb;
    },
  };
}

/** INA228 current through an external shunt: the CURRENT register's signed 20-bit code at the driver's CURRENT_LSB. */
export function ina228Current(maxCurrentA: number, noiseA = 0.02, shuntOhms = 0.1 / maxCurrentA): Converter {
  const { currentLsb } = ina228Calibration(shuntOhms, maxCurrentA);
  return {
    lsb: currentLsb,
    failures: ["stuck"],
    convert(i, noise, failure, stuckAt) {
      if (failure === "stuck" && stuckAt !== undefined) return stuckAt;
      return clamp(Math.round((i + noiseA * noise) / currentLsb), -0x80000, 0x7ffff) * currentLsb;
    },
  };
}

/**
 * A Modbus RTU mass-flow meter: the measured flow as an IEEE 754 float32 in two registers (ABCD), decoded
 * by the driver's float decoder. A meter has a zero cutoff: it never reports negative flow.
 * Scenario files keep their channel failure names: "loop_broken" on this channel is a dead bus.
 */
export function modbusFlowMeter(noiseSccm = 12): Converter {
  const registers = new Uint16Array(2);
  const bytes = new DataView(new ArrayBuffer(4));
  return {
    lsb: 0,
    failures: ["stuck", "loop_broken"],
    convert(flow, noise, failure, stuckAt) {
      if (failure === "stuck" && stuckAt !== undefined) return stuckAt;
      // A broken RS-485 line: the meter never answers and the driver reports a timeout.
      if (failure === "loop_broken" || failure === "open_circuit") return null;
      bytes.setFloat32(0, Math.max(0, flow + noiseSccm * noise));
      registers[0] = bytes.getUint16(0);
      registers[1] = bytes.getUint16(2);
      return decodeFloat32(registers, 0, "ABCD");
    },
  };
}
