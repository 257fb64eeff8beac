import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Reading } from "../../../firmware/src/telemetry/reading";
import type { Scenario } from "../../src/emulator/faults/scenario";
import { arrivals, missingOrExtra, runAndCollect } from "./fleet-helpers";

let stateDir: string;
beforeAll(async () => {
  stateDir = await mkdtemp(join(tmpdir(), "emu-workers-"));
});
afterAll(async () => {
  await rm(stateDir, { recursive: true, force: true });
});

// emu-00002 runs on worker 1 and emu-00003 on worker 0 of two (every n-th board).
const scenario: Scenario = {
  faults: [
    { type: "purity_drop", at: 1.0, devices: ["emu-00002"], factor: 80 },
    {
      type: "sensor_failure",
      at: 1.25,
      devices: ["emu-00003"],
      channel: "pressure_bar",
      mode: "loop_broken",
    },
    { type: "network_drop", at: 1.5, devices: ["emu-00004", "emu-00005"], offlineS: 0.5 },
  ],
};
const base = {
  count: 6,
  rateHz: 4,
  durationS: 3,
  seed: 21,
  connectRate: 200,
  deviceKeyType: "p256" as const,
  drainTimeoutS: 10,
  encrypt: false,
  scenario,
};

const key = (r: Reading): string => `${r.sensorId}#${r.seq}`;

describe("emulator with the boards on worker threads", () => {
  it("delivers every reading exactly once, injects faults on every worker, and gives the same readings as one thread", async () => {
    const single = await runAndCollect({ ...base, stateDir, workers: 1 });
    const sharded = await runAndCollect({ ...base, stateDir, workers: 2 });

    expect(single.summary.workers).toBe(1);
    expect(sharded.summary.workers).toBe(2);
    const s = sharded.summary;
    expect(s.ok).toBe(true);
    expect(s.verify!.lost).toBe(0);
    expect(s.verify!.duplicates).toBe(0);
    expect(missingOrExtra(s, sharded.readings)).toEqual([]);
    expect([...arrivals(sharded.readings).values()].every((n) => n === 1)).toBe(true);
    // The dropped boards came back: the workers' counters reach the summary.
    expect(s.connect.reconnects).toBeGreaterThanOrEqual(2);
    expect(s.messages.acked).toBe(s.messages.readings);
    expect(s.devices.map((d) => d.id)).toEqual([
      "emu-00001",
      "emu-00002",
      "emu-00003",
      "emu-00004",
      "emu-00005",
      "emu-00006",
    ]);
    expect(s.pubackMs.p50).toBeGreaterThan(0);

    const starts = s.faults.log
      .filter((e) => e.event === "start")
      .map((e) => `${e.type}@${e.device}`)
      .sort();
    expect(starts).toEqual([
      "network_drop@emu-00004",
      "network_drop@emu-00005",
      "purity_drop@emu-00002",
      "sensor_failure@emu-00003",
    ]);

    // Same seed, same boards, same sampling instants: a reading taken by both runs is identical but for ts.
    const byKey = new Map(single.readings.map((r) => [key(r), r]));
    let compared = 0;
    for (const r of sharded.readings) {
      const twin = byKey.get(key(r));
      if (!twin) continue;
      compared++;
      expect({ id: key(r), values: r.values, faults: r.faults }).toEqual({
        id: key(r),
        values: twin.values,
        faults: twin.faults,
      });
    }
    expect(compared).toBeGreaterThan(6 * 10);
    // A fault run by worker 0 shows in the data: the pressure loop of emu-00003 is broken from 1.25 s on.
    const late = sharded.readings.filter((r) => r.sensorId === "emu-00003" && r.seq >= 4 * 2.5);
    expect(late.length).toBeGreaterThan(0);
    expect(late.every((r) => r.faults.includes("pressure_bar") && r.values.pressure_bar === null)).toBe(true);
  }, 60_000);
});
