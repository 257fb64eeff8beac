import fc from "fast-check";
import { describe, expect, it } from "vitest";
import Backoff from "../../src/app/backoff";

describe("Backoff", () => {
  it("doubles its ceiling per failure up to the maximum and draws from the upper half", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 10_000 }),
        fc.integer({ min: 1, max: 64 }),
        fc.array(fc.double({ min: 0, max: 0.999999, noNaN: true }), { minLength: 1, maxLength: 40 }),
        (minMs, factor, draws) => {
          const maxMs = minMs * factor;
          let i = 0;
          const b = new Backoff({ minMs, maxMs, random: () => draws[i]! });
          for (i = 0; i < draws.length; i++) {
            const ceiling = Math.min(maxMs, minMs * 2 ** i);
            const d = b.next();
            expect(d).toBeGreaterThanOrEqual(Math.max(minMs, Math.floor(ceiling / 2)));
            expect(d).toBeLessThanOrEqual(ceiling);
          }
        },
      ),
    );
  });

  it("starts over after reset", () => {
    const b = new Backoff({ minMs: 100, maxMs: 10_000, random: () => 0.999 });
    for (let i = 0; i < 8; i++) b.next();
    expect(b.failures).toBe(8);
    b.reset();
    expect(b.next()).toBeLessThanOrEqual(100);
  });

  it("rejects a nonsensical range", () => {
    expect(() => new Backoff({ minMs: 0, maxMs: 10, random: Math.random })).toThrow(RangeError);
    expect(() => new Backoff({ minMs: 10, maxMs: 5, random: Math.random })).toThrow(RangeError);
  });
});
