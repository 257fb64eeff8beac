import { createHash } from "node:crypto";
import { deflateSync } from "node:zlib";
import { describe, expect, it } from "vitest";
import { checksum, Esp32RomDouble } from "../../testkit/esp32-rom-double/esp32-rom-double";
import { SlipDecoder, slipEncode } from "../../testkit/esp32-rom-double/slip";

/** A minimal host side: frames requests like esptool, collects the double's frames. */
function link(double: Esp32RomDouble) {
  const decoder = new SlipDecoder();
  const frames: Uint8Array[] = [];
  const raw: number[] = [];
  const feed = double.attach((bytes) => {
    raw.push(...bytes);
    frames.push(...decoder.push(bytes));
  });
  const request = (op: number, data: Uint8Array, chk = 0): void => {
    const pkt = new Uint8Array(8 + data.length);
    const dv = new DataView(pkt.buffer);
    pkt[1] = op;
    dv.setUint16(2, data.length, true);
    dv.setUint32(4, chk, true);
    pkt.set(data, 8);
    feed(slipEncode(pkt));
  };
  const take = () => {
    const f = frames.shift();
    if (!f) throw new Error("no response");
    const dv = new DataView(f.buffer, f.byteOffset, f.byteLength);
    return {
      dir: f[0],
      op: f[1],
      len: dv.getUint16(2, true),
      value: dv.getUint32(4, true),
      data: f.subarray(8),
    };
  };
  return { request, take, frames, raw, feed };
}

const u32s = (...xs: number[]): Uint8Array => {
  const b = new Uint8Array(xs.length * 4);
  xs.forEach((x, i) => new DataView(b.buffer).setUint32(i * 4, x >>> 0, true));
  return b;
};
const SYNC = Uint8Array.from([0x07, 0x07, 0x12, 0x20, ...new Array<number>(32).fill(0x55)]);

describe("ESP32 ROM-loader double", () => {
  it("escapes and unescapes C0/DB in SLIP frames", () => {
    const payload = Uint8Array.of(0x01, 0xc0, 0xdb, 0x02, 0xdb, 0xdc);
    const wire = slipEncode(payload);
    expect(Array.from(wire)).toEqual([0xc0, 0x01, 0xdb, 0xdc, 0xdb, 0xdd, 0x02, 0xdb, 0xdd, 0xdc, 0xc0]);
    // Noise before a frame and empty frames between frames are ignored.
    expect(new SlipDecoder().push(Uint8Array.from([0x41, 0x42, ...wire, 0xc0, ...wire]))).toEqual([
      payload,
      payload,
    ]);
  });

  it("answers SYNC eight times with a ROM value and 4-byte status, and reads the chip magic and MAC", () => {
    const d = new Esp32RomDouble({ mac: Uint8Array.of(0xa4, 0xcf, 0x12, 0x01, 0x02, 0x03) });
    const l = link(d);
    l.request(0x08, SYNC);
    expect(l.frames).toHaveLength(8);
    const r = l.take();
    expect(r).toMatchObject({ dir: 1, op: 0x08, len: 4 });
    expect(r.value).not.toBe(0);
    expect(Array.from(r.data)).toEqual([0, 0, 0, 0]);
    l.frames.length = 0;
    l.request(0x0a, u32s(0x40001000));
    expect(l.take().value).toBe(0x00f01d83);
    l.request(0x0a, u32s(0x3ff5a004));
    l.request(0x0a, u32s(0x3ff5a008));
    const mac0 = l.take().value;
    const mac1 = l.take().value;
    expect([
      (mac1 >> 8) & 0xff,
      mac1 & 0xff,
      mac0 >>> 24,
      (mac0 >> 16) & 0xff,
      (mac0 >> 8) & 0xff,
      mac0 & 0xff,
    ]).toEqual([0xa4, 0xcf, 0x12, 0x01, 0x02, 0x03]);
  });

  it("rejects a RAM block with a wrong checksum (ROM status 01 07) and refuses unknown commands without echoing the op", () => {
    const l = link(new Esp32RomDouble());
    l.request(0x05, u32s(4, 1, 0x1800, 0x3ffe0000));
    expect(Array.from(l.take().data)).toEqual([0, 0, 0, 0]);
    const block = Uint8Array.of(1, 2, 3, 4);
    l.request(0x07, Uint8Array.from([...u32s(4, 0, 0, 0), ...block]), checksum(block) ^ 1);
    expect(Array.from(l.take().data)).toEqual([1, 0x07, 0, 0]);
    l.request(0x14, new Uint8Array(0));
    const unsupported = l.take();
    expect(unsupported.op).not.toBe(0x14);
    expect(Array.from(unsupported.data)).toEqual([1, 0x05, 0, 0]);
  });

  it("does not start a stub other than esptool-js's: MEM_END answers but no OHAI follows", () => {
    const d = new Esp32RomDouble();
    const l = link(d);
    l.request(0x06, u32s(0, 0x400a902c));
    expect(l.take().op).toBe(0x06);
    expect(l.frames).toHaveLength(0);
    expect(d.mode).toBe("rom");
  });

  it("inflates compressed blocks into flash and answers the MD5 the ROM way (32 hex characters)", () => {
    const d = new Esp32RomDouble();
    const l = link(d);
    const image = new Uint8Array(8192).map((_, i) => (i * 7) & 0xff);
    const z = deflateSync(image, { level: 9 });
    l.request(0x10, u32s(image.length, 2, 0x400, 0x9000));
    expect(Array.from(l.take().data)).toEqual([0, 0, 0, 0]);
    const half = Math.ceil(z.length / 2);
    [z.subarray(0, half), z.subarray(half)].forEach((part, seq) => {
      l.request(0x11, Uint8Array.from([...u32s(part.length, seq, 0, 0), ...part]), checksum(part));
      expect(Array.from(l.take().data)).toEqual([0, 0, 0, 0]);
    });
    l.request(0x12, u32s(1));
    expect(Array.from(l.take().data)).toEqual([0, 0, 0, 0]);
    expect(d.flash.subarray(0x9000, 0x9000 + image.length)).toEqual(image);
    l.request(0x13, u32s(0x9000, image.length, 0, 0));
    const md5 = l.take();
    expect(Buffer.from(md5.data.subarray(0, 32)).toString("latin1")).toBe(
      createHash("md5").update(image).digest("hex"),
    );
    expect(Array.from(md5.data.subarray(32))).toEqual([0, 0, 0, 0]);
  });
});
