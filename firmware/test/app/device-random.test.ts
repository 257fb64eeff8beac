import { describe, expect, it } from "vitest";
import { deviceRandom } from "../../src/app/device-random";

describe("deviceRandom", () => {
  it("keeps boards apart even when the platform generator repeats the same sequence everywhere", () => {
    const same = (): (() => number) => {
      let i = 0;
      return () => [0.1, 0.7, 0.3, 0.9][i++ % 4]!;
    };
    const a = deviceRandom(same(), "elx-0001", 1);
    const b = deviceRandom(same(), "elx-0002", 1);
    const c = deviceRandom(same(), "elx-0001", 2);
    const da = Array.from({ length: 20 }, a);
    const db = Array.from({ length: 20 }, b);
    const dc = Array.from({ length: 20 }, c);
    expect(da).not.toEqual(db);
    expect(da).not.toEqual(dc);
    for (const v of [...da, ...db, ...dc]) {
      expect(v).toBeGreaterThanOrEqual(0);
      expect(v).toBeLessThan(1);
    }
  });

  it("spreads a constant platform draw over the interval", () => {
    const r = deviceRandom(() => 0, "elx-0001", 1);
    const draws = Array.from({ length: 2000 }, r);
    const buckets = [0, 0, 0, 0];
    for (const d of draws) buckets[Math.floor(d * 4)]!++;
    for (const n of buckets) expect(n).toBeGreaterThan(400);
  });
});
