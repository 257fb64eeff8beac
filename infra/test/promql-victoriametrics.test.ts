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
import { feedThroughIngest, FLOOD_MESSAGES, STORM_CONNECTS, type FeedResult } from "./support/feed";

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
    // The feed's attack: a non-envelope, a bad signature, a flood (its first messages are not envelopes either).
    expect(rejected.map((r) => r.metric.reason).sort()).toEqual(
      ["rate_exceeded", "tag_mismatch", feed.notEnvelopeReason].sort(),
    );

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

  it("the emulated attack shows on Fleet Security and in its alert queries, on the board that made it", async () => {
    const [forger, flooder, stormer] = feed.boards as [string, string, string];
    const at = Date.now();
    const byBoard = async (where: string) =>
      new Map(
        (await queryInstant(vm!.url, textOf(where), at)).map((x) => [x.metric.sensor_id, Number(x.value[1])]),
      );
    const auth = await byBoard("alert est-auth-failures");
    expect([...auth.keys()].sort()).toEqual([...feed.boards].sort());
    expect(auth.get(forger)).toBeGreaterThan(0);
    expect(auth.get(flooder)).toBe(0);
    const rate = await byBoard("alert est-rate-exceeded");
    expect(rate.get(flooder)).toBeGreaterThan(FLOOD_MESSAGES / 4);
    expect(rate.get(forger)).toBe(0);
    expect(rate.get(stormer)).toBe(0);
    // Status points in the window: the storm's connects and the emulated board's own online.
    const reconnects = await queryRange(
      vm!.url,
      textOf("Fleet Security / Connects and lost connections per board / A"),
      { startMs: feed.startedMs - 120_000, endMs: at, stepMs: 5000 },
    );
    const total = (b: string) =>
      finiteValues(reconnects.find((r) => r.metric.sensor_id === b)?.values ?? []).reduce((x, y) => x + y, 0);
    expect(total(stormer)).toBeGreaterThan(total(forger));
    const storm = await queryInstant(vm!.url, textOf("alert est-reconnect-storm"), at);
    expect(Number(storm[0]?.value[1])).toBeGreaterThanOrEqual((STORM_CONNECTS + 3) / ALERT_LIMITS.windowS);
    // Clock skew: the boards' clocks are the host's, so store minus device time is transit, well under a second.
    const skew = await byBoard("alert est-clock-skew");
    for (const b of feed.boards) expect(Math.abs(skew.get(b) ?? NaN)).toBeLessThan(1000);
    // The broker refused the foreign certificate and the connection without one; the stormer connected most.
    const refused = await queryInstant(vm!.url, textOf("alert est-refused-handshakes"), at);
    expect(Number(refused[0]?.value[1])).toBeGreaterThanOrEqual(2);
    const reasons = await queryRange(
      vm!.url,
      textOf("Fleet Security / Refused TLS handshakes by reason / A"),
      { startMs: feed.startedMs - 120_000, endMs: at, stepMs: 5000 },
    );
    expect(reasons.map((r) => r.metric.reason)).toEqual(
      expect.arrayContaining(["certificate_rejected", "no_certificate"]),
    );
    // Configured rate: the ingest's default (no manifest), for every board.
    const configured = await byBoard("Fleet Security / Message rate against configured rate / B");
    for (const b of feed.boards) expect(configured.get(b)).toBe(1);
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
