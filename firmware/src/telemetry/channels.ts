// The six measured channels. Physical ranges bound what an instrument can report at all:
// a value outside them is a broken sensor or a forged message and is rejected, never clamped.
// Safe ranges are operating limits for a PEM stack; crossing one is an alarm, not an error.

export type ChannelName =
  "temperature_c" | "pressure_bar" | "h2_flow_sccm" | "purity_pct" | "voltage_v" | "current_a";

export interface ChannelSpec {
  name: ChannelName;
  /** Unit as shown to operators; Grafana's unit id is in grafanaUnit. */
  unit: string;
  grafanaUnit: string;
  label: string;
  physicalMin: number;
  physicalMax: number;
  safeMin?: number;
  safeMax?: number;
  /** Digits worth keeping on the wire; finer than every converter's LSB in this stack. */
  decimals: number;
}

export const CHANNEL_NAMES: readonly ChannelName[] = Object.freeze([
  "temperature_c",
  "pressure_bar",
  "h2_flow_sccm",
  "purity_pct",
  "voltage_v",
  "current_a",
] as const);

export const CHANNELS: Readonly<Record<ChannelName, ChannelSpec>> = Object.freeze({
  // PT100 via MAX31865: the RTD's own range, far wider than any stack runs.
  temperature_c: Object.freeze({
    name: "temperature_c",
    unit: "°C",
    grafanaUnit: "celsius",
    label: "Stack temperature",
    physicalMin: -50,
    physicalMax: 250,
    safeMin: 5,
    safeMax: 85,
    decimals: 3,
  }),
  // Gauge pressure; -1 bar(g) is vacuum, 100 bar(g) covers high-pressure PEM.
  pressure_bar: Object.freeze({
    name: "pressure_bar",
    unit: "bar",
    grafanaUnit: "pressurebar",
    label: "Stack pressure",
    physicalMin: -1,
    physicalMax: 100,
    safeMax: 35,
    decimals: 4,
  }),
  h2_flow_sccm: Object.freeze({
    name: "h2_flow_sccm",
    unit: "sccm",
    grafanaUnit: "none",
    label: "H2 flow",
    physicalMin: 0,
    physicalMax: 10_000_000,
    decimals: 1,
  }),
  // A purity analyser's reading; below safeMin O2 crossover approaches the flammable range.
  purity_pct: Object.freeze({
    name: "purity_pct",
    unit: "%",
    grafanaUnit: "percent",
    label: "H2 purity",
    physicalMin: 0,
    physicalMax: 100,
    safeMin: 99.9,
    decimals: 4,
  }),
  // Whole-stack voltage; the per-cell limit is CELL_VOLTAGE_MAX.
  voltage_v: Object.freeze({
    name: "voltage_v",
    unit: "V",
    grafanaUnit: "volt",
    label: "Stack voltage",
    physicalMin: -5,
    physicalMax: 1500,
    decimals: 3,
  }),
  current_a: Object.freeze({
    name: "current_a",
    unit: "A",
    grafanaUnit: "amp",
    label: "Stack current",
    physicalMin: -50,
    physicalMax: 10_000,
    decimals: 3,
  }),
});

/** Cell voltage above which a PEM cell degrades quickly (membrane and catalyst damage). */
export const CELL_VOLTAGE_MAX = 2.4;

export function isChannelName(name: string): name is ChannelName {
  return (CHANNEL_NAMES as readonly string[]).includes(name);
}

/** Physical plausibility: the decoder rejects anything for which this is false. */
export function isPhysicallyPlausible(name: ChannelName, value: number): boolean {
  const spec = CHANNELS[name];
  return Number.isFinite(value) && value >= spec.physicalMin && value <= spec.physicalMax;
}
