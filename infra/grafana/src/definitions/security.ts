// "Fleet Security": attacks and faults one board (or a captured one) can cause, per identity. Every series
// here is written by the ingest's account (measurement `ingest`, per device, every --account-interval):
// rejected_<reason> for the refusals of SECURITY_REASONS, received, configured_rate (the rate limiter's),
// latency_ms_p50; device_status points (one per connect / last will); pki_expiry from the broker launcher.
import { ALERT_LIMITS } from "../config";
import type { DashboardDef, PanelDef } from "../dashboard-model";
import type { SeriesQuery } from "../model";
import { silenceQuery } from "./fleet";

const perBoardIncrease = (field: string, legend = "{{sensor_id}}"): SeriesQuery => ({
  measurement: "ingest",
  field,
  aggregation: { kind: "increase" },
  across: "sum",
  by: ["sensor_id"],
  legend,
});

/** Payload authentication failures (the AES-GCM tag did not verify: wrong key, tampered, forged). */
export const authFailuresQuery = perBoardIncrease("rejected_tag_mismatch");
export const rateExceededQuery = perBoardIncrease("rejected_rate_exceeded");

/** Status messages (a retained online at every connect, the last will at every lost connection), per board. */
export const reconnectsQuery: SeriesQuery = {
  measurement: "device_status",
  field: "online",
  aggregation: { kind: "arrivals" },
  across: "sum",
  by: ["sensor_id"],
  legend: "{{sensor_id}}",
};

export const fleetReconnectsQuery: SeriesQuery = { ...reconnectsQuery, by: [], legend: "all boards" };

/**
 * Store acceptance time minus the device's timestamp, median per board: transit and batching (tens of
 * ms) plus the board's clock error; negative when the board's clock runs ahead.
 */
export const clockSkewQuery: SeriesQuery = {
  measurement: "ingest",
  field: "latency_ms_p50",
  aggregation: { kind: "gauge", reducer: "last" },
  across: "max",
  by: ["sensor_id"],
  legend: "{{sensor_id}}",
};

/** TLS handshakes the broker refused, by reason (it never learns the identity of a refused certificate). */
export const refusedHandshakesQuery: SeriesQuery = {
  measurement: "broker_refused",
  field: "count",
  aggregation: { kind: "increase" },
  across: "sum",
  by: ["reason"],
  legend: "{{reason}}",
};

export const fleetRefusedHandshakesQuery: SeriesQuery = { ...refusedHandshakesQuery, by: [], legend: "all" };

const perIdentityIncrease = (field: string, legend: string): SeriesQuery => ({
  measurement: "broker_connections",
  field,
  aggregation: { kind: "increase" },
  across: "sum",
  by: ["client_id"],
  legend,
});

export const certificateExpiryQuery: SeriesQuery = {
  measurement: "pki_expiry",
  field: "days_left",
  // Written every 5 minutes (host/src/store/pki-expiry.ts): the newest figure of the last hour.
  aggregation: { kind: "state", lookbackS: 3600 },
  across: "min",
  by: ["kind", "name"],
  legend: "{{kind}} {{name}}",
};

const panels: PanelDef[] = [
  {
    title: "Payload authentication failures per board",
    description:
      "Readings whose AES-256-GCM tag did not verify (tag_mismatch): a wrong or forged key, tampering, or another board's envelope on this board's topic.",
    visual: "timeseries",
    unit: "none",
    queries: [authFailuresQuery],
    width: 12,
    height: 8,
  },
  {
    title: "Replays and identity misuse per board",
    description:
      "Old readings sent again (replay), readings naming another device (device_mismatch), re-dated history (timestamp_backwards), identities not in the manifest (unknown_device).",
    visual: "timeseries",
    unit: "none",
    queries: [
      perBoardIncrease("rejected_replay", "{{sensor_id}} replay"),
      perBoardIncrease("rejected_device_mismatch", "{{sensor_id}} device mismatch"),
      perBoardIncrease("rejected_timestamp_backwards", "{{sensor_id}} backwards"),
      perBoardIncrease("rejected_unknown_device", "{{sensor_id}} unknown"),
    ],
    width: 12,
    height: 8,
  },
  {
    title: "Message rate against configured rate",
    description:
      "Messages per second the ingest received from each board, and the rate it is configured to send (the manifest's intervalMs). A board far above its line is flooding.",
    visual: "timeseries",
    unit: "reqps",
    queries: [
      {
        measurement: "ingest",
        field: "received",
        aggregation: { kind: "rate" },
        across: "sum",
        by: ["sensor_id"],
        legend: "{{sensor_id}} received",
      },
      {
        measurement: "ingest",
        field: "configured_rate",
        aggregation: { kind: "gauge", reducer: "last" },
        across: "max",
        by: ["sensor_id"],
        legend: "{{sensor_id}} configured",
      },
    ],
    width: 12,
    height: 8,
  },
  {
    title: "Refused for rate per board",
    description: "Messages past a board's allowance, refused as rate_exceeded (never stored).",
    visual: "timeseries",
    unit: "none",
    queries: [rateExceededQuery],
    width: 12,
    height: 8,
  },
  {
    title: "Connects and lost connections per board",
    description:
      "Status messages per second: an online at each connect, the last will at each lost connection. Many boards at once is a reconnect storm.",
    visual: "timeseries",
    unit: "reqps",
    queries: [reconnectsQuery, fleetReconnectsQuery],
    width: 12,
    height: 8,
  },
  {
    title: "Refused TLS handshakes by reason",
    description:
      "From the broker's log (the launcher, npm run stack): a foreign, revoked or expired certificate (certificate_rejected), none (no_certificate), a client that hung up mid-handshake (handshake_aborted: also a board refusing the broker's pin). Mosquitto never learns who a refused certificate belonged to.",
    visual: "timeseries",
    unit: "none",
    queries: [refusedHandshakesQuery],
    width: 12,
    height: 8,
  },
  {
    title: "Broker connections per identity",
    description:
      "From the broker's log: connects, connections lost without DISCONNECT (socket error, keepalive timeout), and CONNECTs refused as not authorised, per certificate CN.",
    visual: "timeseries",
    unit: "none",
    queries: [
      perIdentityIncrease("connects", "{{client_id}} connects"),
      perIdentityIncrease("lost", "{{client_id}} lost"),
      perIdentityIncrease("refused", "{{client_id}} refused"),
    ],
    width: 12,
    height: 8,
  },
  {
    title: "Dead letters by reason",
    description:
      "Every refusal, by reason (the dead-letter file keeps the first ones of each board and reason).",
    visual: "timeseries",
    unit: "none",
    queries: [
      {
        measurement: "ingest_rejected",
        field: "count",
        aggregation: { kind: "increase" },
        across: "sum",
        by: ["reason"],
        legend: "{{reason}}",
      },
    ],
    width: 12,
    height: 8,
  },
  {
    title: "Clock skew per board",
    description:
      "Store time minus device time, median per board, ms: transit plus the board's clock error (negative: the board's clock is ahead).",
    visual: "timeseries",
    unit: "ms",
    queries: [clockSkewQuery],
    width: 12,
    height: 8,
  },
  {
    title: "Silent boards",
    description: `Seconds since each board's last reading (alarm after ${ALERT_LIMITS.silentIntervals * ALERT_LIMITS.reportIntervalS} s).`,
    visual: "table",
    unit: "s",
    decimals: 0,
    queries: [silenceQuery],
    instant: true,
    width: 12,
    height: 8,
  },
  {
    title: "Certificate and CRL expiry",
    description: `Days left; the alert fires below ${ALERT_LIMITS.pkiExpiryDays}.`,
    visual: "table",
    unit: "d",
    decimals: 0,
    queries: [certificateExpiryQuery],
    instant: true,
    width: 12,
    height: 8,
  },
];

export const securityDashboard: DashboardDef = {
  uid: "est-security",
  title: "Fleet Security",
  description:
    "Per identity: payload authentication failures, replays, message rate against configured rate, reconnects, dead letters by reason, clock skew, silent boards, certificate expiry.",
  tags: ["electrolyser", "security"],
  variables: [],
  refresh: "30s",
  from: "now-6h",
  rows: [{ title: "Security", panels }],
};
