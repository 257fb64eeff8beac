// Typed outcomes instead of exceptions: the ingest counts rejects by code, and the
// firmware must never unwind its loop because a message was odd.

export type PayloadErrorCode =
  | "truncated"
  | "oversized"
  | "unknown_version"
  | "unknown_key_id"
  | "retired_key"
  | "tag_mismatch"
  | "replay"
  | "duplicate"
  | "invalid_json"
  | "missing_field"
  | "wrong_type"
  | "not_finite"
  | "out_of_range"
  | "device_mismatch"
  | "invalid_device_id";

export const PAYLOAD_ERROR_CODES: readonly PayloadErrorCode[] = [
  "truncated",
  "oversized",
  "unknown_version",
  "unknown_key_id",
  "retired_key",
  "tag_mismatch",
  "replay",
  "duplicate",
  "invalid_json",
  "missing_field",
  "wrong_type",
  "not_finite",
  "out_of_range",
  "device_mismatch",
  "invalid_device_id",
];

export interface PayloadError {
  code: PayloadErrorCode;
  message: string;
}

export type DecodeResult<T> = { ok: true; value: T } | { ok: false; error: PayloadError };

export function fail<T>(code: PayloadErrorCode, message: string): DecodeResult<T> {
  return { ok: false, error: { code, message } };
}

export function ok<T>(value: T): DecodeResult<T> {
  return { ok: true, value };
}
