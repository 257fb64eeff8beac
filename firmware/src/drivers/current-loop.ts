/*
	4–20 mA transmitter signal → engineering value, with NAMUR NE 43 signal levels:
	3.8–20.5 mA is a measurement (slightly under/over the 4–20 mA span is extrapolated),
	below 3.8 mA or above 20.5 mA the transmitter is signalling a failure (or the loop is broken).
*/

import { faulted, measured } from "./measurement";
import type { Measured } from "./measurement";

export const NE43 = Object.freeze({
  FAULT_BELOW_MA: 3.8,
  FAULT_ABOVE_MA: 20.5,
  /** Below this nothing flows at all: a broken wire or unpowered transmitter rather than a failure signal. */
  OPEN_LOOP_BELOW_MA: 0.5,
  SPAN_LOW_MA: 4,
  SPAN_HIGH_MA: 20,
});

export interface LoopCalibration {
  /** Engineering value at 4 mA. */
  rangeLow: number;
  /** Engineering value at 20 mA. */
  rangeHigh: number;
}

export function loopCurrentToValue(milliamps: number, calibration: LoopCalibration): Measured {
  if (!Number.isFinite(milliamps)) return faulted("invalid_value", `loop current ${milliamps}`);
  // The message text only on a fault: this runs for every sample of every loop.
  if (milliamps < NE43.OPEN_LOOP_BELOW_MA) return faulted("open_circuit", `loop open (${shown(milliamps)})`);
  if (milliamps < NE43.FAULT_BELOW_MA)
    return faulted("under_range", `${shown(milliamps)} < ${NE43.FAULT_BELOW_MA} mA (NAMUR NE 43 failure)`);
  if (milliamps > NE43.FAULT_ABOVE_MA)
    return faulted("over_range", `${shown(milliamps)} > ${NE43.FAULT_ABOVE_MA} mA (NAMUR NE 43 failure)`);
  const fraction = (milliamps - NE43.SPAN_LOW_MA) / (NE43.SPAN_HIGH_MA - NE43.SPAN_LOW_MA);
  return measured(calibration.rangeLow + fraction * (calibration.rangeHigh - calibration.rangeLow));
}

function shown(milliamps: number): string {
  return `${milliamps.toFixed(3)} mA`;
}
