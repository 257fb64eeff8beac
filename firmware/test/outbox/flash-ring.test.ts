import { crc32 as zlibCrc32 } from "node:zlib";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import FlashRing from "../../src/outbox/flash-ring";
import { crc32, ESP_CRC_SEED } from "../../src/util/crc32";
import NorFlashModel, { PowerCut } from "../models/nor-flash-model";
import { checkRingProperty } from "./ring-property";

const bytes = (...b: number[]) => new Uint8Array(b);
const seqs = (ring: FlashRing) => [...ring.readings()].map((r) => `${r.boot}/${r.seq}`);

describe("crc32", () => {
  it("is ESP-ROM's CRC: equal to zlib.crc32(bytes, 0xffffffff), and to the IEEE CRC with seed 0", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (b) => {
        expect(crc32(b, ESP_CRC_SEED)).toBe(zlibCrc32(Buffer.from(b), 0xffffffff) >>> 0);
        expect(crc32(b)).toBe(zlibCrc32(Buffer.from(b)) >>> 0);
      }),
    );
    expect(crc32(new TextEncoder().encode("123456789"))).toBe(0xcbf43926);
  });
});

describe("NOR flash model", () => {
  it("refuses writes that set bits, unaligned writes, and tears a write at the cut", () => {
    const flash = new NorFlashModel({ sectors: 2, sectorSize: 256 });
    flash.write(0, bytes(0x0f, 0xff, 0x00, 0xf0));
    expect(() => flash.write(0, bytes(0xff, 0xff, 0xff, 0xff))).toThrow(/set bits/);
    expect(() => flash.write(2, bytes(0, 0))).toThrow(/unaligned/);
    flash.cutAfter(6);
    expect(() => flash.write(4, new Uint8Array(8))).toThrow(PowerCut);
    expect([...flash.bytes.subarray(4, 12)]).toEqual([0, 0, 0, 0, 0, 0, 0xff, 0xff]);
    expect(() => flash.read(0, 4)).toThrow(PowerCut);
    flash.powerOn();
    flash.erase(0);
    expect(flash.read(0, 12).every((b) => b === 0xff)).toBe(true);
  });
});

describe("flash ring", () => {
  it("keeps readings across a remount until confirmed, per boot", () => {
    const flash = new NorFlashModel({ sectors: 4, sectorSize: 4096 });
    const ring = new FlashRing({ flash });
    for (let s = 0; s < 5; s++) ring.append(7, s, bytes(s, s, s));
    ring.confirm(7, 2);
    const again = new FlashRing({ flash });
    expect(seqs(again)).toEqual(["7/3", "7/4"]);
    expect([...again.readings()][0]!.payload).toEqual(bytes(3, 3, 3));
    again.append(8, 0, bytes(9));
    again.confirm(7, 99); // clamped to what boot 7 appended
    expect(seqs(new FlashRing({ flash }))).toEqual(["8/0"]);
    again.append(7, 5, bytes(1)); // 5 > 4, the clamp: it is not confirmed
    expect(seqs(new FlashRing({ flash }))).toEqual(["8/0", "7/5"]);
  });

  it("drops the oldest when full, counts them, and keeps the newest", () => {
    const flash = new NorFlashModel({ sectors: 4, sectorSize: 256 });
    const ring = new FlashRing({ flash, maxPayload: 64 });
    const perSector = Math.floor((256 - 12) / FlashRing.recordSize(16));
    for (let s = 0; s < 100; s++) ring.append(1, s, new Uint8Array(16).fill(s));
    expect(ring.unconfirmed + ring.dropped).toBe(100);
    expect(ring.unconfirmed).toBeGreaterThanOrEqual(3 * perSector);
    const held = [...new FlashRing({ flash, maxPayload: 64 }).readings()].map((r) => r.seq);
    expect(held).toEqual(Array.from({ length: ring.unconfirmed }, (_, i) => 100 - ring.unconfirmed + i));
  });

  it("drops nothing while confirmations keep up, and wears every sector evenly", () => {
    const flash = new NorFlashModel({ sectors: 16, sectorSize: 4096 });
    const ring = new FlashRing({ flash });
    for (let s = 0; s < 20_000; s++) {
      ring.append(3, s, new Uint8Array(257).fill(s & 0xff));
      if (s >= 10) ring.confirm(3, s - 10);
    }
    expect(ring.dropped).toBe(0);
    expect(seqs(new FlashRing({ flash }))).toHaveLength(10);
    const wear = flash.erasesPerSector;
    expect(Math.max(...wear) - Math.min(...wear)).toBeLessThanOrEqual(1);
  });

  it("starts a fresh sector after a torn record rather than writing over partly programmed bytes", () => {
    const flash = new NorFlashModel({ sectors: 3, sectorSize: 256 });
    const mount = () => new FlashRing({ flash, maxPayload: 64 });
    const ring = mount();
    ring.append(1, 0, bytes(1, 2, 3, 4));
    flash.cutAfter(10); // inside the next record's body
    expect(() => ring.append(1, 1, bytes(5, 6, 7, 8))).toThrow(PowerCut);
    flash.powerOn();
    const after = mount();
    expect(seqs(after)).toEqual(["1/0"]);
    after.append(2, 0, bytes(9)); // would throw "set bits" if it reused the torn space
    expect(seqs(mount())).toEqual(["1/0", "2/0"]);
  });

  it("recovers exactly the fully written, unconfirmed readings after power cuts at any byte (property)", () => {
    checkRingProperty(FlashRing, { numRuns: 300 });
  });
});
