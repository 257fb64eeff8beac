import { describe, expect, it } from "vitest";
import { maxReadingAgeMs, parseRetention } from "../../src/store/retention";

const H = 3_600_000;

describe("the store's retention, one value for the stores and the ingest", () => {
  it("reads the units InfluxDB and VictoriaMetrics share, and nothing else", () => {
    expect(parseRetention("30d")).toBe(720 * H);
    expect(parseRetention("2w")).toBe(336 * H);
    expect(parseRetention("1h")).toBe(H);
    for (const bad of ["", "30", "1y", "0d", "1.5d", "30 days", "-1d"])
      expect(() => parseRetention(bad), bad).toThrow(/not <n>h, <n>d or <n>w/);
  });

  it("accepts readings up to the retention less a tenth, at most an hour", () => {
    expect(maxReadingAgeMs(parseRetention("30d"))).toBe(719 * H);
    expect(maxReadingAgeMs(parseRetention("2h"))).toBe(1.8 * H);
  });
});
