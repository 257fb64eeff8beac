import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { Histogram } from "../../src/emulator/histogram";
import { FleetStats } from "../../src/emulator/stats";

describe("figures gathered from worker threads", () => {
  it("a histogram merged from parts has the percentiles of one that saw every sample", () => {
    fc.assert(
      fc.property(
        fc.array(fc.array(fc.double({ min: 0, max: 5e6, noNaN: true }), { maxLength: 50 }), {
          minLength: 1,
          maxLength: 5,
        }),
        (parts) => {
          const whole = new Histogram();
          const merged = new Histogram();
          for (const part of parts) {
            const h = new Histogram();
            for (const us of part) {
              h.recordUs(us);
              whole.recordUs(us);
            }
            merged.merge(h.take());
            expect(h.count).toBe(0); // take() empties it
          }
          expect(merged.count).toBe(whole.count);
          expect(merged.maxUs).toBe(whole.maxUs);
          for (const q of [0.01, 0.5, 0.9, 0.99, 1])
            expect(merged.percentileUs(q)).toEqual(whole.percentileUs(q));
        },
      ),
    );
  });

  it("fleet counters are the shards' latest sums and latency samples are never counted twice", () => {
    const a = new FleetStats();
    const b = new FleetStats();
    const fleet = new FleetStats();
    a.acked = 10;
    a.pubackLatency.recordMs(1);
    b.acked = 5;
    b.pubackLatency.recordMs(3);
    const sa = a.takeSnapshot();
    const sb = b.takeSnapshot();
    fleet.absorb([sa], sa);
    fleet.absorb([sa, sb], sb);
    expect(fleet.acked).toBe(15);
    expect(fleet.pubackLatency.count).toBe(2);
    // A later report from shard a: counters replace, new samples add.
    a.acked = 12;
    a.pubackLatency.recordMs(2);
    const sa2 = a.takeSnapshot();
    fleet.absorb([sa2, sb], sa2);
    expect(fleet.acked).toBe(17);
    expect(fleet.pubackLatency.count).toBe(3);
  });
});
