// The JSON payload: field names that users of the Python/Paho prototypes already know
// (sensor_id, temperature_c, ...) plus seq/ts/boot for exactly-once accounting.
import { CHANNEL_NAMES, CHANNELS, isChannelName, isPhysicallyPlausible } from "../telemetry/channels";
import type { ChannelName } from "../telemetry/channels";
import {
  MAX_BOOT,
  MAX_FIRMWARE_VERSION_LENGTH,
  MAX_PAYLOAD_BYTES,
  isValidDeviceId,
} from "../telemetry/reading";
import type { Reading } from "../telemetry/reading";
import { decodeUtf8, encodeUtf8 } from "../util/utf8";
import { fail, ok } from "../telemetry/decode-result";
import type { DecodeResult } from "../telemetry/decode-result";

export type { DecodeResult, PayloadError, PayloadErrorCode } from "../telemetry/decode-result";

export const PAYLOAD_VERSION = 1;

function round(value: number, decimals: number): number {
  const f = 10 ** decimals;
  return Math.round(value * f) / f;
}

/**
 * A non-finite value from a driver is a sensor fault: it goes on the wire as null and
 * is listed in faults, so the ingest never sees NaN presented as a measurement.
 */
export function encodeReading(r: Reading): Uint8Array {
  const wire: Record<string, unknown> = {
    v: PAYLOAD_VERSION,
    sensor_id: r.sensorId,
    seq: r.seq,
    ts: r.ts,
    boot: r.boot,
    fw: r.fw,
  };
  const faults: ChannelName[] = [];
  for (const name of CHANNEL_NAMES) {
    const value = r.values[name];
    if (r.faults.includes(name) || value === null || !Number.isFinite(value)) {
      faults.push(name);
      wire[name] = null;
    } else {
      wire[name] = round(value, CHANNELS[name].decimals);
    }
  }
  wire.faults = faults;
  return encodeUtf8(JSON.stringify(wire));
}

function isNonNegativeInteger(v: unknown, max: number): v is number {
  return typeof v === "number" && Number.isInteger(v) && v >= 0 && v <= max;
}

export function decodeReading(bytes: Uint8Array): DecodeResult<Reading> {
  if (bytes.length === 0) return fail("truncated", "empty payload");
  if (bytes.length > MAX_PAYLOAD_BYTES)
    return fail("oversized", `payload is ${bytes.length} bytes, limit ${MAX_PAYLOAD_BYTES}`);
  const text = decodeUtf8(bytes);
  if (text === undefined) return fail("invalid_json", "payload is not valid UTF-8");
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    return fail("invalid_json", "payload is not valid JSON");
  }
  if (typeof doc !== "object" || doc === null || Array.isArray(doc))
    return fail("wrong_type", "payload is not a JSON object");
  const o = doc as Record<string, unknown>;

  for (const field of ["v", "sensor_id", "seq", "ts", "boot", "fw", ...CHANNEL_NAMES]) {
    if (!(field in o)) return fail("missing_field", `missing field "${field}"`);
  }
  if (typeof o.v !== "number") return fail("wrong_type", `"v" must be a number`);
  if (o.v !== PAYLOAD_VERSION)
    return fail("unknown_version", `payload version ${String(o.v)} is not supported`);
  if (typeof o.sensor_id !== "string") return fail("wrong_type", `"sensor_id" must be a string`);
  if (!isValidDeviceId(o.sensor_id)) return fail("invalid_device_id", `"sensor_id" is not a valid device id`);
  for (const [field, max] of [
    ["seq", Number.MAX_SAFE_INTEGER],
    ["ts", Number.MAX_SAFE_INTEGER],
    ["boot", MAX_BOOT],
  ] as const) {
    const v = o[field];
    if (typeof v !== "number") return fail("wrong_type", `"${field}" must be a number`);
    if (!Number.isFinite(v)) return fail("not_finite", `"${field}" is not finite`);
    if (!isNonNegativeInteger(v, max))
      return fail("out_of_range", `"${field}" must be an integer in 0..${max}`);
  }
  if (typeof o.fw !== "string") return fail("wrong_type", `"fw" must be a string`);
  if (o.fw.length > MAX_FIRMWARE_VERSION_LENGTH)
    return fail("out_of_range", `"fw" is longer than 32 characters`);

  const faults: ChannelName[] = [];
  if (o.faults !== undefined) {
    if (!Array.isArray(o.faults)) return fail("wrong_type", `"faults" must be an array`);
    for (const f of o.faults) {
      if (typeof f !== "string" || !isChannelName(f))
        return fail("wrong_type", `"faults" lists an unknown channel`);
      if (!faults.includes(f)) faults.push(f);
    }
  }

  const values = {} as Record<ChannelName, number | null>;
  for (const name of CHANNEL_NAMES) {
    const v = o[name];
    if (v === null) {
      if (!faults.includes(name)) return fail("wrong_type", `"${name}" is null but not listed in "faults"`);
      values[name] = null;
      continue;
    }
    if (typeof v !== "number") return fail("wrong_type", `"${name}" must be a number`);
    if (!Number.isFinite(v)) return fail("not_finite", `"${name}" is not finite`);
    if (faults.includes(name)) return fail("wrong_type", `"${name}" has a value but is listed in "faults"`);
    if (!isPhysicallyPlausible(name, v)) {
      const spec = CHANNELS[name];
      return fail(
        "out_of_range",
        `"${name}" = ${v} is outside ${spec.physicalMin}..${spec.physicalMax} ${spec.unit}`,
      );
    }
    values[name] = v;
  }

  return ok({
    sensorId: o.sensor_id,
    seq: o.seq as number,
    ts: o.ts as number,
    boot: o.boot as number,
    fw: o.fw,
    values,
    faults,
  });
}
