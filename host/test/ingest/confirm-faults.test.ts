/**
 * Nothing lost when a part crashes, end to end: Debian's Mosquitto and VictoriaMetrics, the real ingest CLI and
 * about 100 emulated boards (the firmware's MqttSession), one fault each, then every reading each board took,
 * per (device, boot, seq), is looked up in the store. Each fault also runs with confirmations off (boards forget
 * a reading on PUBACK, the ingest confirms nothing), where the same fault loses readings: the test can fail.
 *
 *   store SIGKILL during writes: VictoriaMetrics answered 204 for points still in its memory; the ingest
 *     confirmed none of them (durable horizon), writes them again to the new process, then confirms.
 *   broker SIGKILL with a backlog: the store is stopped first, so the broker queues the readings for the ingest
 *     (in RAM: it saves every 60 s); the boards still hold them (PUBACKed, unconfirmed) and send them again when
 *     they reconnect to the restarted broker.
 */
import { afterEach, describe, expect, it } from "vitest";
import { runEmulator } from "../../src/emulator/run";
import type { EmulatorSummary } from "../../src/emulator/run";
import {
  countAll,
  spawnIngest,
  startTestStack,
  storedSeqs,
  waitForStoredCount,
  type SpawnedIngest,
  type TestStack,
} from "./helpers/stack";

const BOARDS = 100;
const RATE_HZ = 2;
/** The ingest's durable horizon here: above the 10–12 s edge measured on VictoriaMetrics 1.79, and short. */
const HORIZON_S = 15;

let stack: TestStack | undefined;
let ingest: SpawnedIngest | undefined;
afterEach(async () => {
  await ingest?.stop("SIGKILL").catch(() => undefined);
  ingest = undefined;
  await stack?.cleanup();
  stack = undefined;
});

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Readings each board took and the store does not hold, as `device#seq`. */
function missingFromStore(summary: EmulatorSummary, stored: Map<string, number[]>): string[] {
  const missing: string[] = [];
  for (const d of summary.devices) {
    const have = new Set(stored.get(d.id) ?? []);
    for (let seq = 0; seq < d.published; seq++) if (!have.has(seq)) missing.push(`${d.id}#${seq}`);
  }
  return missing;
}

async function runWithFault(o: {
  confirm: boolean;
  durationS: number;
  fault: (s: TestStack) => Promise<void>;
  ingestArgs?: string[];
  /** Default HORIZON_S; shorter only where the store is never SIGKILLed. */
  horizonS?: number;
  confirmTimeoutS?: number;
}): Promise<{ summary: EmulatorSummary; missing: string[]; stored: number }> {
  stack = await startTestStack({ devices: 0 });
  const s = stack;
  ingest = await spawnIngest(s, {
    encrypted: false,
    extraArgs: [
      "--confirm",
      o.confirm ? "on" : "off",
      "--durable-horizon",
      String(o.horizonS ?? HORIZON_S),
      // Confirm every second (the default 5 s trades latency for broker CPU): keeps each test short.
      "--confirm-interval",
      "1",
      ...(o.ingestArgs ?? []),
    ],
  });
  let faultDone: Promise<void> = Promise.resolve();
  const summary = await runEmulator({
    count: BOARDS,
    rateHz: RATE_HZ,
    durationS: o.durationS,
    brokerUrl: s.broker.url,
    encrypt: false,
    seed: 15,
    connectRate: 500,
    stateDir: s.stateDir,
    verify: false,
    deviceKeyType: "p256",
    confirmations: o.confirm ? "on" : "off",
    // Above the horizon plus a round. It is what recovers readings the restarted broker PUBACKed and dropped
    // because the ingest had not subscribed again yet (its session died with the broker).
    confirmTimeoutS: o.confirmTimeoutS ?? HORIZON_S + 2,
    // With confirmations, the drain lasts until every reading is confirmed durable (horizon + a round).
    drainTimeoutS: 50,
    onStarted: () => {
      faultDone = o.fault(s);
    },
  });
  await faultDone;
  const taken = summary.devices.reduce((n, d) => n + d.published, 0);
  expect(summary.messages.outboxDropped).toBe(0);
  // Without confirmations nothing tells when the store is done: give it the time a new series needs (~10 s).
  const stored = o.confirm ? await storedSeqs(s.vm.url) : await waitForStoredCount(s.vm.url, taken, 15_000);
  const missing = missingFromStore(summary, stored);
  if (process.env.EST_DEBUG_FAULTS) {
    console.error(JSON.stringify(summary.messages), missing.slice(0, 20));
    console.error(ingest.output.slice(-40).join("\n"));
  }
  return { summary, missing, stored: countAll(stored) };
}

/** SIGKILL VictoriaMetrics while the ingest writes to it, bring it back 3 s later. */
async function killStore(s: TestStack): Promise<void> {
  await sleep(7_000);
  await s.vm.kill();
  await sleep(3_000);
  await s.vm.start();
}

/**
 * The ingest takes at most 200 unacknowledged messages (its MQTT 5 Receive Maximum), so while the store is down the
 * backlog waits in the broker's queue, not in the ingest (which would write it once the store is back): the loss
 * without confirmations is then deterministic, every reading queued at the SIGKILL.
 */
const SMALL_WINDOW = ["--max-held", "200", "--batch-size", "100"];

/** Stop the store (cleanly) so the broker queues a backlog, SIGKILL the broker, restart both. */
async function killBrokerWithBacklog(s: TestStack): Promise<void> {
  await sleep(3_000);
  await s.vm.stop();
  await sleep(10_000);
  process.kill(s.broker.pid, "SIGKILL");
  await s.broker.exited();
  await s.broker.restart();
  await s.vm.start();
}

describe("store SIGKILL during writes", () => {
  it("with confirmations: every reading taken is in the store", async () => {
    const r = await runWithFault({ confirm: true, durationS: 14, fault: killStore });
    expect(r.missing.slice(0, 10)).toEqual([]);
    expect(r.summary.messages.awaitingConfirmation).toBe(0);
    expect(r.summary.messages.confirmed).toBe(r.summary.messages.readings);
  }, 90_000);

  it("without confirmations: the store loses what it had answered 204 for", async () => {
    const r = await runWithFault({ confirm: false, durationS: 14, fault: killStore });
    expect(r.summary.messages.unacked).toBe(0); // every board was told "delivered"
    expect(r.missing.length).toBeGreaterThan(0);
  }, 90_000);
});

describe("broker SIGKILL with a backlog queued", () => {
  it("with confirmations: every reading taken is in the store", async () => {
    const r = await runWithFault({
      confirm: true,
      durationS: 17,
      fault: killBrokerWithBacklog,
      ingestArgs: SMALL_WINDOW,
      // The store is stopped cleanly here (it flushes), so a short horizon is safe and keeps the test short.
      horizonS: 5,
      confirmTimeoutS: 8,
    });
    expect(r.missing.slice(0, 10)).toEqual([]);
    expect(r.summary.messages.awaitingConfirmation).toBe(0);
  }, 90_000);

  it("without confirmations: the backlog dies with the broker", async () => {
    const r = await runWithFault({
      confirm: false,
      durationS: 17,
      fault: killBrokerWithBacklog,
      ingestArgs: SMALL_WINDOW,
    });
    expect(r.summary.messages.unacked).toBe(0);
    // About 10 s × 200 readings/s were queued; all but the ingest's window of them are gone.
    expect(r.missing.length).toBeGreaterThan(1000);
  }, 90_000);
});
