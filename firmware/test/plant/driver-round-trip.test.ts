// The one plant model drives both worlds through the instruments' own signals and the firmware's driver
// maths; what comes out must be the plant's physical value within each instrument's accuracy.
import { describe, expect, it } from "vitest";
import InstrumentPanel from "../../src/app/instrument-panel";
import { hydrogenMolPerSecond, molPerSecondToSccm } from "../../src/plant/electrochemistry";
import { loop4to20mA, max31865Pt100 } from "../../src/plant/instrument-signals";
import { PlantInstruments } from "../../src/plant/plant-instruments";
import SimulatedInstruments from "../../src/sim/simulated-instruments";
import { CHANNEL_NAMES, isPhysicallyPlausible } from "../../src/telemetry/channels";
import type { ChannelName } from "../../src/telemetry/channels";
import { CapturingLog } from "../app/harness";

/** Noise (≤ 5 σ) plus the converter's step: what a reading may differ from the plant's true value. */
const ACCURACY: Record<ChannelName, number> = {
  temperature_c: 5 * 0.02 + 0.04,
  pressure_bar: 5 * 2e-4 * 40 + 0.01,
  h2_flow_sccm: 5 * 12 + 0.01,
  purity_pct: 5 * 2e-4 + 0.001,
  voltage_v: 5 * 0.002 + 0.001,
  current_a: 5 * 0.02 + 0.001,
};

describe("plant → instrument signals → driver maths → reading", () => {
  it("agrees with the plant's physical values within sensor accuracy, over an hour of load changes", () => {
    const p = new PlantInstruments({ seed: 7, deviceId: "elx-rt-0001" });
    let worst = 0;
    for (let t = 0; t < 3600; t += 1) {
      const s = p.sample(t);
      const truth = p.plant.outputs();
      expect(s.faults).toEqual([]);
      for (const name of CHANNEL_NAMES) {
        const v = s.values[name]!;
        expect(isPhysicallyPlausible(name, v)).toBe(true);
        // A value clipped at its physical limit (purity 100 %, flow 0) may sit further from a truth beyond it.
        const limit = name === "purity_pct" ? 100 : name === "h2_flow_sccm" ? 0 : undefined;
        if (limit !== undefined && v === limit) continue;
        const off = Math.abs(v - truth[name]) / ACCURACY[name];
        worst = Math.max(worst, off);
        expect({ name, t, off: off <= 1 }).toEqual({ name, t, off: true });
      }
    }
    expect(worst).toBeGreaterThan(0);
  });

  it("makes H2 flow by Faraday's law from the stack current", () => {
    const p = new PlantInstruments({ seed: 3, deviceId: "elx-rt-0002" });
    for (let t = 0; t < 600; t += 10) p.sample(t);
    const truth = p.plant.outputs();
    const steady = molPerSecondToSccm(hydrogenMolPerSecond(p.plant.design.stack.cells, truth.current_a));
    expect(truth.h2_flow_sccm).toBeGreaterThan(0);
    // The regulator's buffer smooths the flow a little behind the current; at steady load they agree.
    expect(Math.abs(truth.h2_flow_sccm - steady) / steady).toBeLessThan(0.1);
  });

  it("goes through Callendar–Van Dusen and NAMUR NE 43: an open loop and out-of-range currents are faults", () => {
    const rtd = max31865Pt100(0);
    expect(rtd.convert(64.25, 0, undefined, undefined)).toBeCloseTo(64.25, 1);
    expect(rtd.convert(64.25, 0, "open_circuit", undefined)).toBeNull();
    const loop = loop4to20mA(0, 40, 0);
    expect(loop.convert(30, 0, undefined, undefined)).toBeCloseTo(30, 2);
    expect(loop.convert(30, 0, "loop_broken", undefined)).toBeNull();
    // A transmitter pinned at 20.5 mA is still a measurement (NE 43's limit); beyond the span it saturates there.
    expect(loop.convert(1000, 0, undefined, undefined)).toBeCloseTo(41.25, 1);
  });

  it("feeds the simulator build's instrument panel with the same plant, the same readings for the same seed", async () => {
    const read = async (seed: number): Promise<string> => {
      let now = 1_764_000_000_000;
      const sim = new SimulatedInstruments({ clock: { now: () => now }, seed });
      const panel = new InstrumentPanel({
        rtd: sim.rtd,
        loops: sim.loops,
        power: sim.power,
        flow: sim.flow,
        log: new CapturingLog(),
      });
      const out: unknown[] = [];
      for (let i = 0; i < 5; i++, now += 1000) out.push(await panel.sample());
      return JSON.stringify(out);
    };
    const a = await read(1);
    expect(a).toBe(await read(1));
    expect(a).not.toBe(await read(2));
    const first = JSON.parse(a) as { values: Record<ChannelName, number | null>; faults: string[] }[];
    for (const s of first) {
      expect(s.faults).toEqual([]);
      for (const name of CHANNEL_NAMES) expect(isPhysicallyPlausible(name, s.values[name]!)).toBe(true);
    }
  });
});
