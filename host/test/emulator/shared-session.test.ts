// The firmware's board logic above the socket is one implementation: the emulated boards run the very
// MqttSession the firmware runs. A fault put into that one module breaks the firmware's delivery (on its
// host shims) and the emulator's delivery (real TLS, real broker) alike.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import MqttSession from "../../../firmware/src/app/mqtt-session";
import { telemetryTopic } from "../../../firmware/src/telemetry/topics";
import { bootDevice, DEVICE_ID, provision } from "../../../firmware/test/app/harness";
import { FakeBroker } from "../../../firmware/test/app/shims/fake-broker";
import { MemoryPreference } from "../../../firmware/test/app/shims/memory-preference";
import { VirtualTimers } from "../../../firmware/test/app/shims/virtual-timers";
import { Fleet } from "../../src/emulator/fleet";
import { runAndCollect } from "./fleet-helpers";

let stateDir: string;
beforeAll(async () => {
  stateDir = await mkdtemp(join(tmpdir(), "emu-shared-session-"));
});
afterAll(async () => {
  await rm(stateDir, { recursive: true, force: true });
});
afterEach(() => {
  vi.restoreAllMocks();
});

async function firmwareDelivered(): Promise<number> {
  const timers = new VirtualTimers();
  const store = new MemoryPreference();
  const broker = new FakeBroker(timers);
  provision(store);
  const { app } = bootDevice({ store, timers, broker });
  await timers.advance(5_500);
  app.stop();
  return broker.published(telemetryTopic(DEVICE_ID)).length;
}

async function emulatorDelivered(): Promise<{ acked: number; readings: number; sessions: boolean }> {
  const { summary, fleet } = await runAndCollect({
    count: 2,
    rateHz: 4,
    durationS: 1.5,
    seed: 3,
    connectRate: 200,
    deviceKeyType: "p256",
    drainTimeoutS: 2,
    stateDir,
    encrypt: false,
  });
  const sessions = fleet instanceof Fleet && fleet.boards.every((b) => b.session instanceof MqttSession);
  return { acked: summary.messages.acked, readings: summary.messages.readings, sessions };
}

describe("one MQTT session for the firmware and the emulator", () => {
  it("delivers in both worlds with the session as it is", async () => {
    expect(await firmwareDelivered()).toBeGreaterThanOrEqual(5);
    const emu = await emulatorDelivered();
    expect(emu.sessions).toBe(true);
    expect(emu.readings).toBeGreaterThan(0);
    expect(emu.acked).toBe(emu.readings);
  });

  it("a session that never connects breaks the firmware and every emulated board alike", async () => {
    // The injected fault: MqttSession.start does nothing.
    vi.spyOn(MqttSession.prototype, "start").mockImplementation(() => undefined);
    expect(await firmwareDelivered()).toBe(0);
    const emu = await emulatorDelivered();
    expect(emu.readings).toBeGreaterThan(0);
    expect(emu.acked).toBe(0);
  });
});
