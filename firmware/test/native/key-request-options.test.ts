/**
 * KeyRequest's option checks (firmware/native/key-request/key-request-options.ts): a bad option must be a
 * TypeError or RangeError in JavaScript before the native mbedTLS code runs. The native side repeats the
 * subject-length and bits checks; the last test keeps the two in step by reading the C file.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import {
  checkKeyRequestOptions,
  KEY_REQUEST_BITS,
  KEY_REQUEST_SUBJECT_MAX,
} from "../../native/key-request/key-request-options";

const DEVICE = "O=Electrolyser Secure Telemetry,OU=devices,CN=dev-0001";

describe("checkKeyRequestOptions", () => {
  it("accepts the device subject, 2048 bits by default, and names its CN", () => {
    expect(checkKeyRequestOptions({ subject: DEVICE })).toEqual({
      subject: DEVICE,
      bits: 2048,
      commonName: "dev-0001",
    });
    expect(checkKeyRequestOptions({ subject: "CN=a", bits: 4096 }).bits).toBe(4096);
  });

  it.each([
    ["no options", undefined, TypeError],
    ["null", null, TypeError],
    ["no subject", {}, TypeError],
    ["subject not a string", { subject: 5 }, TypeError],
    ["bits not a number", { subject: "CN=a", bits: "2048" }, TypeError],
    ["empty subject", { subject: "" }, RangeError],
    ["subject too long", { subject: "CN=" + "a".repeat(KEY_REQUEST_SUBJECT_MAX) }, RangeError],
    ["no CN", { subject: "O=x,OU=devices" }, RangeError],
    ["unknown attribute", { subject: "CN=a,XX=b" }, RangeError],
    ["pair without =", { subject: "CN=a,devices" }, RangeError],
    ["attribute twice", { subject: "CN=a,CN=b" }, RangeError],
    ["empty value", { subject: "CN=" }, RangeError],
    ["escaped character", { subject: "CN=a\\,b" }, RangeError],
    ["plus (multi-valued RDN)", { subject: "CN=a+OU=b" }, RangeError],
    ["quote", { subject: 'CN="a"' }, RangeError],
    ["control character", { subject: "CN=a\nb" }, RangeError],
    ["non-ASCII", { subject: "CN=gerät" }, RangeError],
    ["leading #", { subject: "CN=#0101" }, RangeError],
    ["leading space", { subject: "CN= a" }, RangeError],
    ["country not 2 letters", { subject: "CN=a,C=NLD" }, RangeError],
    ["1024 bits", { subject: "CN=a", bits: 1024 }, RangeError],
    ["2049 bits", { subject: "CN=a", bits: 2049 }, RangeError],
  ])("refuses %s", (_label, options, type) => {
    expect(() => checkKeyRequestOptions(options)).toThrow(type);
  });

  it("agrees with the native module's own limits", () => {
    const c = readFileSync(
      join(import.meta.dirname, "../../native/key-request/key-request-native.c"),
      "utf8",
    );
    expect(Number(/#define KEY_REQUEST_SUBJECT_MAX (\d+)/.exec(c)?.[1])).toBe(KEY_REQUEST_SUBJECT_MAX);
    const nativeBits = [
      .../\(\((\d+) != bits\) && \((\d+) != bits\) && \((\d+) != bits\)\)/.exec(c)!.slice(1),
    ];
    expect(nativeBits.map(Number)).toEqual([...KEY_REQUEST_BITS]);
  });
});
