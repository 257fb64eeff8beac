/**
 * ESP-IDF partition table (flash 0x8000, 32-byte entries: magic AA 50, type, subtype, offset, size,
 * label[16], flags; an MD5 entry EB EB …; FF FF ends it). Only what provisioning needs: where the NVS is.
 */
import { createHash } from "node:crypto";

export const PARTITION_TABLE_OFFSET = 0x8000;
export const PARTITION_TABLE_SIZE = 0xc00;
/** Moddable's default ESP32 table (build/devices/esp32/xsProj-esp32/partitions.csv). */
export const MODDABLE_NVS = { offset: 0x9000, size: 0x6000 } as const;

const TYPE_DATA = 0x01;
const SUBTYPE_NVS = 0x02;

export interface PartitionEntry {
  label: string;
  type: number;
  subtype: number;
  offset: number;
  size: number;
}

export type PartitionTableResult =
  { ok: true; entries: PartitionEntry[] } | { ok: false; reason: "blank" | "invalid"; message: string };

export function parsePartitionTable(bytes: Uint8Array): PartitionTableResult {
  const entries: PartitionEntry[] = [];
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let off = 0; off + 32 <= bytes.length; off += 32) {
    const m0 = bytes[off];
    const m1 = bytes[off + 1];
    if (m0 === 0xff && m1 === 0xff) {
      return entries.length > 0
        ? { ok: true, entries }
        : { ok: false, reason: "blank", message: "no partition table at 0x8000 (flash erased)" };
    }
    if (m0 === 0xeb && m1 === 0xeb) {
      const digest = createHash("md5").update(bytes.subarray(0, off)).digest();
      if (!digest.equals(Buffer.from(bytes.subarray(off + 16, off + 32)))) {
        return { ok: false, reason: "invalid", message: "partition table MD5 does not match its entries" };
      }
      continue;
    }
    if (m0 !== 0xaa || m1 !== 0x50)
      return { ok: false, reason: "invalid", message: `partition table entry ${off / 32} has no AA50 magic` };
    const labelBytes = bytes.subarray(off + 12, off + 28);
    const end = labelBytes.indexOf(0);
    entries.push({
      type: bytes[off + 2]!,
      subtype: bytes[off + 3]!,
      offset: dv.getUint32(off + 4, true),
      size: dv.getUint32(off + 8, true),
      label: Buffer.from(labelBytes.subarray(0, end < 0 ? 16 : end)).toString("latin1"),
    });
  }
  return { ok: true, entries };
}

/** The NVS partition the firmware's `nvs_flash_init` uses: the one labelled "nvs", else the first NVS partition. */
export function findNvsPartition(entries: readonly PartitionEntry[]): PartitionEntry | undefined {
  const nvs = entries.filter((e) => e.type === TYPE_DATA && e.subtype === SUBTYPE_NVS);
  return nvs.find((e) => e.label === "nvs") ?? nvs[0];
}

/** Builds a table (used by tests and the board double to model a flashed board). */
export function buildPartitionTable(entries: readonly PartitionEntry[]): Uint8Array {
  const out = new Uint8Array(PARTITION_TABLE_SIZE).fill(0xff);
  const dv = new DataView(out.buffer);
  entries.forEach((e, i) => {
    const off = i * 32;
    out[off] = 0xaa;
    out[off + 1] = 0x50;
    out[off + 2] = e.type;
    out[off + 3] = e.subtype;
    dv.setUint32(off + 4, e.offset, true);
    dv.setUint32(off + 8, e.size, true);
    out.fill(0, off + 12, off + 28);
    out.set(Buffer.from(e.label, "latin1").subarray(0, 16), off + 12);
    dv.setUint32(off + 28, 0, true);
  });
  const md5At = entries.length * 32;
  out[md5At] = 0xeb;
  out[md5At + 1] = 0xeb;
  out.set(createHash("md5").update(out.subarray(0, md5At)).digest(), md5At + 16);
  return out;
}

/** Moddable's default table, as an ESP32 built with `mcconfig -d -m -p esp32` carries it. */
export const MODDABLE_PARTITIONS: readonly PartitionEntry[] = [
  { label: "nvs", type: TYPE_DATA, subtype: SUBTYPE_NVS, offset: 0x9000, size: 0x6000 },
  { label: "phy_init", type: TYPE_DATA, subtype: 0x01, offset: 0xf000, size: 0x1000 },
  { label: "factory", type: 0x00, subtype: 0x00, offset: 0x10000, size: 0x300000 },
];
