import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { decodeUtf8, encodeUtf8 } from "../../src/util/utf8";

describe("utf8", () => {
  it("encodes exactly like Node's Buffer for any well-formed string", () => {
    fc.assert(
      fc.property(fc.string({ unit: "grapheme" }), (s) => {
        expect(Buffer.from(encodeUtf8(s)).equals(Buffer.from(s, "utf8"))).toBe(true);
        expect(decodeUtf8(encodeUtf8(s))).toBe(s);
      }),
      { numRuns: 2000 },
    );
  });
  it("switches from the ASCII path to the general one at any point, lone surrogates becoming U+FFFD like Buffer", () => {
    const piece = fc.constantFrom("a", '{"x":1}', "é", "€", "😀", "\ud800", "\udfff", "\u007f", "\u0080");
    fc.assert(
      fc.property(fc.array(piece, { maxLength: 30 }), (parts) => {
        const s = parts.join("");
        expect(Buffer.from(encodeUtf8(s)).equals(Buffer.from(s, "utf8"))).toBe(true);
      }),
      { numRuns: 2000 },
    );
  });
  it("rejects malformed sequences that a lenient decoder would paper over", () => {
    for (const bad of [
      [0xc0, 0x80],
      [0xe0, 0x80],
      [0xed, 0xa0, 0x80],
      [0xf4, 0x90, 0x80, 0x80],
      [0x80],
      [0xe2, 0x82],
    ]) {
      expect(decodeUtf8(Uint8Array.from(bad))).toBeUndefined();
    }
  });
  it("agrees with a fatal TextDecoder on random bytes", () => {
    const td = new TextDecoder("utf-8", { fatal: true });
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 40 }), (b) => {
        let expected: string | undefined;
        try {
          expected = td.decode(b);
        } catch {
          expected = undefined;
        }
        // TextDecoder drops a leading BOM; ours keeps every byte.
        if (expected !== undefined && b[0] === 0xef && b[1] === 0xbb && b[2] === 0xbf)
          expected = "\ufeff" + expected;
        expect(decodeUtf8(b)).toBe(expected);
      }),
      { numRuns: 5000 },
    );
  });
});
