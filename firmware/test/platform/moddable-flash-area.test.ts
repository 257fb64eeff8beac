import { describe, expect, it } from "vitest";
import FlashRing from "../../src/outbox/flash-ring";
import ModdableFlashArea, { type ModdableFlash } from "../../src/platform/moddable-flash-area";
import NorFlashModel from "../models/nor-flash-model";

/** Moddable's Flash over the NOR model, with the SDK's signatures: read returns an ArrayBuffer, write takes a length. */
function moddableFlash(model: NorFlashModel, partitionBytes: number): ModdableFlash {
  return {
    read: (offset, byteLength) => model.read(offset, byteLength).slice().buffer,
    write: (offset, byteLength, buffer) => {
      // The SDK's esp32 write takes the buffer with xsmcToArrayBuffer: a typed array is not accepted.
      if (!(buffer instanceof ArrayBuffer)) throw new TypeError("flash write: not an ArrayBuffer");
      model.write(offset, new Uint8Array(buffer, 0, byteLength));
    },
    erase: (sector) => model.erase(sector),
    byteLength: partitionBytes,
    blockSize: model.sectorSize,
  };
}

describe("Moddable flash adapter", () => {
  it("carries the ring over Moddable's Flash API and uses whole sectors only", () => {
    const model = new NorFlashModel({ sectors: 4 });
    const area = new ModdableFlashArea({ flash: moddableFlash(model, 4 * 4096 + 100) });
    expect(area.byteLength).toBe(4 * 4096);
    const ring = new FlashRing({ flash: area });
    ring.append(2, 0, new Uint8Array([1, 2, 3]));
    ring.append(2, 1, new Uint8Array([4]));
    ring.confirm(2, 0);
    const again = new FlashRing({ flash: new ModdableFlashArea({ flash: moddableFlash(model, 4 * 4096) }) });
    expect([...again.readings()].map((r) => [r.seq, [...r.payload]])).toEqual([[1, [4]]]);
    expect(() => area.write(2, new Uint8Array(4))).toThrow(/4-byte/);
  });
});
