/**
 * The dynamic plant: one PEM stack with its thermal mass, its hydrogen buffer and back-pressure regulator,
 * and the gas crossover that spoils purity at part load. State advances in small explicit steps.
 */
import {
  DEFAULT_STACK,
  GAS_CONSTANT,
  cellVoltage,
  heatWatts,
  hydrogenMolPerSecond,
  molPerSecondToSccm,
} from "./electrochemistry";
import type { StackDesign } from "./electrochemistry";
import type { LoadCommand } from "./load-profile";

const ATMOSPHERE_BAR = 1.01325;
/** Above this O2-in-H2 fraction the analyser is pinned; 4 % is hydrogen's lower flammability limit in O2. */
const MAX_O2_FRACTION = 0.04;
/** Explicit integration step: the fastest loop (the pressure regulator) has a time constant near 8 s, so 1 s is stable and accurate. */
const MAX_STEP_S = 1;

export interface PlantDesign {
  stack: StackDesign;
  /** Coolant supply temperature: what an idle stack cools towards, °C. */
  coolantC: number;
  /** The cooling loop's limit: the stack never runs hotter, °C. */
  maxTemperatureC: number;
  thermalTimeConstantS: number;
  /** Stack temperature above coolant at rated load without the cooler limit, K (sets the heat-transfer UA). */
  ratedHeatRiseK: number;
  /** Hydrogen side gas volume (separator and piping) between stack and regulator, litres. */
  gasVolumeL: number;
  pressureSetpointBarG: number;
  /** How fast the power supply may move the current, fraction of rated per second. */
  rampPerSecond: number;
  /** O2 in H2 (mol fraction) at rated current and setpoint pressure; crossover ∝ pressure / current. */
  o2FractionAtRated: number;
  /** The purity analyser's sample line delay. */
  purityTimeConstantS: number;
  /** After a trip the hydrogen side is vented through a restriction. */
  ventTimeConstantS: number;
}

export const DEFAULT_PLANT: Readonly<PlantDesign> = Object.freeze({
  stack: DEFAULT_STACK,
  coolantC: 35,
  maxTemperatureC: 75,
  thermalTimeConstantS: 300,
  ratedHeatRiseK: 35,
  gasVolumeL: 10,
  pressureSetpointBarG: 30,
  rampPerSecond: 0.05,
  o2FractionAtRated: 5e-5,
  purityTimeConstantS: 20,
  ventTimeConstantS: 60,
});

export interface PlantState {
  /** Seconds since the board started. */
  t: number;
  load: number;
  currentA: number;
  temperatureC: number;
  pressureBarG: number;
  /** O2 fraction the analyser currently sees. */
  o2Fraction: number;
  /** Cell voltage over the last step (the polarization curve is the costliest part of a step: computed once). */
  cellV: number;
}

export interface PlantEffects {
  /** Multiplies membrane crossover (1 = healthy); a thinning or pinholed membrane raises it. */
  crossoverFactor: number;
}

/** The true (unmeasured) channel values. */
export interface PlantOutputs {
  temperature_c: number;
  pressure_bar: number;
  h2_flow_sccm: number;
  purity_pct: number;
  voltage_v: number;
  current_a: number;
}

export class Electrolyser {
  readonly design: PlantDesign;
  readonly #ua: number;
  readonly #heatCapacity: number;
  readonly #regulatorCapacityMolS: number;
  #s: PlantState;

  constructor(design: PlantDesign, initialLoad: number) {
    this.design = design;
    const ratedV = cellVoltage(design.stack, {
      currentA: design.stack.ratedCurrentA,
      temperatureC: design.coolantC + design.ratedHeatRiseK,
      pressureBar: design.pressureSetpointBarG + ATMOSPHERE_BAR,
    }).total;
    this.#ua = heatWatts(design.stack.cells, design.stack.ratedCurrentA, ratedV) / design.ratedHeatRiseK;
    this.#heatCapacity = this.#ua * design.thermalTimeConstantS;
    this.#regulatorCapacityMolS = 1.5 * hydrogenMolPerSecond(design.stack.cells, design.stack.ratedCurrentA);
    this.#s = this.#steadyState(Math.min(1, Math.max(0, initialLoad)));
  }

  get state(): Readonly<PlantState> {
    return this.#s;
  }

  /** Advances the plant to time `t` under a constant command. */
  advanceTo(t: number, cmd: LoadCommand, fx: PlantEffects): void {
    while (this.#s.t < t) {
      const dt = Math.min(MAX_STEP_S, t - this.#s.t);
      this.#step(dt, cmd, fx);
    }
  }

  outputs(): PlantOutputs {
    const s = this.#s;
    const d = this.design;
    const v = s.cellV;
    return {
      temperature_c: s.temperatureC,
      pressure_bar: s.pressureBarG,
      h2_flow_sccm: molPerSecondToSccm(hydrogenMolPerSecond(d.stack.cells, s.currentA)),
      purity_pct: 100 * (1 - s.o2Fraction),
      voltage_v: s.currentA > 0 ? v * d.stack.cells : this.#openCircuitVoltage(),
      current_a: s.currentA,
    };
  }

  /** With no current the cells hold roughly their reversible voltage, decaying; modelled as the reversible value. */
  #openCircuitVoltage(): number {
    return (
      this.design.stack.cells *
      cellVoltage(this.design.stack, {
        currentA: 0,
        temperatureC: this.#s.temperatureC,
        pressureBar: this.#s.pressureBarG + ATMOSPHERE_BAR,
      }).total
    );
  }

  #targetO2Fraction(currentA: number, pressureBarG: number, fx: PlantEffects): number {
    const d = this.design;
    const pressureRatio = (pressureBarG + ATMOSPHERE_BAR) / (d.pressureSetpointBarG + ATMOSPHERE_BAR);
    const loadRatio = d.stack.ratedCurrentA / Math.max(currentA, 1e-3);
    return Math.min(MAX_O2_FRACTION, d.o2FractionAtRated * fx.crossoverFactor * pressureRatio * loadRatio);
  }

  #step(dt: number, cmd: LoadCommand, fx: PlantEffects): void {
    const d = this.design;
    const s = this.#s;
    const rated = d.stack.ratedCurrentA;

    let load: number;
    if (cmd.tripped) load = 0;
    else {
      const target = Math.min(1, Math.max(0, cmd.setpoint));
      const maxMove = d.rampPerSecond * dt;
      load = s.load + Math.min(maxMove, Math.max(-maxMove, target - s.load));
    }
    const currentA = load * rated;
    const producing = currentA > 0.005 * rated;

    // Thermal: heat above thermoneutral warms the stack, the coolant loop removes UA·(T − coolant).
    const cellV = cellVoltage(d.stack, {
      currentA,
      temperatureC: s.temperatureC,
      pressureBar: s.pressureBarG + ATMOSPHERE_BAR,
    }).total;
    const heat = heatWatts(d.stack.cells, currentA, cellV);
    let temperatureC =
      s.temperatureC + ((heat - this.#ua * (s.temperatureC - d.coolantC)) / this.#heatCapacity) * dt;
    temperatureC = Math.min(d.maxTemperatureC, temperatureC);

    // Pressure: production fills the gas volume, the back-pressure regulator opens proportionally near setpoint.
    const production = hydrogenMolPerSecond(d.stack.cells, currentA);
    const openFraction = Math.min(1, Math.max(0, s.pressureBarG - (d.pressureSetpointBarG - 1)));
    const outflow = producing ? this.#regulatorCapacityMolS * openFraction : 0;
    const barPerMol = (GAS_CONSTANT * (s.temperatureC + 273.15)) / (d.gasVolumeL / 1000) / 1e5;
    let pressureBarG = s.pressureBarG + (production - outflow) * barPerMol * dt;
    if (!producing) pressureBarG -= (s.pressureBarG / d.ventTimeConstantS) * dt;
    pressureBarG = Math.max(0, pressureBarG);

    // Purity: the analyser follows the gas it samples, which only moves while hydrogen flows.
    let o2Fraction = s.o2Fraction;
    if (producing) {
      const target = this.#targetO2Fraction(currentA, pressureBarG, fx);
      o2Fraction += (target - o2Fraction) * Math.min(1, dt / d.purityTimeConstantS);
    }

    this.#s = { t: s.t + dt, load, currentA, temperatureC, pressureBarG, o2Fraction, cellV };
  }

  /** The state the stack settles to after running long at `load`: runs start warm, pressurised and clean. */
  #steadyState(load: number): PlantState {
    const d = this.design;
    const currentA = load * d.stack.ratedCurrentA;
    const production = hydrogenMolPerSecond(d.stack.cells, currentA);
    const producing = load > 0.005;
    const pressureBarG = producing
      ? d.pressureSetpointBarG - 1 + Math.min(1, production / this.#regulatorCapacityMolS)
      : 0;
    let temperatureC = d.coolantC;
    let cellV = 0;
    for (let i = 0; i < 20; i++) {
      cellV = cellVoltage(d.stack, {
        currentA,
        temperatureC,
        pressureBar: pressureBarG + ATMOSPHERE_BAR,
      }).total;
      temperatureC = Math.min(
        d.maxTemperatureC,
        d.coolantC + heatWatts(d.stack.cells, currentA, cellV) / this.#ua,
      );
    }
    const o2Fraction = producing
      ? this.#targetO2Fraction(currentA, pressureBarG, { crossoverFactor: 1 })
      : d.o2FractionAtRated;
    return { t: 0, load, currentA, temperatureC, pressureBarG, o2Fraction, cellV };
  }
}
