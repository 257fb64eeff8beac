// A small PEM stack for the simulator build: a slow load cycle drives current; voltage follows a
// polarisation curve, temperature lags the heat load, H2 flow follows Faraday's law, purity dips at
// part load (gas crossover). Deterministic for a given seed and sequence of times.

export interface PemStackDesign {
  cells: number;
  areaCm2: number;
  maxCurrentA: number;
  /** Load cycle period. */
  periodMs: number;
  pressureBar: number;
}

export const DEFAULT_STACK: Readonly<PemStackDesign> = Object.freeze({
  cells: 20,
  areaCm2: 100,
  maxCurrentA: 180,
  periodMs: 600_000,
  pressureBar: 30,
});

export interface StackState {
  temperatureC: number;
  pressureBar: number;
  h2FlowSccm: number;
  purityPct: number;
  voltageV: number;
  currentA: number;
}

const FARADAY = 96485;
/** cm³ of gas per mol at 0 °C and 1 atm (standard conditions for sccm). */
const STANDARD_CC_PER_MOL = 22414;
const THERMAL_TAU_MS = 120_000;

export default class PemStackModel {
  readonly #d: PemStackDesign;
  #seed: number;
  #temperatureC = 40;
  #lastMs: number | undefined;

  constructor(options: { design?: Partial<PemStackDesign>; seed?: number } = {}) {
    this.#d = { ...DEFAULT_STACK, ...options.design };
    this.#seed = (options.seed ?? 0x2545f491) >>> 0 || 1;
  }

  /** One standard-normal draw (xorshift32 + Box–Muller). */
  noise(): number {
    const u1 = Math.max(this.#uniform(), 1e-12);
    const u2 = this.#uniform();
    return Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * u2);
  }

  /** The true plant state at `nowMs`; temperature integrates from the previous call. */
  at(nowMs: number): StackState {
    const d = this.#d;
    const phase = (2 * Math.PI * (nowMs % d.periodMs)) / d.periodMs;
    const load = 0.6 + 0.3 * Math.sin(phase);
    const currentA = d.maxCurrentA * load;
    const j = currentA / d.areaCm2;
    const cellV = 1.45 + 0.08 * Math.log10(1 + j * 100) + 0.18 * j;
    const target = 50 + 25 * load;
    if (this.#lastMs === undefined) this.#temperatureC = target;
    else {
      const dt = Math.max(0, nowMs - this.#lastMs);
      this.#temperatureC += (target - this.#temperatureC) * (1 - Math.exp(-dt / THERMAL_TAU_MS));
    }
    this.#lastMs = nowMs;
    const molPerS = (d.cells * currentA) / (2 * FARADAY);
    return {
      temperatureC: this.#temperatureC,
      pressureBar: d.pressureBar + 0.4 * Math.sin(phase * 3),
      h2FlowSccm: molPerS * STANDARD_CC_PER_MOL * 60,
      purityPct: 99.995 - 0.03 * (1 - load),
      voltageV: d.cells * cellV,
      currentA,
    };
  }

  #uniform(): number {
    let x = this.#seed;
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    this.#seed = x || 1;
    return x / 0x1_0000_0000;
  }
}
