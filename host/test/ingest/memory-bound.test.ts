/**
 * The ingest's memory is bounded in total, not per connection (issue 15). With the store down the ingest holds
 * its window of unacknowledged messages; each broker restart re-delivers that window on a new connection. The old
 * copies can no longer be acknowledged, and keeping them added a window at every reconnect. Real Mosquitto and
 * VictoriaMetrics: the broker is restarted four times while the store is down, the ingest's holdings are sampled
 * throughout, then the store comes back and every reading must be stored (dropping the old copies loses nothing:
 * the broker delivers them again). And the readings the store accepted that wait for their durability rule are
 * bounded too: past --max-confirm-pending the ingest stops writing, so the backlog waits with the broker.
 */
import { afterEach, describe, expect, it } from "vitest";
import type { StoreDurability, StoredReading } from "../../src/ingest/confirmer";
import type { IngestService } from "../../src/ingest/service";
import {
  connectFleet,
  diffStored,
  startIngest,
  startTestStack,
  stopStack,
  waitForStoredCount,
  waitUntil,
  type TestStack,
} from "./helpers/stack";

const MAX_HELD = 200;
const BATCH = 100;
const RESTARTS = 4;

let stack: TestStack | undefined;
let ingest: IngestService | undefined;
afterEach(async () => {
  await stopStack({ ingest, stack });
  ingest = undefined;
  stack = undefined;
});

/** One unlabelled gauge from a Prometheus exposition. */
function gauge(text: string, name: string): number {
  const m = new RegExp(`^${name} ([0-9.eE+-]+)$`, "m").exec(text);
  if (!m) throw new Error(`${name} missing from /metrics`);
  return Number(m[1]);
}

describe("ingest memory bound", () => {
  it("broker restarts while the store is down add no window: held stays under the bound, nothing lost", async () => {
    stack = await startTestStack({ devices: 20 });
    const s = stack;
    await s.vm.stop();
    const service = await startIngest(s, {
      encrypted: false,
      // A plain subscription: it survives a restart of Mosquitto 2.0.11 (README).
      group: "",
      clientId: "ingest-bound",
      maxHeld: MAX_HELD,
      batchSize: BATCH,
      retryMinMs: 50,
      retryMaxMs: 200,
    });
    ingest = service;
    const fleet = await connectFleet(s, { encrypted: false });
    const sent = await fleet.publishEach(50);
    await fleet.end();
    const total = [...sent.values()].reduce((n, l) => n + l.length, 0);

    let maxPending = 0;
    let maxInMemory = 0;
    const sampleOnce = async () => {
      const text = await service.metricsText();
      maxPending = Math.max(maxPending, gauge(text, "ingest_pending_batch"));
      maxInMemory = Math.max(maxInMemory, gauge(text, "ingest_readings_in_memory"));
    };
    const sampler = setInterval(() => void sampleOnce(), 25);
    try {
      await waitUntil(() => service.held === MAX_HELD, 20_000, "the ingest's first window");
      for (let i = 1; i <= RESTARTS; i++) {
        await s.broker.restart();
        // The window comes again on the new connection.
        await waitUntil(
          () => service.connections === i + 1 && service.held === MAX_HELD,
          30_000,
          `the window re-delivered after restart ${i}`,
        );
        await sampleOnce();
      }
    } finally {
      clearInterval(sampler);
    }
    const limit = gauge(await service.metricsText(), "ingest_readings_in_memory_limit");
    expect(limit).toBe(MAX_HELD + 1 + BATCH);
    // Without the bound: about a window more per restart (902 pending after four, measured).
    expect(maxPending).toBeLessThanOrEqual(MAX_HELD + 1);
    expect(maxInMemory).toBeLessThanOrEqual(limit);

    await s.vm.start();
    const published = new Map([...sent].map(([id, list]) => [id, list.map((r) => r.seq)]));
    const stored = await waitForStoredCount(s.vm.url, total, 40_000);
    expect(diffStored(published, stored).missing.slice(0, 10)).toEqual([]);
  }, 120_000);

  it("readings awaiting durability are bounded: writing waits and the backlog stays with the broker", async () => {
    stack = await startTestStack({ devices: 20 });
    const s = stack;
    // A store rule the test opens: nothing is durable until then.
    const awaiting: StoredReading[] = [];
    let open = false;
    const durability: StoreDurability = {
      name: "durable when the test says so",
      get pending() {
        return awaiting.length;
      },
      written(items) {
        awaiting.push(...items);
      },
      poll() {
        return Promise.resolve({ durable: open ? awaiting.splice(0) : [], rewrite: [] });
      },
    };
    const MAX_CONFIRM = 300;
    const service = await startIngest(s, {
      encrypted: false,
      group: "",
      clientId: "ingest-bound-confirm",
      maxHeld: MAX_HELD,
      batchSize: BATCH,
      maxConfirmPending: MAX_CONFIRM,
      confirm: { durability, intervalMs: 100 },
    });
    ingest = service;
    const fleet = await connectFleet(s, { encrypted: false });
    const sent = await fleet.publishEach(50);
    await fleet.end();
    const total = [...sent.values()].reduce((n, l) => n + l.length, 0);

    await waitUntil(
      () => awaiting.length > MAX_CONFIRM - BATCH && service.held >= MAX_HELD,
      20_000,
      "the durability share full and the window held",
    );
    // It stays so: no write while the next batch would pass the limit.
    const full = awaiting.length;
    await new Promise((r) => setTimeout(r, 1000));
    expect(awaiting.length).toBe(full);
    expect(full).toBeLessThanOrEqual(MAX_CONFIRM);
    const text = await service.metricsText();
    expect(gauge(text, "ingest_confirm_backpressure")).toBe(1);
    expect(gauge(text, "ingest_readings_in_memory")).toBeLessThanOrEqual(
      gauge(text, "ingest_readings_in_memory_limit"),
    );
    expect(gauge(text, "ingest_readings_in_memory_limit")).toBe(MAX_HELD + 1 + BATCH + MAX_CONFIRM);

    open = true;
    const published = new Map([...sent].map(([id, list]) => [id, list.map((r) => r.seq)]));
    const stored = await waitForStoredCount(s.vm.url, total, 40_000);
    expect(diffStored(published, stored).missing.slice(0, 10)).toEqual([]);
    await waitUntil(() => awaiting.length === 0, 10_000, "every reading durable");
  }, 120_000);
});
