/**
 * Options of KeyRequest (key-request.ts), checked in JavaScript so that a bad option is a clear TypeError or
 * RangeError before the native code runs. Platform-neutral: the emulator's node:crypto key service checks the
 * same options with this function, so a subject the board would refuse is refused in Node too.
 *
 * The subject is a distinguished name in mbedTLS's string form (mbedtls_x509_string_to_names): `ATTR=value`
 * pairs joined by commas, written in the certificate in the order given (first pair first, so
 * `O=...,OU=devices,CN=dev-0001` is DER order, which RFC 4514 strings print reversed). Only the attribute types
 * the PKI uses are accepted, values are printable ASCII without the characters DN strings escape, and CN is
 * required: the host checks that the CSR's CN is the device.
 */

export const KEY_REQUEST_BITS = Object.freeze([2048, 3072, 4096] as const);
export type KeyRequestBits = (typeof KEY_REQUEST_BITS)[number];

export interface KeyRequestOptions {
  /** e.g. "O=Electrolyser Secure Telemetry,OU=devices,CN=dev-0001" */
  subject: string;
  /** RSA modulus size; 2048 unless given. */
  bits?: number;
}

export interface CheckedKeyRequestOptions {
  subject: string;
  bits: KeyRequestBits;
  commonName: string;
}

/** The same limit as KEY_REQUEST_SUBJECT_MAX in key-request-native.c. */
export const KEY_REQUEST_SUBJECT_MAX = 256;

const ATTRIBUTES: readonly string[] = Object.freeze(["CN", "OU", "O", "L", "ST", "C"]);
// Printable ASCII without the characters RFC 4514 escapes (, + " \ < > ; =) and without '#' at a value's start.
// eslint-disable-next-line no-control-regex
const VALUE = /^[^\x00-\x1f\x7f-\uffff,+"\\<>;=]+$/;

export function checkKeyRequestOptions(options: unknown): CheckedKeyRequestOptions {
  if (typeof options !== "object" || options === null)
    throw new TypeError("key-request: options object required");
  const { subject, bits } = options as { subject?: unknown; bits?: unknown };
  if (typeof subject !== "string") throw new TypeError("key-request: options.subject (string) required");
  if (subject.length === 0 || subject.length > KEY_REQUEST_SUBJECT_MAX)
    throw new RangeError(`key-request: subject must be 1 to ${KEY_REQUEST_SUBJECT_MAX} characters`);
  let commonName: string | undefined;
  const seen = new Set<string>();
  for (const pair of subject.split(",")) {
    const eq = pair.indexOf("=");
    const type = eq < 0 ? "" : pair.slice(0, eq);
    const value = eq < 0 ? "" : pair.slice(eq + 1);
    if (!ATTRIBUTES.includes(type))
      throw new RangeError(`key-request: subject attribute "${type}" not one of ${ATTRIBUTES.join(", ")}`);
    if (seen.has(type)) throw new RangeError(`key-request: subject attribute ${type} given twice`);
    seen.add(type);
    if (!VALUE.test(value) || value.startsWith(" ") || value.startsWith("#") || value.endsWith(" "))
      throw new RangeError(
        `key-request: subject ${type} value must be printable ASCII without , + " \\ < > ; =`,
      );
    if (type === "C" && !/^[A-Z]{2}$/.test(value))
      throw new RangeError("key-request: subject C must be 2 letters");
    if (type === "CN") commonName = value;
  }
  if (commonName === undefined) throw new RangeError("key-request: subject needs a CN");
  if (bits !== undefined && typeof bits !== "number")
    throw new TypeError("key-request: options.bits must be a number");
  const size = bits ?? 2048;
  if (!(KEY_REQUEST_BITS as readonly number[]).includes(size))
    throw new RangeError(`key-request: bits must be one of ${KEY_REQUEST_BITS.join(", ")}`);
  return { subject, bits: size as KeyRequestBits, commonName };
}
