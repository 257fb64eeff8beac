import { describe, expect, it } from "vitest";
import { CHANNEL_NAMES, CHANNELS, isPhysicallyPlausible } from "../../../firmware/src/telemetry/channels";
import { PlantInstruments } from "../../../firmware/src/plant/plant-instruments";
import { loop4to20mA, max31865Pt100 } from "../../../firmware/src/plant/instrument-signals";
import {
  DEFAULT_STACK,
  FARADAY,
  SCCM_PER_MOL_PER_S,
  cellVoltage,
  hydrogenMolPerSecond,
  molPerSecondToSccm,
  reversibleVoltage,
} from "../../../firmware/src/plant/electrochemistry";
import { rtdResistance } from "../../../firmware/src/drivers/callendar-van-dusen";
import { Prng } from "../../../firmware/src/plant/prng";
import { physicsEffectsAt } from "../../src/emulator/faults/effects";
import { resolveScenario } from "../../src/emulator/faults/scenario";

describe("electrochemistry", () => {
  it("converts mol/s to sccm at 0 °C and 1 atm (22.414 L/mol)", () => {
    expect(SCCM_PER_MOL_PER_S).toBeCloseTo(1_344_840, 6);
    // 1 mol/s of H2 is 22.414 standard litres per second = 1344.84 slm.
    expect(molPerSecondToSccm(1) / 1000).toBeCloseTo(1344.84, 6);
  });

  it("follows Faraday's law: n = cells × I / 2F", () => {
    expect(hydrogenMolPerSecond(40, 150)).toBeCloseTo((40 * 150) / (2 * 96485.33212), 12);
    expect(hydrogenMolPerSecond(1, FARADAY * 2)).toBeCloseTo(1, 12);
    expect(hydrogenMolPerSecond(40, -5)).toBe(0);
  });

  it("has the reversible voltage 1.229 V at 25 °C falling with temperature", () => {
    expect(reversibleVoltage(25)).toBeCloseTo(1.229, 6);
    expect(reversibleVoltage(80)).toBeLessThan(reversibleVoltage(25));
  });

  it("gives PEM cell voltages in the published range at rated load and a rising polarization curve", () => {
    const rated = cellVoltage(DEFAULT_STACK, {
      currentA: DEFAULT_STACK.ratedCurrentA,
      temperatureC: 65,
      pressureBar: 31,
    });
    expect(rated.total).toBeGreaterThan(1.75);
    expect(rated.total).toBeLessThan(2.2);
    let prev = 0;
    for (let i = 0.05; i <= 2.0; i += 0.05) {
      const v = cellVoltage(DEFAULT_STACK, {
        currentA: i * DEFAULT_STACK.areaCm2,
        temperatureC: 65,
        pressureBar: 31,
      }).total;
      expect(v).toBeGreaterThan(prev);
      prev = v;
    }
    // A hotter stack needs less voltage for the same current (faster kinetics, better membrane conductivity).
    const cool = cellVoltage(DEFAULT_STACK, { currentA: 150, temperatureC: 40, pressureBar: 31 }).total;
    expect(cool).toBeGreaterThan(rated.total);
  });
});

describe("converters", () => {
  it("quantises the PT100 resistance as the MAX31865 does, decodes it with the driver, and flags an open RTD", () => {
    const c = max31865Pt100();
    const v = c.convert(61.2345, 0.3, undefined, undefined)!;
    // The MAX31865 quantises the RTD's resistance (15 bits of 430 Ω); the driver's Callendar–Van Dusen gives °C.
    const code = rtdResistance(v, 100) / (430 / 32768);
    expect(code).toBeCloseTo(Math.round(code), 6);
    expect(Math.abs(v - 61.2345)).toBeLessThan(0.035 + 0.02 * 0.3);
    expect(c.convert(61, 0, "open_circuit", undefined)).toBeNull();
    expect(c.convert(61, 0, "stuck", 42.5)).toBe(42.5);
  });

  it("reads 4–20 mA transmitters through a 16-bit ADC and turns a broken loop into a fault", () => {
    const c = loop4to20mA(0, 40);
    // 125 µV per code over 150 Ω is 0.8333 µA: 40 bar / 16 mA × 0.8333 µA ≈ 2.08 mbar per step.
    expect(c.lsb).toBeCloseTo(0.0020833, 6);
    const v = c.convert(30, 0, undefined, undefined)!;
    expect(Math.abs(v - 30)).toBeLessThanOrEqual(c.lsb);
    expect(c.convert(30, 0, "loop_broken", undefined)).toBeNull();
    // Beyond the NE 43 range the transmitter saturates (20.5 mA = span + 3.1 %).
    expect(c.convert(100, 0, undefined, undefined)!).toBeLessThan(41.3);
  });
});

describe("board physics", () => {
  const boards = Array.from({ length: 30 }, (_, i) => new PlantInstruments({ seed: 7, deviceId: `b${i}` }));

  it("stays within the channels' physical ranges and a PEM stack's operating envelope over two simulated hours", () => {
    // Collect violations rather than calling expect() per value: 40,000 samples stay fast.
    const problems: string[] = [];
    const check = (ok: boolean, what: string): void => {
      if (!ok && problems.length < 20) problems.push(what);
    };
    let samples = 0;
    for (const b of boards) {
      for (let t = 0; t < 7200; t += 5) {
        const s = b.sample(t);
        const v = s.values;
        samples++;
        check(s.faults.length === 0, `faults ${s.faults.join()}`);
        for (const ch of CHANNEL_NAMES) check(isPhysicallyPlausible(ch, v[ch]!), `${ch}=${v[ch]} at t=${t}`);
        check(v.temperature_c! > 20 && v.temperature_c! <= 76, `temperature ${v.temperature_c}`);
        check(v.pressure_bar! < CHANNELS.pressure_bar.safeMax!, `pressure ${v.pressure_bar}`);
        check(v.voltage_v! < 85, `voltage ${v.voltage_v}`);
        if (v.current_a! > 20) {
          check(v.purity_pct! > 99.9, `purity ${v.purity_pct} at ${v.current_a} A`);
          const cellV = v.voltage_v! / 40;
          check(cellV > 1.45 && cellV < 2.2, `cell voltage ${cellV}`);
        }
      }
    }
    expect(problems).toEqual([]);
    expect(samples).toBe(30 * 1440);
  });

  it("reports H2 flow that obeys Faraday's law within the sensors' noise and quantisation", () => {
    let checked = 0;
    let worst = 0;
    // Flow meter: 0.02 % of its 60 slm span noise (σ = 12 sccm) plus one 3.1 sccm step; current: 20 mA noise.
    const tolerance = 5 * 12 + 3.2 + molPerSecondToSccm(hydrogenMolPerSecond(40, 5 * 0.02));
    for (const b of boards) {
      for (let t = 7200; t < 9000; t += 7) {
        const s = b.sample(t);
        const expected = molPerSecondToSccm(hydrogenMolPerSecond(40, s.values.current_a!));
        worst = Math.max(worst, Math.abs(s.values.h2_flow_sccm! - expected));
        checked++;
      }
    }
    expect(checked).toBeGreaterThan(1000);
    expect(worst).toBeLessThan(tolerance);
    expect(worst).toBeGreaterThan(0); // noise is really there
  });

  it("lets purity fall at part load and with a purity-drop fault", () => {
    const full = new PlantInstruments({ seed: 1, deviceId: "x", profile: "steady" });
    const part = new PlantInstruments({ seed: 1, deviceId: "x", profile: "part_load" });
    let pFull = 0;
    let pPart = 0;
    for (let t = 0; t < 600; t += 10) {
      pFull += full.sample(t).values.purity_pct!;
      pPart += part.sample(t).values.purity_pct!;
    }
    expect(pPart).toBeLessThan(pFull);
    const faults = resolveScenario(
      { faults: [{ type: "purity_drop", at: 600, factor: 60, devices: ["x"] }] },
      ["x"],
      1,
    );
    let last = 100;
    for (let t = 600; t <= 800; t += 10)
      last = full.sample(t, physicsEffectsAt(faults, t)).values.purity_pct!;
    expect(last).toBeLessThan(99.9); // crosses the alarm threshold
  });

  it("gives the same readings for the same seed and different ones for another seed", () => {
    const run = (seed: number): unknown[] => {
      const b = new PlantInstruments({ seed, deviceId: "emu-00001" });
      return Array.from({ length: 200 }, (_, k) => b.sample(k * 0.5));
    };
    expect(run(3)).toEqual(run(3));
    expect(run(3)).not.toEqual(run(4));
  });

  it("makes a trip drop current to zero at once and depressurise afterwards", () => {
    const b = new PlantInstruments({ seed: 2, deviceId: "t", profile: "steady" });
    const before = b.sample(100);
    expect(before.values.current_a!).toBeGreaterThan(100);
    const fx = { crossoverFactor: 1, voltageFlicker: 0, failures: {}, trip: true };
    expect(Math.abs(b.sample(101, fx).values.current_a!)).toBeLessThan(0.2);
    expect(b.sample(400, fx).values.pressure_bar!).toBeLessThan(before.values.pressure_bar! / 2);
  });
});

describe("prng", () => {
  it("is uniform enough and reproducible", () => {
    const a = new Prng(5);
    const b = new Prng(5);
    let sum = 0;
    let same = true;
    let inRange = true;
    for (let i = 0; i < 10000; i++) {
      const x = a.next();
      same &&= x === b.next();
      inRange &&= x >= 0 && x < 1;
      sum += x;
    }
    expect(same).toBe(true);
    expect(inRange).toBe(true);
    expect(sum / 10000).toBeCloseTo(0.5, 1);
  });
});
