import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensureDevPki } from "../../../pki/src/index";
import { startMosquitto } from "../../src/broker/mosquitto";
import type { MosquittoHandle } from "../../src/broker/mosquitto";
import { deviceIds } from "../../src/emulator/run";
import { arrivals, missingOrExtra, runAndCollect } from "./fleet-helpers";

// Debian's mosquitto with the project's configuration and ACL (infra/mosquitto), started by the test.
let stateDir: string;
let broker: MosquittoHandle;
const COUNT = 12;

beforeAll(async () => {
  stateDir = await mkdtemp(join(tmpdir(), "emu-mosquitto-"));
  const pki = await ensureDevPki({
    stateDir,
    devices: deviceIds(COUNT),
    services: ["monitor"],
    deviceKeyType: "p256",
  });
  broker = await startMosquitto({ pki, dataDir: join(stateDir, "mosquitto") });
});
afterAll(async () => {
  await broker?.stop();
  await rm(stateDir, { recursive: true, force: true });
});

describe("emulator against Mosquitto", () => {
  it.each([1, 2])(
    "connects N boards and delivers every reading exactly once, encrypted (%i thread(s) of boards)",
    async (workers) => {
      const { summary, readings } = await runAndCollect({
        workers,
        count: COUNT,
        rateHz: 4,
        durationS: 2.5,
        seed: 5,
        connectRate: 200,
        brokerUrl: broker.url,
        stateDir,
        encrypt: true,
        deviceKeyType: "p256",
      });
      expect(summary.embeddedBroker).toBe(false);
      expect(summary.workers).toBe(workers);
      expect(summary.connect.connected).toBe(COUNT);
      expect(summary.connect.handshakeFailures + summary.connect.connectFailures).toBe(0);
      expect(summary.ok).toBe(true);
      expect(summary.verify!.lost).toBe(0);
      expect(summary.verify!.duplicates).toBe(0);
      expect(summary.verify!.rejected).toBe(0);
      expect(missingOrExtra(summary, readings)).toEqual([]);
      expect([...arrivals(readings).values()].every((n) => n === 1)).toBe(true);
      expect(readings.length).toBeGreaterThanOrEqual(COUNT * 9);
    },
  );

  it("loses nothing when K boards drop off the network and when a reconnect storm hits", async () => {
    const { summary, readings, phases } = await runAndCollect({
      count: COUNT,
      rateHz: 5,
      durationS: 4,
      seed: 6,
      connectRate: 200,
      brokerUrl: broker.url,
      stateDir,
      encrypt: false,
      deviceKeyType: "p256",
      scenario: {
        faults: [
          { type: "network_drop", at: 0.8, count: 5, offlineS: 1 },
          { type: "reconnect_storm", at: 2.5, all: true },
          {
            type: "sensor_failure",
            at: 1.0,
            devices: ["emu-00001"],
            channel: "h2_flow_sccm",
            mode: "loop_broken",
            duration: 1,
          },
        ],
      },
    });
    expect(summary.faults.log.filter((e) => e.type === "network_drop")).toHaveLength(5);
    expect(summary.faults.log.filter((e) => e.type === "reconnect_storm")).toHaveLength(COUNT);
    expect(summary.connect.reconnects).toBeGreaterThanOrEqual(5 + COUNT);
    expect(summary.verify!.lost).toBe(0);
    expect(summary.ok).toBe(true);
    expect(missingOrExtra(summary, readings)).toEqual([]);
    for (const r of readings.filter((x) => x.sensorId === "emu-00001")) {
      const t = phases.get(r.sensorId)! + r.seq / 5;
      expect({ t, faulted: r.values.h2_flow_sccm === null }).toEqual({ t, faulted: t >= 1.0 && t < 2.0 });
    }
  });
});
