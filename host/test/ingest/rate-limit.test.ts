import { describe, expect, it } from "vitest";
import { DeviceRateLimiter } from "../../src/ingest/rate-limit";

/** Sends `perSecond` messages a second for each device over `seconds`, returns how many were refused. */
function run(
  limiter: DeviceRateLimiter,
  clock: { t: number },
  perSecond: Record<string, number>,
  seconds: number,
): Record<string, number> {
  const refused: Record<string, number> = Object.fromEntries(Object.keys(perSecond).map((id) => [id, 0]));
  for (let ms = 0; ms < seconds * 1000; ms++) {
    clock.t++;
    for (const [id, rate] of Object.entries(perSecond)) {
      // Spread evenly: the messages due by this millisecond.
      const due = Math.floor(((ms + 1) * rate) / 1000) - Math.floor((ms * rate) / 1000);
      for (let k = 0; k < due; k++) if (!limiter.take(id)) refused[id]!++;
    }
  }
  return refused;
}

describe("DeviceRateLimiter", () => {
  const make = (clock: { t: number }) =>
    new DeviceRateLimiter({ rateOf: () => 1, allowance: 4, burst: 100, now: () => clock.t });

  it("refuses a flooding board's excess and none of the others' readings", () => {
    const clock = { t: 0 };
    const limiter = make(clock);
    const ok = Object.fromEntries(Array.from({ length: 9 }, (_, i) => [`b${i}`, 1]));
    const refused = run(limiter, clock, { flood: 100, ...ok }, 60);
    for (let i = 0; i < 9; i++) expect(refused[`b${i}`]).toBe(0);
    // 6000 sent: the burst (100) and 4/s for 60 s pass, the rest is refused.
    expect(refused.flood).toBeGreaterThan(6000 - 100 - 4 * 60 - 10);
    expect(refused.flood).toBeLessThan(6000 - 100 - 4 * 60 + 10);
  });

  it("refuses nothing while the whole fleet catches up at 50x (an ingest outage's backlog)", () => {
    const clock = { t: 0 };
    const limiter = make(clock);
    const all = Object.fromEntries(Array.from({ length: 10 }, (_, i) => [`b${i}`, 50]));
    const refused = run(limiter, clock, all, 30);
    expect(Object.values(refused).reduce((a, b) => a + b, 0)).toBe(0);
    expect(limiter.speedup).toBeGreaterThan(40);
  });

  it("a flooder cannot raise the fleet's speed-up, in seconds the others send nothing or before they are seen", () => {
    const clock = { t: 0 };
    const limiter = make(clock);
    // The others send one reading every 5 s: most one-second windows hold only the flooder.
    const refused = run(limiter, clock, { flood: 200, a: 0.2, b: 0.2 }, 30);
    expect(limiter.speedup).toBeLessThan(2);
    expect(refused.flood).toBeGreaterThan(200 * 30 - 100 - 4 * 30 * 2);
    expect(refused.a).toBe(0);
  });

  it("a reconnecting board's backlog within the burst is not refused", () => {
    const clock = { t: 0 };
    const limiter = make(clock);
    run(limiter, clock, { a: 1, b: 1, c: 1 }, 10);
    clock.t += 1000;
    let refused = 0;
    for (let i = 0; i < 100; i++) if (!limiter.take("a")) refused++;
    expect(refused).toBe(0);
  });
});

describe("the classifier's rate check", () => {
  it("refuses a device past its allowance as rate_exceeded before decoding, others unaffected", async () => {
    const { MessageClassifier } = await import("../../src/ingest/classify");
    const limiter = new DeviceRateLimiter({ rateOf: () => 1, allowance: 1, burst: 2, now: () => 0 });
    const c = new MessageClassifier({ mode: { kind: "plain" }, rateLimit: limiter });
    const junk = new TextEncoder().encode("not json");
    const reasons = [1, 2, 3].map((): string => {
      const o = c.classify("electrolyser/a/telemetry", junk);
      return o.kind === "rejected" ? o.reason : o.kind;
    });
    // The first two are decoded (and refused as bad JSON), the third is not decoded at all.
    expect(reasons).toEqual(["invalid_json", "invalid_json", "rate_exceeded"]);
    const other = c.classify("electrolyser/b/telemetry", junk);
    expect(other.kind === "rejected" && other.reason).toBe("invalid_json");
  });
});
