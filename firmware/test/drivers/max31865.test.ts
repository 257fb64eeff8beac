import { describe, expect, it } from "vitest";
import MAX31865, { decodeMax31865Faults } from "../../src/drivers/max31865";
import type { Max31865Options } from "../../src/drivers/max31865";
import { rtdResistance } from "../../src/drivers/callendar-van-dusen";
import { Max31865Model } from "../models/max31865-model";
import { TABLE_9 } from "./datasheet-tables";

function setup(
  options: Partial<Omit<Max31865Options, "sensor">> = {},
  prepare?: (model: Max31865Model) => void,
) {
  const model = new Max31865Model();
  prepare?.(model);
  const errors: string[] = [];
  const waited: number[] = [];
  const sensor = new MAX31865({
    sensor: { clock: 18, in: 19, out: 23, select: 5, io: model.spi() },
    delay: (ms) => waited.push(ms),
    onError: (message) => errors.push(message),
    ...options,
  });
  return { model, sensor, errors, waited };
}

function value(m: { value: number | null }): number {
  if (m.value === null) throw new Error("expected a value");
  return m.value;
}

describe("MAX31865 conversions (datasheet Table 9, 400 Ω reference)", () => {
  it.each(TABLE_9)("%d °C (%f Ω) reads RTD register %i and converts back", (temperature, ohms, register) => {
    const { model, sensor } = setup(
      { referenceOhms: 400, faultThresholdsC: { low: -210, high: 800 } },
      (m) => {
        m.referenceOhms = 400;
        m.rtdOhms = rtdResistance(temperature, 100);
      },
    );
    const sample = sensor.sample();
    // The model turns the IEC 60751 resistance into exactly the datasheet's register value.
    expect(((model.registers[1] ?? 0) << 8) | (model.registers[2] ?? 0)).toBe(register);
    expect(sample.faults).toEqual([]);
    // Half an LSB (400/32768 Ω) plus the table's rounding to 0.01 Ω.
    expect(Math.abs(value(sample.resistance) - ohms)).toBeLessThan(0.0175);
    expect(Math.abs(value(sample.temperature) - temperature)).toBeLessThan(0.05);
  });
});

describe("MAX31865 with the 430 Ω reference of common PT100 boards", () => {
  it("configures bias, automatic conversion, 50 Hz filter and the fault thresholds", () => {
    const { model, errors } = setup();
    expect(errors).toEqual([]);
    expect(model.registers[0]).toBe(0xc1);
    const high = ((model.registers[3] ?? 0) << 8) | (model.registers[4] ?? 0);
    const low = ((model.registers[5] ?? 0) << 8) | (model.registers[6] ?? 0);
    expect(high >> 1).toBe(Math.round((rtdResistance(400, 100) / 430) * 32768));
    expect(low >> 1).toBe(Math.round((rtdResistance(-100, 100) / 430) * 32768));
  });

  it("sets the 3-wire bit and the 60 Hz filter when asked", () => {
    const { model } = setup({ wires: 3, filterHz: 60 });
    expect(model.registers[0]).toBe(0xd0);
  });

  it.each([-40, -0.5, 0, 25, 65.2, 80, 150])(
    "reads a PT100 at %d °C within one LSB (≈0.03 °C)",
    (temperature) => {
      const { sensor } = setup({}, (m) => (m.rtdOhms = rtdResistance(temperature, 100)));
      const sample = sensor.sample();
      expect(sample.temperature.fault).toBeNull();
      expect(Math.abs(value(sample.temperature) - temperature)).toBeLessThan(0.035);
      expect(sample.faultStatus).toBe(0);
    },
  );

  it("reads 0 °C as code 7620 (100 Ω × 32768 / 430)", () => {
    const { model, sensor } = setup();
    const sample = sensor.sample();
    expect((((model.registers[1] ?? 0) << 8) | (model.registers[2] ?? 0)) >> 1).toBe(7620);
    expect(value(sample.resistance)).toBeCloseTo((7620 * 430) / 32768, 9);
  });
});

describe("MAX31865 faults", () => {
  it("reports an open RTD as open_circuit with the decoded fault bits, and clears the latch", () => {
    const { model, sensor } = setup({}, (m) => (m.condition = "open"));
    const sample = sensor.sample();
    expect(sample.temperature.value).toBeNull();
    expect(sample.temperature.fault?.reason).toBe("open_circuit");
    expect(sample.resistance.value).toBeNull();
    expect(sample.faults).toEqual(["RTD_HIGH_THRESHOLD", "REFIN_HIGH"]);
    expect(model.registers[7]).toBe(0);

    model.condition = "ok";
    model.rtdOhms = rtdResistance(70, 100);
    const after = sensor.sample();
    expect(after.temperature.fault).toBeNull();
    expect(value(after.temperature)).toBeCloseTo(70, 1);
  });

  it("reports a shorted RTD as short_circuit", () => {
    const { sensor } = setup({}, (m) => (m.condition = "shorted"));
    const sample = sensor.sample();
    expect(sample.temperature.fault?.reason).toBe("short_circuit");
    expect(sample.faults).toContain("RTD_LOW_THRESHOLD");
  });

  it("reports a reading beyond the high threshold as over_range, not as a temperature", () => {
    const { sensor } = setup(
      { faultThresholdsC: { low: -50, high: 120 } },
      (m) => (m.rtdOhms = rtdResistance(130, 100)),
    );
    const sample = sensor.sample();
    expect(sample.temperature).toEqual({
      value: null,
      fault: expect.objectContaining({ reason: "over_range" }),
    });
    expect(sample.faults).toEqual(["RTD_HIGH_THRESHOLD"]);
  });

  it("finds FORCE- cable faults only through the fault detection cycle", () => {
    const cable = (m: Max31865Model) => (m.cycleFaults = 0x18);
    const withCycle = setup({}, cable).sensor.sample();
    expect(withCycle.temperature.fault?.reason).toBe("sensor_fault");
    expect(withCycle.faults).toEqual(["REFIN_LOW_FORCE_OPEN", "RTDIN_LOW_FORCE_OPEN"]);

    const withoutCycle = setup({ faultDetectionCycle: false }, cable).sensor.sample();
    expect(withoutCycle.temperature.fault).toBeNull();
  });

  it("returns to automatic conversion after the fault detection cycle", () => {
    const { model, sensor } = setup();
    sensor.sample();
    expect(model.registers[0]).toBe(0xc1);
  });

  it("reports an over/undervoltage on a protected input", () => {
    const { sensor } = setup({}, (m) => (m.overvoltage = true));
    const sample = sensor.sample();
    expect(sample.temperature.fault?.reason).toBe("sensor_fault");
    expect(sample.faults).toEqual(["OVER_UNDER_VOLTAGE"]);
    expect(sample.faultStatus).toBe(0x04);
  });

  it("waits for the fault detection cycle between polls", () => {
    const { sensor, waited } = setup({}, (m) => (m.cycleBusyReads = 3));
    expect(sensor.sample().temperature.fault).toBeNull();
    // Three reads see D3:D2 = 01, the fourth sees the cycle done; each read comes after a 1 ms wait.
    expect(waited).toEqual([1, 1, 1, 1]);
  });

  it("reports a fault detection cycle that never completes, and restores the configuration", () => {
    const { model, sensor, waited } = setup({}, (m) => (m.cycleBusyReads = Infinity));
    const sample = sensor.sample();
    expect(waited.reduce((a, b) => a + b, 0)).toBe(10);
    expect(sample.temperature.fault?.reason).toBe("sensor_fault");
    expect(sample.temperature.fault?.detail).toMatch(/did not complete/);
    expect((model.registers[0] ?? 0) & 0xc0).toBe(0xc0);
  });

  it("does not crash without a chip: onError, then no_device on every sample", () => {
    const { sensor, errors } = setup({}, (m) => (m.absent = true));
    expect(errors.join()).toMatch(/not responding/);
    for (let i = 0; i < 3; i++) {
      const sample = sensor.sample();
      expect(sample.temperature).toEqual({
        value: null,
        fault: expect.objectContaining({ reason: "no_device" }),
      });
    }
  });

  it("notices a chip reset (configuration lost), reports it, and recovers on the next sample", () => {
    const { model, sensor } = setup();
    model.registers.set([0, 0, 0, 0xff, 0xff, 0, 0, 0]); // power-on reset values
    expect(sensor.sample().temperature.fault?.reason).toBe("no_device");
    model.rtdOhms = rtdResistance(42, 100);
    expect(value(sensor.sample().temperature)).toBeCloseTo(42, 1);
  });

  it("turns an SPI exception into bus_error, and reads again once the bus works", () => {
    const { model, sensor } = setup();
    model.busError = true;
    expect(sensor.sample().temperature).toEqual({
      value: null,
      fault: expect.objectContaining({ reason: "bus_error" }),
    });
    model.busError = false;
    expect(sensor.sample().temperature.fault).toBeNull();
  });

  it("reports no_device after close instead of throwing", () => {
    const { sensor } = setup();
    sensor.close();
    expect(sensor.sample().temperature.fault?.reason).toBe("no_device");
  });

  it("turns the bias off on close", () => {
    const { model, sensor } = setup();
    sensor.close();
    expect(model.registers[0]).toBe(0);
  });

  it("names every fault status bit", () => {
    expect(decodeMax31865Faults(0xff)).toEqual([
      "RTD_HIGH_THRESHOLD",
      "RTD_LOW_THRESHOLD",
      "REFIN_HIGH",
      "REFIN_LOW_FORCE_OPEN",
      "RTDIN_LOW_FORCE_OPEN",
      "OVER_UNDER_VOLTAGE",
    ]);
    expect(decodeMax31865Faults(0x03)).toEqual([]);
  });

  it("rejects an unusable configuration", () => {
    expect(() => setup({ referenceOhms: 0 })).toThrow(RangeError);
    expect(() => setup({ faultThresholdsC: { low: 100, high: 0 } })).toThrow(RangeError);
  });
});
