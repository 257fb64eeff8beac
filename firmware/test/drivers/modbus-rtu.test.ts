import { describe, expect, it } from "vitest";
import fc from "fast-check";
import {
  buildReadRequest,
  crc16,
  decodeFloat32,
  expectedResponseLength,
  parseReadResponse,
  validateReadRequest,
} from "../../src/drivers/modbus/rtu";
import type { ReadRequest, WordOrder } from "../../src/drivers/modbus/rtu";
import { modbusCrc } from "../models/modbus-flow-meter-model";

const bytes = (text: string) =>
  Uint8Array.from(
    text
      .trim()
      .split(/\s+/)
      .map((b) => parseInt(b, 16)),
  );

// Modbus Application Protocol V1.1b3 §6.3 example (server 0x11 = 17, registers 108–110) and
// frames with their CRC as published in Modbus over Serial Line V1.02 and vendor manuals.
const HOLDING_108: ReadRequest = { unit: 0x11, function: 0x03, address: 0x006b, quantity: 3 };

describe("Modbus RTU CRC-16 (poly 0xA001, init 0xFFFF, low byte first)", () => {
  it.each([
    ["01 03 00 00 00 0A", "C5 CD"],
    ["11 03 00 6B 00 03", "76 87"],
    ["11 03 06 AE 41 56 52 43 40", "49 AD"],
    ["01 04 00 00 00 01", "31 CA"],
  ])("%s → %s", (frame, crc) => {
    const value = crc16(bytes(frame));
    expect([value & 0xff, value >> 8]).toEqual([...bytes(crc)]);
  });

  it("agrees with the device model's independent bitwise CRC", () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 0, maxLength: 256 }), (data) => {
        expect(crc16(data)).toBe(modbusCrc(data));
      }),
    );
  });
});

describe("Modbus RTU read requests", () => {
  it("builds the specification's function 03 example", () => {
    expect([...buildReadRequest(HOLDING_108)]).toEqual([...bytes("11 03 00 6B 00 03 76 87")]);
  });

  it("builds a function 04 request", () => {
    expect([...buildReadRequest({ unit: 1, function: 4, address: 0, quantity: 1 })]).toEqual([
      ...bytes("01 04 00 00 00 01 31 CA"),
    ]);
  });

  it.each([
    [{ unit: 0, function: 3, address: 0, quantity: 1 }],
    [{ unit: 248, function: 3, address: 0, quantity: 1 }],
    [{ unit: 1, function: 6, address: 0, quantity: 1 }],
    [{ unit: 1, function: 3, address: 0, quantity: 0 }],
    [{ unit: 1, function: 3, address: 0, quantity: 126 }],
    [{ unit: 1, function: 3, address: 0xffff, quantity: 2 }],
    [{ unit: 1, function: 3, address: 1.5, quantity: 2 }],
  ])("rejects %o", (request) => {
    expect(() => validateReadRequest(request as ReadRequest)).toThrow(RangeError);
  });
});

describe("Modbus RTU responses", () => {
  it("parses the specification's response (registers 108–110 = AE41 5652 4340)", () => {
    const frame = bytes("11 03 06 AE 41 56 52 43 40 49 AD");
    expect(expectedResponseLength(frame.subarray(0, 3))).toBe(11);
    const result = parseReadResponse(frame, HOLDING_108);
    expect(result).toEqual({ ok: true, registers: Uint16Array.of(0xae41, 0x5652, 0x4340) });
  });

  it("frames and names an exception response", () => {
    const frame = bytes("11 83 02 C1 34");
    expect(expectedResponseLength(frame.subarray(0, 2))).toBe(5);
    const result = parseReadResponse(frame, HOLDING_108);
    expect(result).toEqual({
      ok: false,
      error: { kind: "exception", exceptionCode: 2, message: "exception 2 (illegal data address)" },
    });
  });

  it("needs the byte count before it can tell the length", () => {
    expect(expectedResponseLength(bytes("11"))).toBeUndefined();
    expect(expectedResponseLength(bytes("11 03"))).toBeUndefined();
  });

  it("rejects a corrupted frame as crc_error", () => {
    const frame = bytes("11 03 06 AE 41 56 52 43 41 49 AD");
    const result = parseReadResponse(frame, HOLDING_108);
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.error.kind).toBe("crc_error");
  });

  it.each([
    ["another unit", { ...HOLDING_108, unit: 0x12 }],
    ["another function", { ...HOLDING_108, function: 0x04 as const }],
    ["another register count", { ...HOLDING_108, quantity: 2 }],
  ])("rejects an answer from %s as bad_response", (_label, request) => {
    const result = parseReadResponse(bytes("11 03 06 AE 41 56 52 43 40 49 AD"), request);
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.error.kind).toBe("bad_response");
  });
});

describe("float32 over two registers", () => {
  // 1.0f = 3F 80 00 00 (A B C D)
  it.each([
    ["ABCD", [0x3f80, 0x0000]],
    ["CDAB", [0x0000, 0x3f80]],
    ["BADC", [0x803f, 0x0000]],
    ["DCBA", [0x0000, 0x803f]],
  ] as const)("%s", (order, registers) => {
    expect(decodeFloat32(Uint16Array.from(registers), 0, order)).toBe(1);
  });

  it("decodes every order of arbitrary floats", () => {
    const orders: WordOrder[] = ["ABCD", "CDAB", "BADC", "DCBA"];
    fc.assert(
      fc.property(fc.float({ noNaN: true }), fc.constantFrom(...orders), (value, order) => {
        const view = new DataView(new ArrayBuffer(4));
        view.setFloat32(0, value);
        const abcd = [0, 1, 2, 3].map((i) => view.getUint8(i));
        const wire = [...order].map((letter) => abcd["ABCD".indexOf(letter)] ?? 0);
        const registers = Uint16Array.of(
          ((wire[0] ?? 0) << 8) | (wire[1] ?? 0),
          ((wire[2] ?? 0) << 8) | (wire[3] ?? 0),
        );
        expect(Object.is(decodeFloat32(registers, 0, order), value)).toBe(true);
      }),
    );
  });

  // decodeFloat32 decodes IEEE 754 by arithmetic (no buffers per sample): every bit pattern must decode as the
  // platform's float32 does, subnormals, signed zeros, infinities and NaN included.
  it("agrees with the platform's float32 on every kind of bit pattern", () => {
    const reference = (bits: number): number => {
      const view = new DataView(new ArrayBuffer(4));
      view.setUint32(0, bits);
      return view.getFloat32(0);
    };
    const check = (bits: number): void => {
      const registers = Uint16Array.of(bits >>> 16, bits & 0xffff);
      expect(
        Object.is(decodeFloat32(registers, 0, "ABCD"), reference(bits)),
        `bits ${bits.toString(16)}`,
      ).toBe(true);
    };
    for (const bits of [
      0, 0x80000000, 1, 0x80000001, 0x007fffff, 0x00800000, 0x3f800000, 0x7f7fffff, 0xff7fffff, 0x7f800000,
      0xff800000, 0x7fc00000, 0x7f800001, 0xffffffff,
    ])
      check(bits);
    fc.assert(fc.property(fc.integer({ min: 0, max: 0xffffffff }), check), { numRuns: 2000 });
  });
});
