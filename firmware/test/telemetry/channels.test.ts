import { describe, expect, it } from "vitest";
import { CHANNEL_NAMES, CHANNELS, isPhysicallyPlausible } from "../../src/telemetry/channels";
import { isValidDeviceId } from "../../src/telemetry/reading";
import { parseTopic, statusTopic, telemetryTopic } from "../../src/telemetry/topics";

describe("telemetry model", () => {
  it("has six channels whose safe ranges sit inside their physical ranges", () => {
    expect(CHANNEL_NAMES).toHaveLength(6);
    for (const name of CHANNEL_NAMES) {
      const c = CHANNELS[name];
      expect(c.physicalMin).toBeLessThan(c.physicalMax);
      if (c.safeMin !== undefined) expect(c.safeMin).toBeGreaterThan(c.physicalMin);
      if (c.safeMax !== undefined) expect(c.safeMax).toBeLessThan(c.physicalMax);
    }
    expect(isPhysicallyPlausible("purity_pct", 100)).toBe(true);
    expect(isPhysicallyPlausible("purity_pct", 100.01)).toBe(false);
    expect(isPhysicallyPlausible("pressure_bar", Number.NaN)).toBe(false);
  });

  it("accepts only device ids that are safe as a topic level, a CN and an NVS string", () => {
    for (const id of ["elx-site1-0001", "A", "stack_B.12", "x".repeat(32)])
      expect(isValidDeviceId(id)).toBe(true);
    for (const id of [
      "",
      "a/b",
      "a+",
      "#",
      "-rf",
      ".hidden",
      "x".repeat(33),
      "a b",
      "é",
      "a\u0000",
      "CN=x,O=y",
    ])
      expect(isValidDeviceId(id)).toBe(false);
  });

  it("builds and parses topics", () => {
    expect(telemetryTopic("d1")).toBe("electrolyser/d1/telemetry");
    expect(parseTopic(statusTopic("d1"))).toEqual({ sensorId: "d1", kind: "status" });
    expect(parseTopic("electrolyser/d1/telemetry/x")).toBeUndefined();
    expect(parseTopic("electrolyser/+/telemetry")).toBeUndefined();
  });
});
