// Which readings of each board the store holds durably, as the seq ranges the confirmation message carries
// (firmware/src/telemetry/confirmation). Pure and bounded: per device the two latest boots, per boot at most
// MAX_CONFIRMATION_RANGES ranges. In the steady state a boot is one range [first, highest contiguous]; a new
// range opens past a gap (a reading still on its way, or one the board dropped). Past the bound the lowest
// range is forgotten: its readings were confirmed at least once already, and a board that missed that
// confirmation resends them, which refreshes nothing (a known limit, in the README).
import { MAX_CONFIRMATION_RANGES } from "../../../firmware/src/telemetry/confirmation";
import type { SeqRange } from "../../../firmware/src/telemetry/confirmation";

const BOOTS_KEPT = 2;

export class DurableRanges {
  readonly #byDevice = new Map<string, Map<number, SeqRange[]>>();
  /** Devices with something new to confirm, and which boot. */
  readonly #dirty = new Map<string, Set<number>>();

  /** Records `seq` of (device, boot) as durable; true if it was not known. Marks the device for confirming. */
  add(sensorId: string, boot: number, seq: number): boolean {
    let boots = this.#byDevice.get(sensorId);
    if (!boots) this.#byDevice.set(sensorId, (boots = new Map()));
    let ranges = boots.get(boot);
    if (!ranges) {
      if (boots.size >= BOOTS_KEPT) {
        const oldest = Math.min(...boots.keys());
        if (boot < oldest) return false; // an older boot than both kept: nothing of it is still held on the board
        boots.delete(oldest);
      }
      boots.set(boot, (ranges = []));
    }
    const added = insert(ranges, seq);
    if (ranges.length > MAX_CONFIRMATION_RANGES) ranges.splice(0, ranges.length - MAX_CONFIRMATION_RANGES);
    this.markDirty(sensorId, boot);
    return added;
  }

  has(sensorId: string, boot: number, seq: number): boolean {
    const ranges = this.#byDevice.get(sensorId)?.get(boot);
    if (!ranges) return false;
    for (const r of ranges) {
      if (seq < r.from) return false;
      if (seq <= r.to) return true;
    }
    return false;
  }

  /** The device's board should hear about this boot again (it resent something already durable). */
  markDirty(sensorId: string, boot: number): void {
    let boots = this.#dirty.get(sensorId);
    if (!boots) this.#dirty.set(sensorId, (boots = new Set()));
    boots.add(boot);
  }

  /** Every (device, boot, ranges) marked since the last call; clears the marks. */
  takeDirty(): { sensorId: string; boot: number; ranges: readonly SeqRange[] }[] {
    const out: { sensorId: string; boot: number; ranges: readonly SeqRange[] }[] = [];
    for (const [sensorId, boots] of this.#dirty)
      for (const boot of boots) {
        const ranges = this.#byDevice.get(sensorId)?.get(boot);
        if (ranges && ranges.length > 0) out.push({ sensorId, boot, ranges: ranges.map((r) => ({ ...r })) });
      }
    this.#dirty.clear();
    return out;
  }

  get devices(): number {
    return this.#byDevice.size;
  }
}

/** Inserts seq into sorted, disjoint, non-adjacent ranges, merging neighbours; false if already there. */
function insert(ranges: SeqRange[], seq: number): boolean {
  // Readings mostly arrive in order: look from the end.
  let i = ranges.length - 1;
  while (i >= 0 && ranges[i]!.from > seq) i--;
  const before = i >= 0 ? ranges[i]! : undefined;
  if (before && seq <= before.to) return false;
  const after = ranges[i + 1];
  const joinsBefore = before !== undefined && before.to + 1 === seq;
  const joinsAfter = after !== undefined && after.from - 1 === seq;
  if (joinsBefore && joinsAfter) {
    before.to = after.to;
    ranges.splice(i + 1, 1);
  } else if (joinsBefore) before.to = seq;
  else if (joinsAfter) after.from = seq;
  else ranges.splice(i + 1, 0, { from: seq, to: seq });
  return true;
}
