import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { benchLine } from "../../src/emulator/bench-metrics";
import { runEmulator } from "../../src/emulator/run";
import { exportSeries, startVictoriaMetrics } from "../../src/store/victoria-metrics";
import type { VictoriaMetricsHandle } from "../../src/store/victoria-metrics";

let dir: string;
let store: VictoriaMetricsHandle;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "emu-store-"));
  store = await startVictoriaMetrics({ dataDir: join(dir, "vm") });
});
afterAll(async () => {
  await store?.stop();
  await rm(dir, { recursive: true, force: true });
});

describe("benchmark metrics in the store", () => {
  it("formats line protocol with escaped tags and only finite fields", () => {
    expect(benchLine("a b,c=d", { x: 1.5, y: Number.NaN, z: 0 }, 1700000000000.4)).toBe(
      "bench,component=emulator,run=a\\ b\\,c\\=d x=1.5,z=0 1700000000000",
    );
    expect(() => benchLine("r", { y: Number.POSITIVE_INFINITY }, 0)).toThrow();
  });

  it("writes the run's final figures as measurement bench", async () => {
    const summary = await runEmulator({
      count: 3,
      rateHz: 4,
      durationS: 1.5,
      seed: 1,
      connectRate: 100,
      stateDir: join(dir, "state"),
      encrypt: false,
      verify: true,
      deviceKeyType: "p256",
      store: { url: store.url },
      runName: "store-test",
    });
    expect(summary.ok).toBe(true);
    let series: Awaited<ReturnType<typeof exportSeries>> = [];
    for (let i = 0; i < 50 && !series.some((s) => s.metric.__name__ === "bench_final"); i++) {
      await new Promise((r) => setTimeout(r, 200));
      series = await exportSeries(store.url, '{__name__=~"bench_.*",run="store-test"}');
    }
    const value = (name: string): number | undefined =>
      series.find((s) => s.metric.__name__ === name)?.values.at(-1);
    expect(series.every((s) => s.metric.component === "emulator")).toBe(true);
    expect(value("bench_final")).toBe(1);
    expect(value("bench_lost")).toBe(0);
    expect(value("bench_boards_target")).toBe(3);
    expect(value("bench_msg_per_s")).toBeGreaterThan(5);
  });
});
