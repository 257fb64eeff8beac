import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  MAX_CONFIRMATION_RANGES,
  decodeConfirmation,
  encodeConfirmation,
  rangesContain,
} from "../../src/telemetry/confirmation";
import type { SeqRange } from "../../src/telemetry/confirmation";

/** Sorted, disjoint, non-adjacent u32 ranges, 1..MAX of them. */
const rangesArb = fc
  .uniqueArray(fc.integer({ min: 0, max: 0xffffffff }), {
    minLength: 2,
    maxLength: 2 * MAX_CONFIRMATION_RANGES,
  })
  .filter((xs) => xs.length % 2 === 0)
  .map((xs) => xs.sort((a, b) => a - b))
  .map((xs) => {
    const out: SeqRange[] = [];
    for (let i = 0; i < xs.length; i += 2) out.push({ from: xs[i]!, to: xs[i + 1]! });
    return out.filter((r, i, all) => i === 0 || r.from > all[i - 1]!.to + 1);
  })
  .filter((rs) => rs.length > 0);

describe("the stored confirmation codec", () => {
  it("is 14 bytes for one range, laid out as documented", () => {
    const bytes = encodeConfirmation({ boot: 7, ranges: [{ from: 0, to: 1234 }] });
    expect([...bytes]).toEqual([1, 0, 0, 0, 7, 1, 0, 0, 0, 0, 0, 0, 0x04, 0xd2]);
  });

  it("round-trips every valid confirmation", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 0xffffffff }), rangesArb, (boot, ranges) => {
        const decoded = decodeConfirmation(encodeConfirmation({ boot, ranges }));
        expect(decoded).toEqual({ ok: true, value: { boot, ranges } });
      }),
    );
  });

  it("answers any byte string with a value or a typed error, never a throw", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 100 }), (bytes) => {
        const r = decodeConfirmation(bytes);
        if (r.ok) expect(encodeConfirmation(r.value)).toEqual(bytes);
        else expect(r.error.message.length).toBeGreaterThan(0);
      }),
    );
  });

  it("refuses each malformed shape with its own code", () => {
    const good = encodeConfirmation({
      boot: 1,
      ranges: [
        { from: 5, to: 9 },
        { from: 20, to: 30 },
      ],
    });
    const with_ = (patch: (b: Uint8Array) => void, bytes = good.slice()) => {
      patch(bytes);
      const r = decodeConfirmation(bytes);
      return r.ok ? "ok" : r.error.code;
    };
    expect(with_(() => undefined)).toBe("ok");
    expect(decodeConfirmation(good.subarray(0, 5))).toMatchObject({
      ok: false,
      error: { code: "truncated" },
    });
    expect(decodeConfirmation(good.subarray(0, good.length - 1))).toMatchObject({
      ok: false,
      error: { code: "bad_length" },
    });
    expect(with_((b) => (b[0] = 2))).toBe("unknown_version");
    expect(with_((b) => (b[5] = 0))).toBe("no_ranges");
    expect(with_((b) => (b[5] = MAX_CONFIRMATION_RANGES + 1))).toBe("too_many_ranges");
    expect(with_((b) => (b[13] = 4))).toBe("bad_range"); // first range 5..4
    expect(with_((b) => (b[17] = 10))).toBe("unordered"); // second starts at 10, touching 5..9
    expect(() => encodeConfirmation({ boot: 1, ranges: [] })).toThrow(RangeError);
    expect(() => encodeConfirmation({ boot: -1, ranges: [{ from: 0, to: 0 }] })).toThrow(RangeError);
  });

  it("tells whether a seq is confirmed", () => {
    const rs = [
      { from: 3, to: 5 },
      { from: 9, to: 9 },
    ];
    expect([2, 3, 5, 6, 9, 10].map((s) => rangesContain(rs, s))).toEqual([
      false,
      true,
      true,
      false,
      true,
      false,
    ]);
  });
});
