/**
 * The one plant model of the project, for the emulator's boards and the firmware's Linux simulator build:
 * one board's view of its electrolyser, load profile → plant → instrument signals → the firmware's driver
 * maths, sampled at the board's own simulated time. Everything random comes from the board's seeded streams, so the same seed and the same
 * fault script give the same readings whatever the wall clock or the network did.
 */
import type { ChannelName } from "../telemetry/channels";
import { CHANNEL_NAMES } from "../telemetry/channels";
import {
  ina228BusVoltage,
  ina228Current,
  loop4to20mA,
  max31865Pt100,
  modbusFlowMeter,
} from "./instrument-signals";
import type { Converter, SensorFailure } from "./instrument-signals";
import { DEFAULT_PLANT, Electrolyser } from "./electrolyser";
import type { PlantDesign } from "./electrolyser";
import { LoadProfile } from "./load-profile";
import type { LoadProfileKind } from "./load-profile";
import { Prng } from "./prng";

/** What active faults do to the plant and its instruments at one instant. */
export interface PhysicsEffects {
  /** Membrane crossover multiplier (purity drop); 1 = healthy. */
  crossoverFactor: number;
  /** Relative amplitude of spikes on the stack-voltage reading (a loose sense lead); 0 = none. */
  voltageFlicker: number;
  failures: Partial<Record<ChannelName, SensorFailure>>;
  /** An injected trip: the stack is cut regardless of the load profile. */
  trip: boolean;
}

export const NO_EFFECTS: Readonly<PhysicsEffects> = Object.freeze({
  crossoverFactor: 1,
  voltageFlicker: 0,
  failures: {},
  trip: false,
});

export interface Sample {
  values: Record<ChannelName, number | null>;
  faults: ChannelName[];
}

/** Instruments of the default plant: PT100, 0–40 bar(g) transmitter, Modbus mass-flow meter, 99–100 % analyser, 200 A shunt. */
export function defaultInstruments(): Record<ChannelName, Converter> {
  return {
    temperature_c: max31865Pt100(),
    pressure_bar: loop4to20mA(0, 40),
    h2_flow_sccm: modbusFlowMeter(),
    purity_pct: loop4to20mA(99, 100, 2e-4, { max: 100 }),
    voltage_v: ina228BusVoltage(),
    current_a: ina228Current(200),
  };
}

export interface PlantInstrumentsOptions {
  seed: number | string;
  deviceId: string;
  profile?: LoadProfileKind;
  plant?: PlantDesign;
}

export class PlantInstruments {
  readonly plant: Electrolyser;
  readonly profile: LoadProfile;
  readonly #noise: Prng;
  readonly #flicker: Prng;
  readonly #lastGood: Partial<Record<ChannelName, number>> = {};
  // Each board has its own converters: the Modbus meter keeps scratch buffers, and on XS a set made at
  // module load is preloaded into flash, read-only (a shared set broke every channel on the simulator:
  // "read-only buffer (in setFloat32)").
  readonly #instruments = defaultInstruments();

  constructor(o: PlantInstrumentsOptions) {
    const root = new Prng(`${o.seed}/${o.deviceId}`);
    const profileRng = root.fork("profile");
    const kind =
      o.profile ?? profileRng.pick<LoadProfileKind>(["steady", "part_load", "ramps", "mixed", "mixed"]);
    this.profile = new LoadProfile(kind, profileRng);
    const design: PlantDesign = o.plant ?? {
      ...DEFAULT_PLANT,
      // Boards differ a little, as real plants do.
      coolantC: DEFAULT_PLANT.coolantC + root.uniform(-3, 3),
      pressureSetpointBarG: DEFAULT_PLANT.pressureSetpointBarG + root.uniform(-2, 2),
    };
    this.plant = new Electrolyser(design, this.profile.at(0).setpoint);
    this.#noise = root.fork("noise");
    this.#flicker = root.fork("flicker");
  }

  /** The reading at simulated time `t` seconds (non-decreasing across calls). */
  sample(t: number, fx: PhysicsEffects = NO_EFFECTS): Sample {
    const cmd = this.profile.at(t);
    this.plant.advanceTo(t, fx.trip ? { setpoint: 0, tripped: true } : cmd, {
      crossoverFactor: fx.crossoverFactor,
    });
    const truth = this.plant.outputs();
    const flicker = this.#flicker.next();
    if (fx.voltageFlicker > 0 && flicker < 0.5) {
      truth.voltage_v *= 1 + fx.voltageFlicker * (this.#flicker.next() * 2 - 1);
    }
    const values = {} as Record<ChannelName, number | null>;
    const faults: ChannelName[] = [];
    for (const name of CHANNEL_NAMES) {
      const failure = fx.failures[name];
      // Noise is drawn for every channel on every sample, so a fault on one channel never shifts another's.
      const v = this.#instruments[name].convert(
        truth[name],
        this.#noise.normal(),
        failure,
        this.#lastGood[name],
      );
      values[name] = v;
      if (v === null) faults.push(name);
      else if (failure !== "stuck") this.#lastGood[name] = v;
    }
    return { values, faults };
  }
}
