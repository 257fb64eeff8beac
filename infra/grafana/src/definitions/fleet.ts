// "Fleet Health": is every board reporting, and is the ingest keeping its account straight?
// The ingest's account fields (received, written, duplicates, gaps, rejected) are cumulative
// counters per ingest process, so panels take their increase or rate, never the raw value.
import { ALERT_LIMITS } from "../config";
import type { DashboardDef, PanelDef } from "../dashboard-model";
import type { SeriesQuery } from "../model";

const counterIncrease = (measurement: string, field: string, by: string[], legend: string): SeriesQuery => ({
  measurement,
  field,
  aggregation: { kind: "increase" },
  across: "sum",
  by,
  legend,
});

/** The ingest writes a board's status when it changes (retained online / last-will offline). */
const STATUS_LOOKBACK_S = 7 * 86_400;

export const boardsOnlineQuery: SeriesQuery = {
  measurement: "device_status",
  field: "online",
  aggregation: { kind: "state", lookbackS: STATUS_LOOKBACK_S },
  across: "sum",
  by: [],
  legend: "online",
};

export const messagesPerSecondQuery: SeriesQuery = {
  measurement: "electrolyser",
  field: "seq",
  aggregation: { kind: "arrivals" },
  across: "sum",
  by: [],
  legend: "stored",
};

export const silenceQuery: SeriesQuery = {
  measurement: "electrolyser",
  field: "seq",
  aggregation: { kind: "age" },
  across: "max",
  by: ["sensor_id"],
  legend: "{{sensor_id}}",
};

const latency = (field: string, legend: string): SeriesQuery => ({
  measurement: "ingest",
  field,
  aggregation: { kind: "gauge", reducer: "max" },
  across: "max",
  by: [],
  legend,
});

const panels: PanelDef[] = [
  {
    title: "Boards online",
    description: "Boards whose retained status is online (device_status.online).",
    visual: "stat",
    unit: "none",
    decimals: 0,
    queries: [boardsOnlineQuery],
    width: 6,
    height: 5,
  },
  {
    title: "Messages stored per second",
    description: "Telemetry points written to the store, all boards.",
    visual: "stat",
    unit: "reqps",
    decimals: 1,
    queries: [messagesPerSecondQuery],
    width: 6,
    height: 5,
  },
  {
    title: "Lost messages (gaps)",
    description: "Sequence numbers that never arrived, as counted by the ingest.",
    visual: "stat",
    unit: "none",
    decimals: 0,
    thresholds: [
      { value: null, color: "green" },
      { value: 1, color: "orange" },
    ],
    queries: [counterIncrease("ingest", "gaps", [], "lost")],
    width: 6,
    height: 5,
  },
  {
    title: "Rejected messages",
    description: "Messages the ingest refused (all reasons).",
    visual: "stat",
    unit: "none",
    decimals: 0,
    thresholds: [
      { value: null, color: "green" },
      { value: 1, color: "red" },
    ],
    queries: [counterIncrease("ingest_rejected", "count", [], "rejected")],
    width: 6,
    height: 5,
  },
  {
    title: "Boards online over time",
    visual: "timeseries",
    unit: "none",
    decimals: 0,
    queries: [boardsOnlineQuery],
    width: 12,
    height: 8,
  },
  {
    title: "Messages per second",
    visual: "timeseries",
    unit: "reqps",
    queries: [
      messagesPerSecondQuery,
      {
        measurement: "ingest",
        field: "received",
        aggregation: { kind: "rate" },
        across: "sum",
        by: [],
        legend: "received by ingest",
      },
    ],
    width: 12,
    height: 8,
  },
  {
    title: "End-to-end latency (worst board)",
    description: "Device timestamp to store write, per-board percentiles; the worst board is shown.",
    visual: "timeseries",
    unit: "ms",
    queries: [latency("latency_ms_p50", "p50"), latency("latency_ms_p99", "p99")],
    width: 12,
    height: 8,
  },
  {
    title: "Gaps and duplicates",
    description:
      "Per interval: sequence numbers lost, and exact duplicates (redeliveries) dropped by the ingest.",
    visual: "timeseries",
    unit: "none",
    queries: [
      counterIncrease("ingest", "gaps", [], "lost (gaps)"),
      counterIncrease("ingest", "duplicates", [], "duplicates dropped"),
    ],
    width: 12,
    height: 8,
  },
  {
    title: "Rejected by reason",
    description:
      "Messages refused by the ingest per interval, by reason (tag_mismatch, replay, out_of_range, …).",
    visual: "timeseries",
    unit: "none",
    queries: [counterIncrease("ingest_rejected", "count", ["reason"], "{{reason}}")],
    width: 12,
    height: 8,
  },
  {
    title: "Seconds since last message",
    description:
      `Per board. A board is silent after ${ALERT_LIMITS.silentIntervals} missed reports ` +
      `(${ALERT_LIMITS.silentIntervals * ALERT_LIMITS.reportIntervalS} s).`,
    visual: "table",
    unit: "s",
    decimals: 0,
    thresholds: [
      { value: null, color: "green" },
      { value: ALERT_LIMITS.silentIntervals * ALERT_LIMITS.reportIntervalS, color: "red" },
    ],
    queries: [silenceQuery],
    instant: true,
    width: 12,
    height: 8,
  },
];

export const fleetDashboard: DashboardDef = {
  uid: "est-fleet",
  title: "Fleet Health",
  description: "Boards online, message rates, end-to-end latency, and the ingest's account of every message.",
  tags: ["electrolyser", "fleet"],
  variables: [],
  refresh: "10s",
  from: "now-1h",
  rows: [{ title: "Fleet", panels }],
};
