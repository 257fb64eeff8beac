// The simulator build's instruments: the same sample() shapes as the real drivers (MAX31865, ADS1115
// loops, INA228, Modbus flow meter), fed by PemStackModel through each converter's resolution, so the
// rest of the firmware cannot tell it is not on a board.
import { loopCurrentToValue } from "../drivers/current-loop";
import type { LoopCalibration } from "../drivers/current-loop";
import { measured } from "../drivers/measurement";
import type { Measured } from "../drivers/measurement";
import type { FlowInstrument, LoopInstrument, PowerInstrument, RtdInstrument } from "../app/instrument-panel";
import type { Clock } from "../app/services";
import PemStackModel from "./pem-stack-model";
import type { StackState } from "./pem-stack-model";

/** Transmitter spans, as an ADS1115 channel's calibration would say. */
export const SIM_LOOPS: Readonly<Record<"pressure_bar" | "purity_pct", LoopCalibration>> = Object.freeze({
  pressure_bar: Object.freeze({ rangeLow: 0, rangeHigh: 40 }),
  purity_pct: Object.freeze({ rangeLow: 99, rangeHigh: 100 }),
});

const RTD_LSB_C = 0.03125;
/** ADS1115 at ±2.048 V across a 100 Ω shunt: 62.5 µV → 0.625 µA per step. */
const LOOP_LSB_MA = 0.000625;
const INA228_VBUS_LSB_V = 195.3125e-6;

const quantise = (x: number, lsb: number): number => Math.round(x / lsb) * lsb;

export default class SimulatedInstruments {
  readonly #model: PemStackModel;
  readonly #clock: Clock;
  #state: StackState | undefined;
  #stateAt: number | undefined;

  readonly rtd: RtdInstrument;
  readonly loops: LoopInstrument;
  readonly power: PowerInstrument;
  readonly flow: FlowInstrument;

  constructor(options: { clock: Clock; model?: PemStackModel }) {
    this.#clock = options.clock;
    this.#model = options.model ?? new PemStackModel();
    this.rtd = {
      sample: () => ({ temperature: measured(quantise(this.#now().temperatureC + 0.02 * this.#model.noise(), RTD_LSB_C)) }),
    };
    this.loops = {
      sample: () => {
        const s = this.#now();
        return {
          pressure_bar: this.#loop(s.pressureBar, SIM_LOOPS.pressure_bar),
          purity_pct: this.#loop(s.purityPct, SIM_LOOPS.purity_pct),
        };
      },
    };
    this.power = {
      sample: () => {
        const s = this.#now();
        return {
          voltage: measured(quantise(s.voltageV + 0.01 * this.#model.noise(), INA228_VBUS_LSB_V)),
          current: measured(s.currentA + 0.05 * this.#model.noise()),
        };
      },
    };
    // Asynchronous like the Modbus driver, whose answer comes back over the UART.
    this.flow = {
      sample: () => Promise.resolve({ h2_flow_sccm: measured(Math.max(0, this.#now().h2FlowSccm * (1 + 0.002 * this.#model.noise()))) }),
    };
  }

  /** One plant state per clock value, shared by all instruments sampled at that moment. */
  #now(): StackState {
    const t = this.#clock.now();
    if (this.#state === undefined || this.#stateAt !== t) {
      this.#state = this.#model.at(t);
      this.#stateAt = t;
    }
    return this.#state;
  }

  #loop(value: number, cal: LoopCalibration): Measured {
    const mA = 4 + (16 * (value - cal.rangeLow)) / (cal.rangeHigh - cal.rangeLow);
    return loopCurrentToValue(quantise(mA + 0.002 * this.#model.noise(), LOOP_LSB_MA), cal);
  }
}
