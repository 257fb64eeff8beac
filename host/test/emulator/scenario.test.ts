import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import {
  FAULT_TYPES,
  loadScenario,
  parseScenario,
  randomScenario,
  resolveScenario,
} from "../../src/emulator/faults/scenario";
import { deviceIds } from "../../src/emulator/run";

const here = dirname(fileURLToPath(import.meta.url));

describe("fault scenarios", () => {
  it("loads and validates the YAML example", async () => {
    const s = await loadScenario(join(here, "fixtures/scenario.yaml"));
    expect(s.faults.map((f) => f.type)).toEqual([
      "purity_drop",
      "sensor_failure",
      "voltage_flicker",
      "network_drop",
      "reconnect_storm",
      "clock_skew",
    ]);
    const resolved = resolveScenario(s, deviceIds(20), 1);
    expect(resolved[0]!.targets).toHaveLength(3);
    expect(resolved[0]!.end).toBe(360);
    expect(resolved[4]!.targets).toHaveLength(20);
    expect(resolved[3]!.end).toBe(Number.POSITIVE_INFINITY);
    // Targets drawn with the seed are reproducible.
    expect(resolveScenario(s, deviceIds(20), 1)[0]!.targets).toEqual(resolved[0]!.targets);
  });

  it("accepts the shipped demo scenario", async () => {
    const s = await loadScenario(join(here, "../../src/emulator/scenarios/demo.yaml"));
    expect(new Set(s.faults.map((f) => f.type)).size).toBe(FAULT_TYPES.length); // every fault type, power_cut too
    expect(resolveScenario(s, deviceIds(300), 1)).toHaveLength(s.faults.length);
  });

  it.each([
    [{ faults: [{ type: "meteor", at: 1 }] }, "/faults/0/type"],
    [{ faults: [{ type: "trip" }] }, "must have required property 'at'"],
    [{ faults: [{ type: "trip", at: -1 }] }, "must be >= 0"],
    [{ faults: [{ type: "sensor_failure", at: 1, channel: "voltage_v" }] }, "needs channel and mode"],
    [
      { faults: [{ type: "sensor_failure", at: 1, channel: "voltage_v", mode: "loop_broken" }] },
      "cannot fail as loop_broken",
    ],
    [{ faults: [{ type: "trip", at: 1, all: true, count: 2 }] }, "only one of devices, count, all"],
    [{ faults: [{ type: "clock_skew", at: 1 }] }, "needs offsetS"],
    [{ faults: [{ type: "trip", at: 1, colour: "red" }] }, "must NOT have additional properties"],
  ])("rejects %j", (doc, message) => {
    expect(() => parseScenario(doc)).toThrow(message);
  });

  it("rejects unknown devices and malformed files with the file name", async () => {
    expect(() =>
      resolveScenario({ faults: [{ type: "trip", at: 1, devices: ["nope"] }] }, deviceIds(2), 1),
    ).toThrow('no board "nope"');
    const dir = await mkdtemp(join(tmpdir(), "emu-scenario-"));
    try {
      await writeFile(join(dir, "bad.json"), "{ not json");
      await expect(loadScenario(join(dir, "bad.json"))).rejects.toThrow(/bad\.json: not valid JSON/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("draws random faults reproducibly from the seed, all valid", () => {
    const a = randomScenario(9, 6, 600);
    expect(a.faults.length).toBeGreaterThan(20);
    expect(a.faults.length).toBeLessThan(120);
    expect(randomScenario(9, 6, 600)).toEqual(a);
    expect(randomScenario(10, 6, 600)).not.toEqual(a);
    expect(() => parseScenario(JSON.parse(JSON.stringify(a)))).not.toThrow();
  });
});
