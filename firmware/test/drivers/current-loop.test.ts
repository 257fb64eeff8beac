import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { NE43, loopCurrentToValue } from "../../src/drivers/current-loop";

const PURITY = { rangeLow: 99, rangeHigh: 100 };

describe("4–20 mA scaling with NAMUR NE 43 limits", () => {
  it("maps 4 and 20 mA onto the calibrated range ends, linearly", () => {
    expect(loopCurrentToValue(4, PURITY)).toEqual({ value: 99, fault: null });
    expect(loopCurrentToValue(20, PURITY)).toEqual({ value: 100, fault: null });
    expect(loopCurrentToValue(12, { rangeLow: 40, rangeHigh: 0 }).value).toBeCloseTo(20, 12); // reversed span
  });

  it("keeps the NE 43 limits themselves as measurements", () => {
    expect(loopCurrentToValue(3.8, PURITY).fault).toBeNull();
    expect(loopCurrentToValue(20.5, PURITY).fault).toBeNull();
  });

  it("never returns a value outside 3.8…20.5 mA", () => {
    fc.assert(
      fc.property(fc.double({ min: -50, max: 100, noNaN: true }), (milliamps) => {
        const result = loopCurrentToValue(milliamps, PURITY);
        const inside = milliamps >= NE43.FAULT_BELOW_MA && milliamps <= NE43.FAULT_ABOVE_MA;
        expect(result.value === null).toBe(!inside);
        expect(result.fault === null).toBe(inside);
      }),
    );
  });

  it("reports a non-number as invalid_value", () => {
    expect(loopCurrentToValue(NaN, PURITY).fault?.reason).toBe("invalid_value");
  });
});
