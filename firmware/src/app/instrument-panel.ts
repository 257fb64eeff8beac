// The six channels from the four instruments: PT100 on a MAX31865 (temperature), two 4–20 mA loops on
// an ADS1115 (pressure, purity), an INA228 (stack voltage and current) and a Modbus mass-flow meter
// (H2 flow). Anything is accepted that samples in the drivers' shapes, so the simulator's instruments
// (firmware/src/sim) and the real drivers (firmware/src/drivers) plug in the same way.
import type { Measured } from "../drivers/measurement";
import { CHANNEL_NAMES } from "../telemetry/channels";
import type { ChannelName } from "../telemetry/channels";
import type { InstrumentSample, Instruments, Log } from "./services";

/** MAX31865-shaped: `temperature` in °C. */
export interface RtdInstrument {
  sample(): { temperature: Measured };
}
/** ADS1115-shaped: one entry per configured loop, keyed by the loop's name. */
export interface LoopInstrument {
  sample(): Readonly<Record<string, Measured>>;
}
/** INA228-shaped: stack `voltage` in V and `current` in A. */
export interface PowerInstrument {
  sample(): { voltage: Measured; current: Measured };
}
/** Modbus flow meter-shaped: one entry per configured point, keyed by the point's name. */
export interface FlowInstrument {
  sample(): Promise<Readonly<Record<string, Measured>>> | Readonly<Record<string, Measured>>;
}

export interface InstrumentPanelOptions {
  rtd: RtdInstrument;
  loops: LoopInstrument;
  power: PowerInstrument;
  flow: FlowInstrument;
  log: Log;
}

/** Loop and flow-meter entries are named after the channel they carry. */
export const LOOP_CHANNELS = Object.freeze(["pressure_bar", "purity_pct"] as const);
export const FLOW_CHANNEL = "h2_flow_sccm";

export default class InstrumentPanel implements Instruments {
  readonly #o: InstrumentPanelOptions;
  /** Last fault text per channel: a persistent fault is logged once, not every interval. */
  readonly #lastFault = new Map<ChannelName, string>();

  constructor(options: InstrumentPanelOptions) {
    this.#o = options;
  }

  sample(): InstrumentSample | Promise<InstrumentSample> {
    const got = new Map<ChannelName, Measured>();
    const fromDriver = (names: readonly ChannelName[], read: () => void): void => {
      try {
        read();
      } catch (e) {
        // Drivers report faults as values; a throw is a bug or a dead bus, and costs only its own channels.
        for (const n of names) got.set(n, failed(e));
      }
    };
    fromDriver(["temperature_c"], () => got.set("temperature_c", this.#o.rtd.sample().temperature));
    fromDriver(LOOP_CHANNELS, () => {
      const s = this.#o.loops.sample();
      for (const n of LOOP_CHANNELS) got.set(n, s[n] ?? missing(n));
    });
    fromDriver(["voltage_v", "current_a"], () => {
      const s = this.#o.power.sample();
      got.set("voltage_v", s.voltage);
      got.set("current_a", s.current);
    });
    let flow: ReturnType<FlowInstrument["sample"]>;
    try {
      flow = this.#o.flow.sample();
    } catch (e) {
      got.set(FLOW_CHANNEL, failed(e));
      return this.#combine(got);
    }
    if (!isPromise(flow)) {
      got.set(FLOW_CHANNEL, flow[FLOW_CHANNEL] ?? missing(FLOW_CHANNEL));
      return this.#combine(got);
    }
    return flow.then(
      (s) => {
        got.set(FLOW_CHANNEL, s[FLOW_CHANNEL] ?? missing(FLOW_CHANNEL));
        return this.#combine(got);
      },
      (e: unknown) => {
        got.set(FLOW_CHANNEL, failed(e));
        return this.#combine(got);
      },
    );
  }

  #combine(got: Map<ChannelName, Measured>): InstrumentSample {
    const values = {} as Record<ChannelName, number | null>;
    const faults: ChannelName[] = [];
    for (const name of CHANNEL_NAMES) {
      const m = got.get(name) ?? missing(name);
      if (m.fault === null && Number.isFinite(m.value)) {
        values[name] = m.value;
        this.#lastFault.delete(name);
      } else {
        values[name] = null;
        faults.push(name);
        const text = m.fault ? `${m.fault.reason}: ${m.fault.detail}` : "no value";
        if (this.#lastFault.get(name) !== text) {
          this.#o.log.warn(`sensor fault on ${name}: ${text}`);
          this.#lastFault.set(name, text);
        }
      }
    }
    return { values, faults };
  }
}

function isPromise<T>(v: T | Promise<T>): v is Promise<T> {
  return typeof (v as Promise<T>).then === "function";
}

function failed(e: unknown): Measured {
  return { value: null, fault: { reason: "bus_error", detail: e instanceof Error ? e.message : String(e) } };
}

function missing(name: string): Measured {
  return { value: null, fault: { reason: "bad_response", detail: `driver returned no ${name}` } };
}
