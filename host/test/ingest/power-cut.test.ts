/**
 * Power cuts of emulated boards, end to end: Debian's Mosquitto and VictoriaMetrics, the real ingest CLI with
 * confirmations, and 100 emulated boards running the firmware's session over the flash ring
 * (firmware/src/outbox/outbox-journal.ts). Two groups of boards are cut:
 *
 *   unsent: first cut off the network (their readings pile up in RAM, unsent), then power-cut while still
 *     offline; they boot again (next boot number) still offline, then come back.
 *   unconfirmed: power-cut while online, with readings PUBACKed but not yet confirmed (the ingest's durable
 *     horizon holds confirmations back for seconds).
 *
 * A third run has no power cut but an outage longer than the RAM outbox (16 s at 2 Hz into 20 places): the
 * readings the full outbox dropped are still in the ring and are read back and sent while the board runs.
 *
 * With the ring every (device, boot, seq) taken is in the store, each at one device timestamp (the replayed
 * readings are the sealed bytes of the first send, so the store's dedup keeps one). Without it (flash off),
 * the unsent readings die with the board's RAM: the test can fail.
 */
import { afterEach, describe, expect, it } from "vitest";
import { deviceIds, runEmulator } from "../../src/emulator/run";
import type { EmulatorSummary } from "../../src/emulator/run";
import type { Scenario } from "../../src/emulator/faults/scenario";
import type { FlashSettings } from "../../src/emulator/fleet";
import {
  spawnIngest,
  startTestStack,
  storedReadings,
  type SpawnedIngest,
  type TestStack,
} from "./helpers/stack";

const BOARDS = 100;
const RATE_HZ = 2;
const HORIZON_S = 4;
const CONFIRM_TIMEOUT_S = 6;
const ids = deviceIds(BOARDS);
const UNSENT = ids.slice(0, 15);
const UNCONFIRMED = ids.slice(15, 30);

const scenario: Scenario = {
  faults: [
    { type: "network_drop", at: 2, devices: UNSENT, offlineS: 8 },
    { type: "power_cut", at: 5, duration: 2, devices: UNSENT },
    { type: "power_cut", at: 6, duration: 2, devices: UNCONFIRMED },
  ],
};

let stack: TestStack | undefined;
let ingest: SpawnedIngest | undefined;
afterEach(async () => {
  await ingest?.stop("SIGKILL").catch(() => undefined);
  ingest = undefined;
  await stack?.cleanup();
  stack = undefined;
});

const longOutage: Scenario = { faults: [{ type: "network_drop", at: 2, devices: UNSENT, offlineS: 16 }] };

async function run(
  flash: FlashSettings,
  variant: { scenario: Scenario; durationS: number; outboxCapacity?: number } = { scenario, durationS: 14 },
): Promise<{
  summary: EmulatorSummary;
  missing: string[];
  twice: string[];
  cutBoots: number;
}> {
  stack = await startTestStack({ devices: 0 });
  const s = stack;
  ingest = await spawnIngest(s, {
    encrypted: false,
    extraArgs: ["--confirm", "on", "--durable-horizon", String(HORIZON_S), "--confirm-interval", "1"],
  });
  const summary = await runEmulator({
    count: BOARDS,
    rateHz: RATE_HZ,
    durationS: variant.durationS,
    ...(variant.outboxCapacity ? { outboxCapacity: variant.outboxCapacity } : {}),
    brokerUrl: s.broker.url,
    encrypt: false,
    seed: 15,
    connectRate: 500,
    stateDir: s.stateDir,
    verify: false,
    deviceKeyType: "p256",
    confirmations: "on",
    confirmTimeoutS: CONFIRM_TIMEOUT_S,
    drainTimeoutS: 40,
    scenario: variant.scenario,
    flash,
  });
  // Everything was confirmed durable (or the drain timed out): the store has what it will have. A new series
  // shows in an export only after a few seconds on VictoriaMetrics 1.79.
  await new Promise((r) => setTimeout(r, 3_000));
  const stored = await storedReadings(s.vm.url);
  const missing: string[] = [];
  const twice: string[] = [];
  let cutBoots = 0;
  for (const d of summary.devices) {
    const have = stored.get(d.id) ?? new Map<string, Set<number>>();
    if (d.boots.length > 1) cutBoots++;
    for (const b of d.boots)
      for (let seq = 0; seq < b.taken; seq++) {
        const at = have.get(`${b.boot}/${seq}`);
        if (!at) missing.push(`${d.id}@${b.boot}#${seq}`);
        else if (at.size > 1) twice.push(`${d.id}@${b.boot}#${seq}`);
      }
  }
  if (process.env.EST_DEBUG_FAULTS)
    console.error(JSON.stringify(summary.messages), missing.length, missing.slice(0, 20));
  return { summary, missing, twice, cutBoots };
}

describe("power cut of boards with readings unsent and unconfirmed", () => {
  it("with the flash ring: every (device, boot, seq) taken is stored, once", async () => {
    const r = await run({ mode: "auto" });
    expect(r.cutBoots).toBe(UNSENT.length + UNCONFIRMED.length);
    expect(r.summary.messages.outboxDropped).toBe(0);
    expect(r.missing.slice(0, 10)).toEqual([]);
    expect(r.twice.slice(0, 10)).toEqual([]);
    expect(r.summary.messages.awaitingConfirmation).toBe(0);
    expect(r.summary.messages.unacked).toBe(0);
  }, 120_000);

  it("without it (flash off): the unsent readings die with the board's RAM", async () => {
    const r = await run({ mode: "off" });
    expect(r.cutBoots).toBe(UNSENT.length + UNCONFIRMED.length);
    // About 3 s × 2 Hz of readings on each of the 15 boards cut off the network before the cut.
    expect(r.missing.length).toBeGreaterThan(50);
    expect(r.missing.every((m) => UNSENT.some((id) => m.startsWith(`${id}@`)))).toBe(true);
  }, 120_000);

  it("an outage longer than the RAM outbox: what it dropped is read back from the ring and stored", async () => {
    const r = await run({ mode: "memory" }, { scenario: longOutage, durationS: 24, outboxCapacity: 20 });
    // The outage did overflow RAM (the case under test), and every reading still arrived, without a reboot.
    expect(r.summary.messages.outboxDropped).toBeGreaterThan(UNSENT.length * 5);
    expect(r.cutBoots).toBe(0);
    expect(r.missing.slice(0, 10)).toEqual([]);
    expect(r.twice.slice(0, 10)).toEqual([]);
    expect(r.summary.messages.awaitingConfirmation).toBe(0);
  }, 120_000);
});
