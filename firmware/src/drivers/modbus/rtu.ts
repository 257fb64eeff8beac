/*
	Modbus RTU frames, pure (no IO): request building, response framing and parsing, CRC-16.
	Modbus Application Protocol Specification V1.1b3 (functions 03 and 04, exception responses),
	Modbus over Serial Line Specification and Implementation Guide V1.02 (RTU framing, CRC-16:
	initial 0xFFFF, reflected polynomial 0xA001, sent low byte first).
*/

export const ModbusFunction = Object.freeze({
  READ_HOLDING_REGISTERS: 0x03,
  READ_INPUT_REGISTERS: 0x04,
});
export type ReadFunction = 0x03 | 0x04;

export const ModbusException: Readonly<Record<number, string>> = Object.freeze({
  0x01: "illegal function",
  0x02: "illegal data address",
  0x03: "illegal data value",
  0x04: "server device failure",
  0x05: "acknowledge",
  0x06: "server device busy",
  0x08: "memory parity error",
  0x0a: "gateway path unavailable",
  0x0b: "gateway target device failed to respond",
});

/** A read of 03/04 may ask for 1…125 registers (spec 6.3, 6.4). */
export const MAX_READ_REGISTERS = 125;
/** RTU ADU limit (serial line spec 2.5.1.1). */
export const MAX_ADU_BYTES = 256;

export type ModbusErrorKind = "timeout" | "crc_error" | "exception" | "bad_response" | "bus_error";

export interface ModbusError {
  kind: ModbusErrorKind;
  message: string;
  /** Set for kind "exception". */
  exceptionCode?: number;
}

export type ModbusReadResult = { ok: true; registers: Uint16Array } | { ok: false; error: ModbusError };

export interface ReadRequest {
  unit: number;
  function: ReadFunction;
  address: number;
  quantity: number;
}

export function crc16(bytes: Uint8Array, length: number = bytes.length): number {
  let crc = 0xffff;
  for (let i = 0; i < length; i++) {
    crc ^= bytes[i] ?? 0;
    for (let bit = 0; bit < 8; bit++) crc = crc & 1 ? (crc >>> 1) ^ 0xa001 : crc >>> 1;
  }
  return crc;
}

export function validateReadRequest(request: ReadRequest): void {
  const { unit, address, quantity } = request;
  if (!Number.isInteger(unit) || unit < 1 || unit > 247) throw new RangeError(`unit ${unit} outside 1…247`);
  if (request.function !== 0x03 && request.function !== 0x04)
    throw new RangeError(`function ${request.function} is not 03 or 04`);
  if (!Number.isInteger(address) || address < 0 || address > 0xffff)
    throw new RangeError(`address ${address} outside 0…65535`);
  if (
    !Number.isInteger(quantity) ||
    quantity < 1 ||
    quantity > MAX_READ_REGISTERS ||
    address + quantity > 0x10000
  )
    throw new RangeError(`quantity ${quantity} outside 1…${MAX_READ_REGISTERS} or past 65535`);
}

export function buildReadRequest(request: ReadRequest): Uint8Array {
  validateReadRequest(request);
  const frame = new Uint8Array(8);
  frame[0] = request.unit;
  frame[1] = request.function;
  frame[2] = request.address >> 8;
  frame[3] = request.address & 0xff;
  frame[4] = request.quantity >> 8;
  frame[5] = request.quantity & 0xff;
  const crc = crc16(frame, 6);
  frame[6] = crc & 0xff;
  frame[7] = crc >> 8;
  return frame;
}

/**
 * How long the response that starts with these bytes will be, once enough of it has arrived
 * to tell: exceptions are 5 bytes, 03/04 answers 5 + byte count. undefined = need more bytes.
 */
export function expectedResponseLength(
  received: Uint8Array,
  length: number = received.length,
): number | undefined {
  if (length < 2) return undefined;
  if ((received[1] ?? 0) & 0x80) return 5;
  if (length < 3) return undefined;
  return 5 + (received[2] ?? 0);
}

export function parseReadResponse(frame: Uint8Array, request: ReadRequest): ModbusReadResult {
  if (frame.length < 5) return failure("bad_response", `${frame.length}-byte frame is too short`);
  const expectedCrc = crc16(frame, frame.length - 2);
  const receivedCrc = (frame[frame.length - 2] ?? 0) | ((frame[frame.length - 1] ?? 0) << 8);
  if (expectedCrc !== receivedCrc)
    return failure(
      "crc_error",
      `CRC 0x${receivedCrc.toString(16)} received, 0x${expectedCrc.toString(16)} computed`,
    );
  const unit = frame[0] ?? 0;
  const fn = frame[1] ?? 0;
  if (unit !== request.unit)
    return failure("bad_response", `answer from unit ${unit}, asked ${request.unit}`);
  if (fn === (request.function | 0x80)) {
    const code = frame[2] ?? 0;
    const name = ModbusException[code] ?? "unknown exception";
    return {
      ok: false,
      error: { kind: "exception", exceptionCode: code, message: `exception ${code} (${name})` },
    };
  }
  if (fn !== request.function)
    return failure("bad_response", `function ${fn} answered, ${request.function} asked`);
  const byteCount = frame[2] ?? 0;
  if (byteCount !== request.quantity * 2 || frame.length !== 5 + byteCount)
    return failure("bad_response", `${byteCount} data bytes for ${request.quantity} registers`);
  const registers = new Uint16Array(request.quantity);
  for (let i = 0; i < request.quantity; i++)
    registers[i] = ((frame[3 + 2 * i] ?? 0) << 8) | (frame[4 + 2 * i] ?? 0);
  return { ok: true, registers };
}

/**
 * Word/byte order of a 32-bit float over two registers, named by where the IEEE 754 bytes
 * A (sign/exponent) … D (mantissa LSB) appear in register order:
 * ABCD big-endian, CDAB word-swapped ("little-endian word order"), BADC byte-swapped, DCBA reversed.
 */
export type WordOrder = "ABCD" | "CDAB" | "BADC" | "DCBA";

/** Position of A, B, C, D within the wire bytes for each order (frozen tables: readable from flash on XS). */
const FLOAT_BYTE_POSITIONS: Readonly<Record<WordOrder, readonly [number, number, number, number]>> =
  Object.freeze({
    ABCD: Object.freeze([0, 1, 2, 3] as const),
    CDAB: Object.freeze([2, 3, 0, 1] as const),
    BADC: Object.freeze([1, 0, 3, 2] as const),
    DCBA: Object.freeze([3, 2, 1, 0] as const),
  });

export function decodeFloat32(registers: Uint16Array, offset: number, order: WordOrder): number {
  const first = registers[offset] ?? 0;
  const second = registers[offset + 1] ?? 0;
  // This runs for every sample (on the board and in each emulated board): no arrays, buffers or closures per
  // call, so the IEEE 754 single is decoded by arithmetic (exact: a 24-bit significand times a power of two).
  const p = FLOAT_BYTE_POSITIONS[order];
  const bits =
    ((wireByte(first, second, p[0]) << 24) |
      (wireByte(first, second, p[1]) << 16) |
      (wireByte(first, second, p[2]) << 8) |
      wireByte(first, second, p[3])) >>>
    0;
  const sign = bits >>> 31 ? -1 : 1;
  const exponent = (bits >>> 23) & 0xff;
  const fraction = bits & 0x7fffff;
  if (exponent === 0xff) return fraction ? Number.NaN : sign * Number.POSITIVE_INFINITY;
  if (exponent === 0) return sign * fraction * 2 ** -149;
  return sign * (fraction | 0x800000) * 2 ** (exponent - 150);
}

/** Byte `position` of two registers on the wire: first >> 8, first & 0xff, second >> 8, second & 0xff. */
function wireByte(first: number, second: number, position: number): number {
  if (position === 0) return first >> 8;
  if (position === 1) return first & 0xff;
  return position === 2 ? second >> 8 : second & 0xff;
}

function failure(kind: ModbusErrorKind, message: string): ModbusReadResult {
  return { ok: false, error: { kind, message } };
}
