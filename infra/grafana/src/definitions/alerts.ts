// Safety alarms and the silent-board alarm, one definition for both stores.
import { ALERT_LIMITS } from "../config";
import type { AlertDef } from "../dashboard-model";
import type { SeriesQuery } from "../model";
import { silenceQuery } from "./fleet";
import {
  authFailuresQuery,
  clockSkewQuery,
  fleetReconnectsQuery,
  fleetRefusedHandshakesQuery,
  rateExceededQuery,
} from "./security";

const perBoard = (field: string, reducer: "mean" | "max" | "min", divideBy?: number): SeriesQuery => ({
  measurement: "electrolyser",
  field,
  aggregation: { kind: "gauge", reducer },
  across: reducer === "mean" ? "mean" : reducer,
  by: ["sensor_id"],
  legend: "{{sensor_id}}",
  ...(divideBy !== undefined ? { divideBy } : {}),
});

const W = ALERT_LIMITS.windowS;

export const alertDefinitions: readonly AlertDef[] = [
  {
    uid: "est-purity-low",
    title: "H2 purity below limit",
    summary: `Mean H2 purity over ${W / 60} min below ${ALERT_LIMITS.purityMinPct} % on {{ $labels.sensor_id }}.`,
    query: perBoard("purity_pct", "mean"),
    comparison: "below",
    limit: ALERT_LIMITS.purityMinPct,
    windowS: W,
    forDuration: "1m",
    severity: "critical",
  },
  {
    uid: "est-stack-overtemperature",
    title: "Stack over-temperature",
    summary: `Stack temperature above ${ALERT_LIMITS.temperatureMaxC} °C on {{ $labels.sensor_id }}.`,
    query: perBoard("temperature_c", "max"),
    comparison: "above",
    limit: ALERT_LIMITS.temperatureMaxC,
    windowS: W,
    forDuration: "0s",
    severity: "critical",
  },
  {
    uid: "est-stack-overpressure",
    title: "Stack over-pressure",
    summary: `Stack pressure above ${ALERT_LIMITS.pressureMaxBar} bar on {{ $labels.sensor_id }}.`,
    query: perBoard("pressure_bar", "max"),
    comparison: "above",
    limit: ALERT_LIMITS.pressureMaxBar,
    windowS: W,
    forDuration: "0s",
    severity: "critical",
  },
  {
    uid: "est-cell-overvoltage",
    title: "Cell over-voltage",
    summary: `Stack voltage / ${ALERT_LIMITS.cellsPerStack} cells above ${ALERT_LIMITS.cellVoltageMaxV} V on {{ $labels.sensor_id }}.`,
    query: perBoard("voltage_v", "max", ALERT_LIMITS.cellsPerStack),
    comparison: "above",
    limit: ALERT_LIMITS.cellVoltageMaxV,
    windowS: W,
    forDuration: "1m",
    severity: "critical",
  },
  {
    uid: "est-pki-expiry",
    title: "Certificate or CRL expires soon",
    summary:
      `The {{ $labels.kind }} "{{ $labels.name }}" certificate (or CRL) expires in less than ${ALERT_LIMITS.pkiExpiryDays} days: ` +
      "renew it (npm run pki -- rotate / broker --force / service --force / crl).",
    query: {
      measurement: "pki_expiry",
      field: "days_left",
      aggregation: { kind: "gauge", reducer: "min" },
      across: "min",
      by: ["kind", "name"],
      legend: "{{kind}} {{name}}",
    },
    comparison: "below",
    limit: ALERT_LIMITS.pkiExpiryDays,
    // Written every 5 minutes (host/src/store/pki-expiry.ts).
    windowS: 3600,
    forDuration: "0s",
    severity: "warning",
  },
  {
    uid: "est-board-silent",
    title: "Board silent",
    summary:
      `No telemetry from {{ $labels.sensor_id }} for more than ${ALERT_LIMITS.silentIntervals} report intervals ` +
      `(${ALERT_LIMITS.silentIntervals * ALERT_LIMITS.reportIntervalS} s).`,
    query: silenceQuery,
    comparison: "above",
    limit: ALERT_LIMITS.silentIntervals * ALERT_LIMITS.reportIntervalS,
    // Boards silent for longer than a day drop out of the rule (and show in the Fleet Health table).
    windowS: 86_400,
    forDuration: "0s",
    severity: "warning",
  },
  {
    uid: "est-auth-failures",
    title: "Payload authentication failures",
    summary:
      `Readings from {{ $labels.sensor_id }} failed authentication (tag_mismatch) in the last ${W / 60} min: ` +
      "a forged or tampered message, or the board holds the wrong key.",
    query: authFailuresQuery,
    comparison: "above",
    limit: 0,
    windowS: W,
    forDuration: "0s",
    severity: "warning",
  },
  {
    uid: "est-rate-exceeded",
    title: "Board above its message rate",
    summary: `{{ $labels.sensor_id }} sent past its allowance in the last ${W / 60} min; the excess is refused (rate_exceeded).`,
    query: rateExceededQuery,
    comparison: "above",
    limit: 0,
    windowS: W,
    forDuration: "0s",
    severity: "warning",
  },
  {
    uid: "est-reconnect-storm",
    title: "Reconnect storm",
    summary: `More than ${ALERT_LIMITS.reconnectStormPerS} connects or lost connections per second, fleet-wide, over ${W / 60} min.`,
    query: fleetReconnectsQuery,
    comparison: "above",
    limit: ALERT_LIMITS.reconnectStormPerS,
    windowS: W,
    forDuration: "0s",
    severity: "warning",
  },
  {
    uid: "est-clock-skew",
    title: "Board clock out of step",
    summary: `Readings of {{ $labels.sensor_id }} reach the store more than ${ALERT_LIMITS.clockSkewMaxMs / 1000} s after their timestamp (median): its clock is behind, or its readings are stuck.`,
    query: clockSkewQuery,
    comparison: "above",
    limit: ALERT_LIMITS.clockSkewMaxMs,
    windowS: W,
    forDuration: "5m",
    severity: "warning",
  },
  {
    uid: "est-refused-handshakes",
    title: "Refused TLS handshakes",
    summary: `The broker refused more than ${ALERT_LIMITS.refusedHandshakes} TLS handshakes in ${W / 60} min (foreign, revoked or missing certificates; see Fleet Security).`,
    query: fleetRefusedHandshakesQuery,
    comparison: "above",
    limit: ALERT_LIMITS.refusedHandshakes,
    windowS: W,
    forDuration: "0s",
    severity: "warning",
  },
];
