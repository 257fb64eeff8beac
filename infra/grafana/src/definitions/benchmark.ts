// "Benchmark": figures the benchmark runs write to measurement `bench` (tags run, component).
// The field names below are the contract with host/src/bench/*: a benchmark that writes to the
// store uses them, so its run shows up here.
import type { DashboardDef, PanelDef } from "../dashboard-model";
import type { SeriesQuery } from "../model";

/** Fields of measurement `bench` that the dashboard reads. */
export const BENCH_FIELDS = {
  handshakesOk: "handshakes_ok",
  handshakesFailed: "handshakes_failed",
  handshakeMsP50: "handshake_ms_p50",
  handshakeMsP99: "handshake_ms_p99",
  publishMsP50: "publish_ms_p50",
  publishMsP95: "publish_ms_p95",
  publishMsP99: "publish_ms_p99",
  cpuPct: "cpu_pct",
  rssMb: "rss_mb",
  packetLossPct: "packet_loss_pct",
  messagesPerS: "messages_per_s",
} as const;

export const RUN_VARIABLE = {
  name: "run",
  label: "Run",
  tag: "run",
  measurement: "bench",
  field: BENCH_FIELDS.messagesPerS,
} as const;

const q = (field: string, legend: string, reducer: "last" | "max" = "last"): SeriesQuery => ({
  measurement: "bench",
  field,
  aggregation: { kind: "gauge", reducer },
  filters: [{ tag: "run", variable: RUN_VARIABLE.name }],
  legend,
});

const panel = (
  p: Omit<PanelDef, "width" | "height"> & Partial<Pick<PanelDef, "width" | "height">>,
): PanelDef => ({ width: 12, height: 8, ...p });

const panels: PanelDef[] = [
  panel({
    title: "TLS handshakes",
    visual: "timeseries",
    unit: "none",
    queries: [q(BENCH_FIELDS.handshakesOk, "{{run}} ok"), q(BENCH_FIELDS.handshakesFailed, "{{run}} failed")],
  }),
  panel({
    title: "Handshake latency",
    visual: "timeseries",
    unit: "ms",
    queries: [q(BENCH_FIELDS.handshakeMsP50, "{{run}} p50"), q(BENCH_FIELDS.handshakeMsP99, "{{run}} p99")],
  }),
  panel({
    title: "Publish latency percentiles",
    description: "Board publish to PUBACK.",
    visual: "timeseries",
    unit: "ms",
    queries: [
      q(BENCH_FIELDS.publishMsP50, "{{run}} p50"),
      q(BENCH_FIELDS.publishMsP95, "{{run}} p95"),
      q(BENCH_FIELDS.publishMsP99, "{{run}} p99"),
    ],
  }),
  panel({
    title: "Throughput",
    visual: "timeseries",
    unit: "reqps",
    queries: [q(BENCH_FIELDS.messagesPerS, "{{run}} {{component}}")],
  }),
  panel({
    title: "CPU",
    description: "Per component (emulator, broker, ingest); 100 % = one core.",
    visual: "timeseries",
    unit: "percent",
    queries: [q(BENCH_FIELDS.cpuPct, "{{run}} {{component}}", "max")],
  }),
  panel({
    title: "Memory (RSS)",
    visual: "timeseries",
    unit: "decmbytes",
    queries: [q(BENCH_FIELDS.rssMb, "{{run}} {{component}}", "max")],
  }),
  panel({
    title: "Packet loss",
    visual: "timeseries",
    unit: "percent",
    thresholds: [
      { value: null, color: "green" },
      { value: 0.1, color: "red" },
    ],
    queries: [q(BENCH_FIELDS.packetLossPct, "{{run}}", "max")],
    width: 24,
  }),
];

export const benchmarkDashboard: DashboardDef = {
  uid: "est-benchmark",
  title: "Benchmark",
  description:
    "Measurement bench: handshakes, publish latency, throughput, CPU and memory per component, packet loss.",
  tags: ["electrolyser", "benchmark"],
  variables: [RUN_VARIABLE],
  refresh: "",
  from: "now-6h",
  rows: [{ title: "Runs", panels }],
};
