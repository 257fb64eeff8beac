import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { decodeReading, encodeReading } from "../../src/payload/codec";
import { MAX_PAYLOAD_BYTES } from "../../src/telemetry/reading";
import { PAYLOAD_ERROR_CODES } from "../../src/telemetry/decode-result";
import { CHANNEL_NAMES, CHANNELS } from "../../src/telemetry/channels";
import { sampleReading } from "./sample-reading";

const enc = (o: unknown): Uint8Array => new Uint8Array(Buffer.from(JSON.stringify(o)));
const wire = (): Record<string, unknown> =>
  JSON.parse(Buffer.from(encodeReading(sampleReading())).toString());

describe("payload codec", () => {
  it("keeps the field names users know and round-trips a reading", () => {
    const r = sampleReading();
    const o = wire();
    expect(Object.keys(o)).toEqual(
      expect.arrayContaining(["sensor_id", "seq", "ts", "boot", ...CHANNEL_NAMES]),
    );
    expect(o.temperature_c).toBe(65.5);
    const back = decodeReading(encodeReading(r));
    expect(back).toEqual({ ok: true, value: r });
  });

  it("sends a faulted channel as null and lists it", () => {
    const r = sampleReading({ faults: ["purity_pct"] });
    const o = JSON.parse(Buffer.from(encodeReading(r)).toString());
    expect(o.purity_pct).toBeNull();
    expect(o.faults).toEqual(["purity_pct"]);
    const back = decodeReading(encodeReading(r));
    expect(back.ok && back.value.values.purity_pct).toBeNull();
  });

  it("turns a driver's NaN into a fault instead of a number", () => {
    const r = sampleReading();
    r.values.pressure_bar = Number.NaN;
    const back = decodeReading(encodeReading(r));
    expect(back.ok && back.value.faults).toEqual(["pressure_bar"]);
  });

  const cases: [string, Uint8Array, string][] = [
    ["empty", new Uint8Array(0), "truncated"],
    ["oversized", new Uint8Array(MAX_PAYLOAD_BYTES + 1).fill(0x20), "oversized"],
    ["not UTF-8", Uint8Array.from([0x7b, 0xff, 0x7d]), "invalid_json"],
    ["not JSON", enc("x").subarray(1), "invalid_json"],
    ["array", enc([1, 2]), "wrong_type"],
    ["missing seq", enc({ ...wire(), seq: undefined }), "missing_field"],
    ["unknown version", enc({ ...wire(), v: 2 }), "unknown_version"],
    ["seq as string", enc({ ...wire(), seq: "12" }), "wrong_type"],
    ["negative seq", enc({ ...wire(), seq: -1 }), "out_of_range"],
    ["fractional ts", enc({ ...wire(), ts: 1.5 }), "out_of_range"],
    ["wildcard id", enc({ ...wire(), sensor_id: "a/+" }), "invalid_device_id"],
    ["purity above 100", enc({ ...wire(), purity_pct: 100.5 }), "out_of_range"],
    ["temperature as bool", enc({ ...wire(), temperature_c: true }), "wrong_type"],
    ["null without fault", enc({ ...wire(), voltage_v: null }), "wrong_type"],
    ["unknown fault channel", enc({ ...wire(), faults: ["x"] }), "wrong_type"],
    [
      "Infinity via 1e999",
      new Uint8Array(Buffer.from(JSON.stringify(wire()).replace('"current_a":512.25', '"current_a":1e999'))),
      "not_finite",
    ],
  ];
  it.each(cases)("rejects %s with a typed error", (_name, bytes, code) => {
    const r = decodeReading(bytes);
    expect(r.ok).toBe(false);
    if (!r.ok) {
      expect(r.error.code).toBe(code);
      expect(r.error.message.length).toBeGreaterThan(5);
    }
  });

  it("never throws: any byte string gives a typed error or a valid reading", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 1100 }), (bytes) => {
        const r = decodeReading(bytes);
        if (r.ok) expect(typeof r.value.sensorId).toBe("string");
        else expect(PAYLOAD_ERROR_CODES).toContain(r.error.code);
      }),
      { numRuns: 3000 },
    );
  });

  it("never throws on mutated valid JSON, and every accepted value is in its physical range", () => {
    const base = wire();
    fc.assert(
      fc.property(
        fc.constantFrom(...Object.keys(base)),
        fc.oneof(
          fc.double(),
          fc.string(),
          fc.constant(null),
          fc.integer(),
          fc.boolean(),
          fc.array(fc.string()),
        ),
        (field, value) => {
          const r = decodeReading(enc({ ...base, [field]: value }));
          if (r.ok) {
            for (const name of CHANNEL_NAMES) {
              const v = r.value.values[name];
              if (v !== null) {
                expect(v).toBeGreaterThanOrEqual(CHANNELS[name].physicalMin);
                expect(v).toBeLessThanOrEqual(CHANNELS[name].physicalMax);
              }
            }
          } else expect(PAYLOAD_ERROR_CODES).toContain(r.error.code);
        },
      ),
      { numRuns: 3000 },
    );
  });
});
