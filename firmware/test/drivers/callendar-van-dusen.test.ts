import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { rtdResistance, rtdTemperature } from "../../src/drivers/callendar-van-dusen";
import { TABLE_9 } from "./datasheet-tables";

describe("Callendar–Van Dusen (IEC 60751)", () => {
  it.each(TABLE_9)("R(%d °C) matches the datasheet's %f Ω", (temperature, ohms) => {
    expect(rtdResistance(temperature, 100)).toBeCloseTo(ohms, 2);
  });

  it.each(TABLE_9)("T(R) inverts %d °C exactly, including the sub-zero quartic", (temperature, ohms) => {
    expect(rtdTemperature(rtdResistance(temperature, 100), 100)).toBeCloseTo(temperature, 6);
    // The datasheet's resistance is rounded to 0.01 Ω: within 0.03 °C of the row.
    expect(Math.abs(rtdTemperature(ohms, 100) - temperature)).toBeLessThan(0.03);
  });

  it("round-trips across the whole IEC 60751 span for PT100 and PT1000", () => {
    fc.assert(
      fc.property(fc.double({ min: -200, max: 850, noNaN: true }), fc.constantFrom(100, 1000), (t, r0) => {
        expect(Math.abs(rtdTemperature(rtdResistance(t, r0), r0) - t)).toBeLessThan(1e-6);
      }),
    );
  });

  it("gives NaN for resistances that are not on the curve", () => {
    expect(rtdTemperature(0, 100)).toBeNaN();
    expect(rtdTemperature(-5, 100)).toBeNaN();
    expect(rtdTemperature(10_000, 100)).toBeNaN();
  });
});
