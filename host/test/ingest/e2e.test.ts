/**
 * 300 boards, each on its own mTLS connection, publish through the real broker; the real ingest
 * writes into a real VictoriaMetrics started WITHOUT deduplication, so a message the ingest wrote
 * twice would show up twice: every published reading must be there exactly once.
 */
import { afterEach, describe, expect, it } from "vitest";
import { exportSeries } from "../../src/store/victoria-metrics";
import type { TestFleet } from "../../testkit/ingest/fleet-publisher";
import type { IngestService } from "../../src/ingest/service";
import {
  connectFleet,
  countAll,
  diffStored,
  startIngest,
  startTestStack,
  waitForStoredCount,
  type TestStack,
  stopStack,
} from "./helpers/stack";

const BOARDS = 300;
const PER_BOARD = 20;

let stack: TestStack | undefined;
let fleet: TestFleet | undefined;
let ingest: IngestService | undefined;

afterEach(async () => {
  await stopStack({ ingest, fleet, stack });
  ingest = fleet = stack = undefined;
});

async function waitForSeries(url: string, selector: string, timeoutMs = 30_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const s = await exportSeries(url, selector, { startMs: Date.now() - 3_600_000 });
    if (s.length > 0 || Date.now() > deadline) return s;
    await new Promise((r) => setTimeout(r, 500));
  }
}

describe.each([{ encrypted: false }, { encrypted: true }])(
  "300 boards, encrypted=$encrypted",
  ({ encrypted }) => {
    it("stores every published reading exactly once, with its site, and accounts for all of them", async () => {
      stack = await startTestStack({ devices: BOARDS, dedup: false });
      const sites = new Map(stack.ids.slice(0, 100).map((id) => [id, "north-field"]));
      ingest = await startIngest(stack, { encrypted, sites, metrics: { port: 0 } });
      fleet = await connectFleet(stack, { encrypted });
      const sent = await fleet.publishEach(PER_BOARD);
      const published = new Map([...sent].map(([id, rs]) => [id, rs.map((r) => r.seq)]));
      await fleet.boards[0]!.publishRaw(
        `electrolyser/${fleet.boards[0]!.id}/status`,
        new TextEncoder().encode("online"),
      );

      const stored = await waitForStoredCount(stack.vm.url, BOARDS * PER_BOARD, 90_000);
      expect(diffStored(published, stored)).toEqual({ missing: [], extra: [] });
      expect(countAll(stored)).toBe(BOARDS * PER_BOARD);

      // All six channels arrive as their own series, tagged with the site (or "unknown").
      const north = await exportSeries(stack.vm.url, `electrolyser_purity_pct{sensor_id="${stack.ids[0]}"}`);
      expect(north[0]?.metric.site).toBe("north-field");
      expect(north[0]?.values).toHaveLength(PER_BOARD);
      const elsewhere = await exportSeries(
        stack.vm.url,
        `electrolyser_voltage_v{sensor_id="${stack.ids[299]}"}`,
      );
      expect(elsewhere[0]?.metric.site).toBe("unknown");

      expect(ingest.account.totals()).toEqual({
        received: BOARDS * PER_BOARD,
        written: BOARDS * PER_BOARD,
        duplicates: 0,
        gaps: 0,
        rejected: 0,
      });
      const d0 = ingest.account.device(stack.ids[0]!);
      expect(d0?.latencyMsP99).toBeGreaterThanOrEqual(0);
      expect(d0?.latencyMsP99).toBeLessThan(60_000);

      // The account on /metrics, scraped over HTTP.
      const metrics = await (await fetch(`http://127.0.0.1:${ingest.metricsPort}/metrics`)).text();
      expect(metrics).toContain(`ingest_written_total{sensor_id="${stack.ids[5]}"} ${PER_BOARD}`);
      expect(metrics).toMatch(/ingest_e2e_latency_seconds_count \d+/);
      expect(metrics).toContain("ingest_held_messages 0");

      // The account and the board status reach the store for the Fleet Health dashboard.
      await ingest.writeAccount();
      const account = await waitForSeries(stack.vm.url, `ingest_written{sensor_id="${stack.ids[7]}"}`);
      expect(account[0]?.values.at(-1)).toBe(PER_BOARD);
      const status = await waitForSeries(stack.vm.url, `device_status_online{sensor_id="${stack.ids[0]}"}`);
      expect(status[0]?.values).toEqual([1]);
    }, 240_000);
  },
);
