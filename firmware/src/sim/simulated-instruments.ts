// The simulator build's instruments: the same sample() shapes as the real drivers (MAX31865, ADS1115
// loops, INA228, Modbus flow meter), fed by the project's one plant model (firmware/src/plant, the model
// every emulated board runs) through the instruments' signals and the drivers' maths, so the rest of the
// firmware cannot tell it is not on a board.
import { faulted, measured } from "../drivers/measurement";
import type { Measured } from "../drivers/measurement";
import type { FlowInstrument, LoopInstrument, PowerInstrument, RtdInstrument } from "../app/instrument-panel";
import type { Clock } from "../app/services";
import { PlantInstruments } from "../plant/plant-instruments";
import type { Sample } from "../plant/plant-instruments";
import type { ChannelName } from "../telemetry/channels";

export default class SimulatedInstruments {
  readonly #plant: PlantInstruments;
  readonly #clock: Clock;
  #startMs: number | undefined;
  #sample: Sample | undefined;
  #sampleAt: number | undefined;
  #plantTimeS = 0;

  readonly rtd: RtdInstrument;
  readonly loops: LoopInstrument;
  readonly power: PowerInstrument;
  readonly flow: FlowInstrument;

  constructor(options: { clock: Clock; seed?: number | string; deviceId?: string }) {
    this.#clock = options.clock;
    this.#plant = new PlantInstruments({
      seed: options.seed ?? 1,
      deviceId: options.deviceId ?? "simulator",
    });
    this.rtd = { sample: () => ({ temperature: this.#value("temperature_c") }) };
    this.loops = {
      sample: () => ({ pressure_bar: this.#value("pressure_bar"), purity_pct: this.#value("purity_pct") }),
    };
    this.power = { sample: () => ({ voltage: this.#value("voltage_v"), current: this.#value("current_a") }) };
    // Asynchronous like the Modbus driver, whose answer comes back over the UART.
    this.flow = { sample: () => Promise.resolve({ h2_flow_sccm: this.#value("h2_flow_sccm") }) };
  }

  /** One plant sample per clock value, shared by all instruments sampled at that moment. */
  #value(channel: ChannelName): Measured {
    const now = this.#clock.now();
    this.#startMs ??= now;
    if (this.#sample === undefined || this.#sampleAt !== now) {
      // The plant's time never runs backwards, even if the wall clock is stepped (SNTP).
      this.#plantTimeS = Math.max(this.#plantTimeS, (now - this.#startMs) / 1000);
      this.#sample = this.#plant.sample(this.#plantTimeS);
      this.#sampleAt = now;
    }
    const v = this.#sample.values[channel];
    return v === null ? faulted("sensor_fault", `${channel}: the driver reported a fault`) : measured(v);
  }
}
