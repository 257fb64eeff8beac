/**
 * What the board's converters make of a true physical value: noise, the converter's step size, its range
 * limits, and what a broken sensor looks like to firmware (a fault flag and no value, or a value that stops moving).
 */
export type SensorFailure = "stuck" | "open_circuit" | "loop_broken";

/** A reading as the firmware's driver returns it: null means the driver flagged a fault. */
export type ConvertedValue = number | null;

export interface Converter {
  /** Step of the converted value in the channel's unit. */
  readonly lsb: number;
  /** Failure modes this kind of sensor can show. */
  readonly failures: readonly SensorFailure[];
  /** `noise` is one standard-normal draw, made by the caller on every sample so failures never shift the random stream. */
  convert(trueValue: number, noise: number, failure: SensorFailure | undefined, stuckAt: number | undefined): ConvertedValue;
}

const quantise = (x: number, lsb: number): number => Math.round(x / lsb) * lsb;

/**
 * MAX31865 with a PT100: a 15-bit ratio to the reference resistor, about 0.03125 °C per step.
 * An open RTD drives the ratio to full scale and sets the fault status (high threshold).
 */
export function max31865Pt100(noiseC = 0.02): Converter {
  const lsb = 0.03125;
  return {
    lsb,
    failures: ["stuck", "open_circuit"],
    convert(t, noise, failure, stuckAt) {
      if (failure === "open_circuit") return null;
      if (failure === "stuck" && stuckAt !== undefined) return stuckAt;
      return quantise(t + noiseC * noise, lsb);
    },
  };
}

/**
 * A 4–20 mA transmitter read through a 150 Ω shunt by a 16-bit ADC (ADS1115, ±4.096 V: 125 µV per code).
 * NAMUR NE 43: a loop current under 3.8 mA or over 20.5 mA is a fault; a broken loop reads 0 mA.
 */
export function loop4to20mA(
  spanMin: number,
  spanMax: number,
  noiseFractionOfSpan = 2e-4,
  /** Values the quantity cannot take (negative flow, purity over 100 %): firmware clips them, as a meter's zero cutoff does. */
  limits: { min?: number; max?: number } = {},
): Converter {
  const shuntOhm = 150;
  const voltsPerCode = 4.096 / 32768;
  const mAPerCode = (voltsPerCode / shuntOhm) * 1000;
  const unitsPerMA = (spanMax - spanMin) / 16;
  const lsb = mAPerCode * unitsPerMA;
  return {
    lsb,
    failures: ["stuck", "loop_broken"],
    convert(value, noise, failure, stuckAt) {
      if (failure === "loop_broken") return null;
      if (failure === "stuck" && stuckAt !== undefined) return stuckAt;
      // Transmitters saturate at 3.8/20.5 mA (NE 43 measuring range); beyond that they signal failure.
      let mA = 4 + (value - spanMin) / unitsPerMA + noiseFractionOfSpan * 16 * noise;
      mA = Math.min(20.5, Math.max(3.8, mA));
      const code = Math.round(mA / mAPerCode);
      const v = spanMin + (code * mAPerCode - 4) * unitsPerMA;
      return Math.min(limits.max ?? Number.POSITIVE_INFINITY, Math.max(limits.min ?? Number.NEGATIVE_INFINITY, v));
    },
  };
}

/**
 * INA228 bus voltage: 20-bit, 195.3125 µV per code, 0–85 V.
 */
export function ina228BusVoltage(noiseV = 0.002): Converter {
  const lsb = 195.3125e-6;
  return {
    lsb,
    failures: ["stuck"],
    convert(v, noise, failure, stuckAt) {
      if (failure === "stuck" && stuckAt !== undefined) return stuckAt;
      return Math.min(85, Math.max(0, quantise(v + noiseV * noise, lsb)));
    },
  };
}

/**
 * INA228 current through an external shunt: CURRENT_LSB = maximum expected current / 2^19.
 */
export function ina228Current(maxCurrentA: number, noiseA = 0.02): Converter {
  const lsb = maxCurrentA / 524288;
  return {
    lsb,
    failures: ["stuck"],
    convert(i, noise, failure, stuckAt) {
      if (failure === "stuck" && stuckAt !== undefined) return stuckAt;
      return Math.min(maxCurrentA, Math.max(-maxCurrentA, quantise(i + noiseA * noise, lsb)));
    },
  };
}
