import type { Reading } from "../../src/telemetry/reading";

export function sampleReading(overrides: Partial<Reading> = {}): Reading {
  return {
    sensorId: "elx-site1-0001",
    seq: 12,
    ts: 1_764_000_000_000,
    boot: 3,
    fw: "0.1.0",
    values: {
      temperature_c: 65.5,
      pressure_bar: 30.125,
      h2_flow_sccm: 41230.5,
      purity_pct: 99.995,
      voltage_v: 182.4,
      current_a: 512.25,
    },
    faults: [],
    ...overrides,
  };
}
