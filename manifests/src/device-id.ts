/**
 * Device ids end up in three places with different rules: an MQTT topic level (no `+ # /`, no NUL),
 * an X.509 CN (the broker maps it to the ACL username) and an NVS string on the board. The rule itself
 * lives with the telemetry model (firmware/src/telemetry/reading.ts) so the firmware enforces the same
 * one; this module adds the explanations a user needs when an id is refused.
 */
import { deviceIdSequence } from "../../firmware/src/telemetry/vocabulary";
import { isValidDeviceId, MAX_DEVICE_ID_LENGTH } from "../../firmware/src/telemetry/reading";

export { isValidDeviceId };
export const DEVICE_ID_MAX_LENGTH = MAX_DEVICE_ID_LENGTH;

/** Why an id is invalid, in words a user can act on; undefined when it is valid. */
export function deviceIdProblem(id: unknown): string | undefined {
  if (typeof id !== "string") return "device id must be a string";
  if (id.length === 0) return "device id is empty";
  if (id.length > DEVICE_ID_MAX_LENGTH)
    return `device id "${printable(id)}" is longer than ${DEVICE_ID_MAX_LENGTH} characters`;
  if (id.startsWith(".") || id.startsWith("-"))
    return `device id "${printable(id)}" must not start with '.' or '-'`;
  const bad = [...id].find((c) => !/[A-Za-z0-9._-]/.test(c));
  if (bad !== undefined) {
    return `device id "${printable(id)}" contains ${describeChar(bad)}; allowed are A-Z a-z 0-9 . _ -`;
  }
  // Unreachable while this function and isValidDeviceId agree; the test suite checks that they do.
  return isValidDeviceId(id) ? undefined : `device id "${printable(id)}" is not valid`;
}

function describeChar(c: string): string {
  const code = c.codePointAt(0) ?? 0;
  if (code < 0x20 || code === 0x7f)
    return `a control character (U+${code.toString(16).padStart(4, "0").toUpperCase()})`;
  return `'${c}'`;
}

/** Keeps control characters out of error messages (they could rewrite the user's terminal). */
function printable(s: string): string {
  // eslint-disable-next-line no-control-regex
  return s.replace(/[\u0000-\u001f\u007f]/g, "?").slice(0, 48);
}

/** `prefix0001`, `prefix0002`, …: ids for `--count N`, zero-padded so they sort. */
export function generateDeviceIds(
  prefix: string,
  count: number,
  width = Math.max(4, String(count).length),
): string[] {
  const ids = deviceIdSequence(prefix, count, width);
  const problem =
    ids.length > 0 ? (deviceIdProblem(ids[ids.length - 1]) ?? deviceIdProblem(ids[0])) : undefined;
  if (problem) throw new RangeError(`prefix "${prefix}" gives invalid ids: ${problem}`);
  return ids;
}
