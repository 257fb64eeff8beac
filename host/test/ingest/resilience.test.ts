/**
 * Nothing lost when a part fails mid-run: the ingest killed with SIGKILL, the store down for
 * 20 s, the broker restarted. Boards keep publishing throughout (each waits for its PUBACK and
 * re-sends after a reconnect, as the firmware's outbox does). The store runs with one sample
 * per series and ms, so a message written again after a crash is stored once, as in InfluxDB.
 */
import { afterEach, describe, expect, it } from "vitest";
import type { TestFleet } from "../../testkit/ingest/fleet-publisher";
import type { IngestService } from "../../src/ingest/service";
import {
  connectFleet,
  countAll,
  diffStored,
  spawnIngest,
  startIngest,
  startTestStack,
  stopSpawned,
  waitForStoredCount,
  type SpawnedIngest,
  type TestStack,
  stopStack,
} from "./helpers/stack";

const BOARDS = 100;

let stack: TestStack | undefined;
let fleet: TestFleet | undefined;
let ingest: IngestService | undefined;
const spawned: SpawnedIngest[] = [];

afterEach(async () => {
  for (const p of spawned.splice(0)) await stopSpawned(p, "SIGKILL");
  await stopStack({ ingest, fleet, stack });
  ingest = fleet = stack = undefined;
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const seqLists = (sent: Map<string, { seq: number }[]>) =>
  new Map([...sent].map(([id, rs]) => [id, rs.map((r) => r.seq)]));

async function scrape(port: number): Promise<Record<string, number>> {
  const text = await (
    await fetch(`http://127.0.0.1:${port}/metrics`, { signal: AbortSignal.timeout(5000) })
  ).text();
  const out: Record<string, number> = {};
  for (const line of text.split("\n")) {
    const m = /^([a-z_]+) ([0-9.e+-]+)$/.exec(line);
    if (m) out[m[1]!] = Number(m[2]);
  }
  return out;
}

describe("failures mid-run", () => {
  it("ingest killed with SIGKILL and restarted: nothing lost", async () => {
    stack = await startTestStack({ devices: BOARDS });
    const first = await spawnIngest(stack, { encrypted: false });
    spawned.push(first);
    fleet = await connectFleet(stack, { encrypted: false });
    const run = fleet.publishEach(60, { intervalMs: 100 });
    await sleep(2500);
    first.child.kill("SIGKILL");
    expect(await first.exited).toBeNull();
    await sleep(1500);
    const second = await spawnIngest(stack, { encrypted: false });
    spawned.push(second);
    const sent = await run;
    const stored = await waitForStoredCount(stack.vm.url, BOARDS * 60, 90_000);
    expect(diffStored(seqLists(sent), stored)).toEqual({ missing: [], extra: [] });
    expect(countAll(stored)).toBe(BOARDS * 60);
    expect(await stopSpawned(second, "SIGTERM")).toBe(0);
    expect(second.output.join("\n")).toContain("flushing and disconnecting");
  }, 240_000);

  it("store stopped for 20 s and started again: nothing lost, memory bounded by the held-message limit", async () => {
    stack = await startTestStack({ devices: BOARDS });
    const MAX_HELD = 1000;
    const p = await spawnIngest(stack, {
      encrypted: true,
      extraArgs: ["--max-held", String(MAX_HELD), "--batch-size", "500"],
    });
    spawned.push(p);
    fleet = await connectFleet(stack, { encrypted: true });
    const run = fleet.publishEach(175, { intervalMs: 200 });
    await sleep(3000);
    const before = await scrape(p.metricsPort);
    await stack.vm.stop();
    let maxHeld = 0;
    let maxRss = 0;
    let sawStoreDown = false;
    for (let i = 0; i < 20; i++) {
      await sleep(1000);
      const m = await scrape(p.metricsPort);
      maxHeld = Math.max(maxHeld, m.ingest_held_messages ?? 0);
      maxRss = Math.max(maxRss, m.ingest_process_resident_memory_bytes ?? 0);
      if (m.ingest_store_up === 0) sawStoreDown = true;
    }
    await stack.vm.start();
    const sent = await run;
    const stored = await waitForStoredCount(stack.vm.url, BOARDS * 175, 120_000);
    expect(diffStored(seqLists(sent), stored)).toEqual({ missing: [], extra: [] });

    expect(sawStoreDown).toBe(true);
    // 100 boards × 5 msg/s × 20 s = 10,000 messages arrived meanwhile; the ingest held at most
    // MAX_HELD of them (the broker's Receive Maximum flow control kept the rest queued).
    expect(maxHeld).toBeLessThanOrEqual(MAX_HELD);
    expect(maxHeld).toBeGreaterThan(MAX_HELD * 0.9);
    expect(before.ingest_process_resident_memory_bytes).toBeGreaterThan(0);
    expect(maxRss - before.ingest_process_resident_memory_bytes!).toBeLessThan(64 * 1024 * 1024);
    const after = await scrape(p.metricsPort);
    expect(after.ingest_held_messages).toBe(0);
    expect(after.ingest_store_up).toBe(1);
  }, 240_000);

  it("broker restarted mid-run: nothing lost (plain subscription, as needed on Mosquitto 2.0.11)", async () => {
    stack = await startTestStack({ devices: BOARDS });
    ingest = await startIngest(stack, { encrypted: true, group: "" });
    fleet = await connectFleet(stack, { encrypted: true });
    const run = fleet.publishEach(60, { intervalMs: 100 });
    await sleep(2500);
    await stack.broker.restart();
    const sent = await run;
    const stored = await waitForStoredCount(stack.vm.url, BOARDS * 60, 90_000);
    expect(diffStored(seqLists(sent), stored)).toEqual({ missing: [], extra: [] });
    const t = ingest.account.totals();
    expect(t.written).toBeGreaterThanOrEqual(BOARDS * 60);
    expect(t.rejected).toBe(0);
    expect(t.gaps).toBe(0);
  }, 240_000);

  it("shared subscription: after a broker restart the ingest subscribes again and keeps receiving", async () => {
    // Mosquitto 2.0.11 keeps a persistent session's shared subscription over a restart in name
    // only; without subscribing again on reconnect the ingest would receive nothing more.
    stack = await startTestStack({ devices: 10 });
    ingest = await startIngest(stack, { encrypted: false, group: "fleet" });
    fleet = await connectFleet(stack, { encrypted: false });
    await fleet.publishEach(5);
    await stack.broker.restart();
    await sleep(3000); // the ingest reconnects (1 s period) and subscribes again
    const sent = await fleet.publishEach(5);
    await waitForStoredCount(stack.vm.url, 10 * 10, 60_000);
    const stored = await waitForStoredCount(stack.vm.url, 10 * 10, 0);
    const afterRestart = new Map([...sent].map(([id, rs]) => [id, rs.map((r) => r.seq)]));
    const storedAfter = new Map([...stored].map(([id, seqs]) => [id, seqs.filter((q) => q >= 5)]));
    expect(diffStored(afterRestart, storedAfter)).toEqual({ missing: [], extra: [] });
  }, 240_000);
});
