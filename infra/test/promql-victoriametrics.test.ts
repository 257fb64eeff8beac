// Every PromQL/MetricsQL query of every panel, variable and alert returns series from a real
// VictoriaMetrics (Debian's binary) after a short run of emulated boards through the real broker and
// the real ingest (support/feed.ts).
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ALERT_LIMITS } from "../grafana/src/config";
import { ALERTS, DASHBOARDS } from "../grafana/src/outputs";
import { allQueries } from "../grafana/src/queries";
import {
  exportSeries,
  queryInstant,
  queryRange,
  startVictoriaMetrics,
  type VictoriaMetricsHandle,
} from "../../host/src/store/victoria-metrics";
import { interpolatePromQL, type GrafanaVars } from "./support/interpolate";
import { feedThroughIngest, type FeedResult } from "./support/feed";

// Short steps: the run lasts seconds, and a step is also the window of the per-step aggregations.
const VARS: GrafanaVars = { intervalS: 5, rateIntervalS: 60, rangeS: 3600 };

let dir: string;
let vm: VictoriaMetricsHandle | undefined;
let feed: FeedResult;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "est-promql-"));
  vm = await startVictoriaMetrics({ dataDir: join(dir, "vm") });
  feed = await feedThroughIngest({ dir, storeUrl: vm.url });
}, 180_000);

afterAll(async () => {
  await feed?.stop();
  await vm?.stop();
  await rm(dir, { recursive: true, force: true });
});

function finiteValues(values: [number, string][]): number[] {
  return values.map(([, v]) => Number(v)).filter((n) => Number.isFinite(n));
}

describe("PromQL queries against VictoriaMetrics", () => {
  const queries = allQueries(
    "victoriametrics",
    DASHBOARDS.map((d) => d.def),
    ALERTS,
  );

  it("covers every panel and alert", () => {
    expect(queries.filter((q) => q.where.startsWith("alert ")).length).toBe(ALERTS.length);
    expect(queries.length).toBeGreaterThan(30);
  });

  it("the store is not empty for a selector that matches nothing (the check can fail)", async () => {
    const none = await queryInstant(vm!.url, 'electrolyser_temperature_c{sensor_id="no-such-board"}');
    expect(none).toEqual([]);
  });

  for (const q of queries) {
    it(`returns series: ${q.where}`, async () => {
      const text = interpolatePromQL(q.text, VARS);
      expect(text).not.toContain("$");
      const variable = /^label_values\((\w+), (\w+)\)$/.exec(text);
      if (variable) {
        const [, metric, label] = variable;
        const res = await fetch(
          `${vm!.url}/api/v1/label/${label}/values?${new URLSearchParams({ "match[]": metric ?? "" })}`,
        );
        const body = (await res.json()) as { data: string[] };
        expect(body.data.length).toBeGreaterThan(0);
        return;
      }
      const now = Date.now();
      if (q.instant) {
        const samples = await queryInstant(vm!.url, text, now);
        expect(samples.length, text).toBeGreaterThan(0);
        expect(
          samples.every((s) => Number.isFinite(Number(s.value[1]))),
          text,
        ).toBe(true);
      } else {
        const series = await queryRange(vm!.url, text, {
          startMs: feed.startedMs - 60_000,
          endMs: now + VARS.intervalS * 1000,
          stepMs: VARS.intervalS * 1000,
        });
        expect(series.length, text).toBeGreaterThan(0);
        expect(
          series.some((s) => finiteValues(s.values).length > 0),
          text,
        ).toBe(true);
      }
    });
  }

  const textOf = (where: string): string => {
    const q = queries.find((x) => x.where === where);
    if (!q) throw new Error(`no query ${where}`);
    return interpolatePromQL(q.text, VARS);
  };
  const lastValue = (s: { values: [number, string][] }): number => Number(s.values.at(-1)?.[1]);

  it("values mean what the panels say: boards online, rejected by reason, silence, cell voltage", async () => {
    const range = { startMs: feed.startedMs - 60_000, endMs: Date.now() + 5000, stepMs: 5000 };
    const online = await queryRange(vm!.url, textOf("Fleet Health / Boards online / A"), range);
    expect(online.map(lastValue)).toEqual([feed.boards.length]);

    const rejected = await queryRange(vm!.url, textOf("Fleet Health / Rejected by reason / A"), range);
    expect(rejected.length).toBe(1);
    expect(rejected[0]?.metric.reason).toMatch(/^[a-z_]+$/);

    const silence = await queryInstant(
      vm!.url,
      textOf("Fleet Health / Seconds since last message / A"),
      Date.now(),
    );
    expect(silence.map((x) => x.metric.sensor_id).sort()).toEqual([...feed.boards].sort());
    for (const x of silence) expect(Number(x.value[1])).toBeLessThan(120);

    // Cell voltage = the board's highest stack voltage in the alert window / cells, from the raw points.
    const at = Date.now();
    const cell = await queryInstant(vm!.url, textOf("alert est-cell-overvoltage"), at);
    const raw = await exportSeries(vm!.url, "electrolyser_voltage_v", { startMs: at - 300_000, endMs: at });
    expect(cell.length).toBe(feed.boards.length);
    for (const x of cell) {
      const points = raw.find((r) => r.metric.sensor_id === x.metric.sensor_id)?.values ?? [];
      expect(points.length).toBeGreaterThan(2);
      expect(Number(x.value[1])).toBeCloseTo(Math.max(...points) / ALERT_LIMITS.cellsPerStack, 6);
    }
  });

  it("per-board series are labelled by board, as the legends expect", async () => {
    const perBoard = queries.find((q) => q.where === "Electrolyser Telemetry / Stack temperature / A");
    expect(perBoard).toBeDefined();
    const series = await queryRange(vm!.url, interpolatePromQL(perBoard!.text, VARS), {
      startMs: feed.startedMs - 60_000,
      endMs: Date.now() + 5000,
      stepMs: 5000,
    });
    expect(series.map((s) => s.metric.sensor_id).sort()).toEqual([...feed.boards].sort());
  });
});
