// InfluxDB line protocol for the store schema (see README "Store schema"): one line per reading,
// millisecond precision, the device's own timestamp, so a re-delivered reading overwrites itself.
import { isEmulatedFirmware } from "../../../firmware/src/telemetry/vocabulary";
import { CHANNEL_NAMES } from "../../../firmware/src/telemetry/channels";
import type { Reading } from "../../../firmware/src/telemetry/reading";

export const TELEMETRY_MEASUREMENT = "electrolyser";
export const STATUS_MEASUREMENT = "device_status";
export const ACCOUNT_MEASUREMENT = "ingest";
export const REJECTED_MEASUREMENT = "ingest_rejected";
export const UNKNOWN_SITE = "unknown";

/**
 * Tag keys and values: comma, equals sign and space are escaped (and the backslash itself). Line
 * protocol has no escape for a newline (it ends the point, so the rest would be a point of its own) or
 * other control characters: those are refused, never passed on.
 */
export function escapeTag(value: string): string {
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(value))
    throw new RangeError(`tag value ${JSON.stringify(value)} holds a control character`);
  return value.replace(/[\\,= ]/g, (c) => `\\${c}`);
}

/** A bare number is a float field in line protocol (integers carry an `i` suffix), so `5` stays a float. */
function formatFloat(v: number): string {
  return String(v);
}

function tags(pairs: [string, string][]): string {
  // An empty tag value is a parse error in line protocol.
  return pairs.map(([k, v]) => `,${k}=${escapeTag(v === "" ? UNKNOWN_SITE : v)}`).join("");
}

export function readingLine(r: Reading, site: string): string {
  const fields: string[] = [];
  for (const name of CHANNEL_NAMES) {
    const v = r.values[name];
    if (v !== null) fields.push(`${name}=${formatFloat(v)}`);
  }
  fields.push(`seq=${r.seq}i`, `boot=${r.boot}i`, `faults=${r.faults.length}i`);
  const tagList: [string, string][] = [
    ["sensor_id", r.sensorId],
    ["site", site],
  ];
  // Only on emulated readings, so a real board's series keep the tags they always had.
  if (isEmulatedFirmware(r.fw)) tagList.push(["emulated", "true"]);
  return `${TELEMETRY_MEASUREMENT}${tags(tagList)} ${fields.join(",")} ${Math.trunc(r.ts)}`;
}

export function statusLine(sensorId: string, online: boolean, tsMs: number): string {
  return `${STATUS_MEASUREMENT}${tags([["sensor_id", sensorId]])} online=${online ? 1 : 0}i ${Math.trunc(tsMs)}`;
}

export interface DeviceAccountFields {
  received: number;
  written: number;
  duplicates: number;
  gaps: number;
  rejected: number;
  latencyMsP50?: number;
  latencyMsP99?: number;
}

/**
 * Refusals that point at an attack or a broken board, written per device as `rejected_<reason>` (0 too,
 * so every board has the series): the Fleet Security dashboard and its alerts read them.
 */
export const SECURITY_REASONS = [
  "tag_mismatch",
  "replay",
  "device_mismatch",
  "unknown_device",
  "rate_exceeded",
  "timestamp_backwards",
] as const;

export function accountLine(
  sensorId: string,
  a: DeviceAccountFields & { rejectedByReason?: Record<string, number>; configuredRate?: number },
  tsMs: number,
): string {
  const fields = [
    `received=${a.received}i`,
    `written=${a.written}i`,
    `duplicates=${a.duplicates}i`,
    `gaps=${a.gaps}i`,
    `rejected=${a.rejected}i`,
  ];
  if (a.rejectedByReason)
    for (const reason of SECURITY_REASONS)
      fields.push(`rejected_${reason}=${a.rejectedByReason[reason] ?? 0}i`);
  if (a.configuredRate !== undefined) fields.push(`configured_rate=${formatFloat(a.configuredRate)}`);
  if (a.latencyMsP50 !== undefined) fields.push(`latency_ms_p50=${formatFloat(a.latencyMsP50)}`);
  if (a.latencyMsP99 !== undefined) fields.push(`latency_ms_p99=${formatFloat(a.latencyMsP99)}`);
  return `${ACCOUNT_MEASUREMENT}${tags([["sensor_id", sensorId]])} ${fields.join(",")} ${Math.trunc(tsMs)}`;
}

export function rejectedLine(reason: string, count: number, tsMs: number): string {
  return `${REJECTED_MEASUREMENT}${tags([["reason", reason]])} count=${count}i ${Math.trunc(tsMs)}`;
}
