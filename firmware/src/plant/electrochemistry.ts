/**
 * Steady-state electrochemistry of a PEM water-electrolysis stack: the polarization curve and Faraday's law.
 * Pure functions of the operating point, so tests can check them against hand calculations.
 */

export const FARADAY = 96485.33212; // C/mol
export const GAS_CONSTANT = 8.314462618; // J/(mol·K)
/** Molar volume of an ideal gas at 0 °C and 1 atm, the "standard" of sccm in most mass-flow meters. */
export const MOLAR_VOLUME_STP_L = 22.414;
/** 1 mol/s = 22.414 L/s = 22,414 mL/s = 1,344,840 standard cm³ per minute. */
export const SCCM_PER_MOL_PER_S = MOLAR_VOLUME_STP_L * 1000 * 60;
/** Thermoneutral voltage: below it a cell absorbs heat, above it the surplus becomes heat. */
export const THERMONEUTRAL_V = 1.481;

export interface StackDesign {
  cells: number;
  /** Active area per cell, cm². */
  areaCm2: number;
  /** Current at 100 % load, A. */
  ratedCurrentA: number;
  /** Exchange current density of the (dominant) anode at 25 °C, A/cm². */
  exchangeCurrentDensity25: number;
  /** Activation energy of the anode reaction, J/mol (makes i0 grow with temperature). */
  activationEnergyJ: number;
  chargeTransferCoefficient: number;
  /** Area-specific resistance (membrane + contacts) at 30 °C, Ω·cm². */
  areaResistance30: number;
  /** Current density at which mass transport chokes, A/cm². */
  limitingCurrentDensity: number;
}

/**
 * Default: a 40-cell PEM stack of 100 cm² cells, 150 A rated (1.5 A/cm²), about 73 V and 11 kW at rated load,
 * 2.5 Nm³/h of hydrogen. 40 cells keep the stack voltage under the INA228's 85 V bus limit.
 */
export const DEFAULT_STACK: Readonly<StackDesign> = Object.freeze({
  cells: 40,
  areaCm2: 100,
  ratedCurrentA: 150,
  exchangeCurrentDensity25: 1e-4,
  activationEnergyJ: 30_000,
  chargeTransferCoefficient: 0.55,
  areaResistance30: 0.2,
  limitingCurrentDensity: 4,
});

export interface OperatingPoint {
  currentA: number;
  temperatureC: number;
  /** Cathode (hydrogen) pressure, bar absolute. */
  pressureBar: number;
}

export interface CellVoltageParts {
  reversible: number;
  nernst: number;
  activation: number;
  ohmic: number;
  concentration: number;
  total: number;
}

const kelvin = (c: number): number => c + 273.15;

/** Reversible cell voltage at 1 bar: 1.229 V at 25 °C, falling 0.9 mV/K (ΔS of water splitting). */
export function reversibleVoltage(temperatureC: number): number {
  return 1.229 - 0.0009 * (temperatureC - 25);
}

export function cellVoltage(d: StackDesign, op: OperatingPoint): CellVoltageParts {
  const t = kelvin(op.temperatureC);
  const i = Math.max(0, op.currentA) / d.areaCm2;
  const reversible = reversibleVoltage(op.temperatureC);
  // Hydrogen at the cathode pressure, oxygen at 1 bar (typical differential-pressure PEM).
  const nernst = ((GAS_CONSTANT * t) / (2 * FARADAY)) * Math.log(Math.max(op.pressureBar, 1e-3));
  const i0 =
    d.exchangeCurrentDensity25 * Math.exp((-d.activationEnergyJ / GAS_CONSTANT) * (1 / t - 1 / kelvin(25)));
  const activation =
    ((GAS_CONSTANT * t) / (d.chargeTransferCoefficient * FARADAY)) * Math.asinh(i / (2 * i0));
  // Membrane conductivity rises with temperature (Springer et al.: exp(1268 (1/303 − 1/T))).
  const asr = d.areaResistance30 * Math.exp(-1268 * (1 / 303.15 - 1 / t));
  const ohmic = i * asr;
  const ratio = Math.min(i / d.limitingCurrentDensity, 0.999);
  const concentration = -((GAS_CONSTANT * t) / (2 * FARADAY)) * Math.log(1 - ratio);
  return {
    reversible,
    nernst,
    activation,
    ohmic,
    concentration,
    total: reversible + nernst + activation + ohmic + concentration,
  };
}

/** Faraday's law: two electrons per H2 molecule, every cell in series carries the same current. */
export function hydrogenMolPerSecond(cells: number, currentA: number): number {
  return (cells * Math.max(0, currentA)) / (2 * FARADAY);
}

export function molPerSecondToSccm(molPerSecond: number): number {
  return molPerSecond * SCCM_PER_MOL_PER_S;
}

/** Heat the stack makes: everything above the thermoneutral voltage, W. */
export function heatWatts(cells: number, currentA: number, cellV: number): number {
  return cells * Math.max(0, currentA) * (cellV - THERMONEUTRAL_V);
}
