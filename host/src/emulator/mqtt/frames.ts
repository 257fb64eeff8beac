/**
 * The few MQTT 3.1.1 packets an emulated board sends on every message, encoded by hand (one allocation, no
 * intermediate objects), and a splitter for the packets it receives. CONNECT and SUBSCRIBE, sent rarely,
 * go through mqtt-packet.
 */
export const PacketType = {
  CONNACK: 2,
  PUBLISH: 3,
  PUBACK: 4,
  SUBACK: 9,
  PINGRESP: 13,
} as const;

export const PINGREQ = Buffer.from([0xc0, 0x00]);
export const DISCONNECT = Buffer.from([0xe0, 0x00]);

function remainingLengthBytes(n: number): number {
  return n < 128 ? 1 : n < 16384 ? 2 : n < 2097152 ? 3 : 4;
}

function writeRemainingLength(buf: Buffer, offset: number, n: number): number {
  do {
    let byte = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) byte |= 0x80;
    buf[offset++] = byte;
  } while (n > 0);
  return offset;
}

/** PUBLISH with QoS 0 (packetId ignored) or 1. `topic` is pre-encoded UTF-8. */
export function encodePublish(
  topic: Buffer,
  payload: Uint8Array,
  qos: 0 | 1,
  retain: boolean,
  packetId: number,
  dup: boolean,
): Buffer {
  const remaining = 2 + topic.length + (qos > 0 ? 2 : 0) + payload.length;
  const buf = Buffer.allocUnsafe(1 + remainingLengthBytes(remaining) + remaining);
  buf[0] = 0x30 | (dup ? 0x08 : 0) | (qos << 1) | (retain ? 1 : 0);
  let o = writeRemainingLength(buf, 1, remaining);
  buf.writeUInt16BE(topic.length, o);
  o += 2;
  topic.copy(buf, o);
  o += topic.length;
  if (qos > 0) {
    buf.writeUInt16BE(packetId, o);
    o += 2;
  }
  buf.set(payload, o);
  return buf;
}

export function encodePuback(packetId: number): Buffer {
  return Buffer.from([0x40, 0x02, packetId >> 8, packetId & 0xff]);
}

export interface InboundPacket {
  type: number;
  flags: number;
  body: Buffer;
}

/** Splits a byte stream into packets; keeps a partial packet between chunks. */
export class FrameSplitter {
  #pending: Buffer | null = null;

  /** Calls `onPacket` for each complete packet; returns false on a malformed length. */
  push(chunk: Buffer, onPacket: (type: number, flags: number, body: Buffer) => void): boolean {
    const buf = this.#pending ? Buffer.concat([this.#pending, chunk]) : chunk;
    this.#pending = null;
    let o = 0;
    while (o < buf.length) {
      if (buf.length - o < 2) break;
      let len = 0;
      let mul = 1;
      let i = o + 1;
      let complete = false;
      for (; i < buf.length && i < o + 5; i++) {
        const b = buf[i]!;
        len += (b & 0x7f) * mul;
        mul *= 128;
        if ((b & 0x80) === 0) {
          complete = true;
          i++;
          break;
        }
      }
      if (!complete) {
        if (i >= o + 5) return false;
        break;
      }
      if (buf.length - i < len) break;
      const head = buf[o]!;
      onPacket(head >> 4, head & 0x0f, buf.subarray(i, i + len));
      o = i + len;
    }
    if (o < buf.length) this.#pending = Buffer.from(buf.subarray(o));
    return true;
  }
}
