import { describe, expect, it } from "vitest";
import { isPhysicallyPlausible } from "../../src/telemetry/channels";
import type { ChannelName } from "../../src/telemetry/channels";
import PemStackModel, { DEFAULT_STACK } from "../../src/sim/pem-stack-model";
import SimulatedInstruments from "../../src/sim/simulated-instruments";
import InstrumentPanel from "../../src/app/instrument-panel";
import { CapturingLog } from "./harness";

describe("PemStackModel", () => {
  it("follows Faraday's law and a PEM polarisation curve over a load cycle", () => {
    const m = new PemStackModel();
    for (let t = 0; t < DEFAULT_STACK.periodMs; t += 10_000) {
      const s = m.at(t);
      const sccm = ((DEFAULT_STACK.cells * s.currentA) / (2 * 96485)) * 22414 * 60;
      expect(s.h2FlowSccm).toBeCloseTo(sccm, 6);
      const cell = s.voltageV / DEFAULT_STACK.cells;
      expect(cell).toBeGreaterThan(1.6);
      expect(cell).toBeLessThan(2.2);
      expect(s.temperatureC).toBeGreaterThan(45);
      expect(s.temperatureC).toBeLessThan(80);
      expect(s.purityPct).toBeGreaterThan(99.9);
    }
  });

  it("feeds simulated instruments whose readings the decoder accepts", async () => {
    let now = 1_767_225_600_000;
    const sim = new SimulatedInstruments({ clock: { now: () => now } });
    const panel = new InstrumentPanel({ rtd: sim.rtd, loops: sim.loops, power: sim.power, flow: sim.flow, log: new CapturingLog() });
    for (let i = 0; i < 50; i++, now += 2_000) {
      const s = await panel.sample();
      expect(s.faults).toEqual([]);
      for (const [name, v] of Object.entries(s.values)) expect(isPhysicallyPlausible(name as ChannelName, v!)).toBe(true);
    }
  });
});
