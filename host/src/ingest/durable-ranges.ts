// Which readings of each board the store holds durably, as the seq ranges the confirmation message carries
// (firmware/src/telemetry/confirmation). Pure and bounded: per device the two latest boots, per boot at most
// MAX_KEPT_RANGES ranges. In the steady state a boot is one range [first, highest contiguous]; a new range
// opens past a gap (a reading still on its way, refused as rate_exceeded, or one the board dropped).
//
// A confirmation carries at most MAX_CONFIRMATION_RANGES ranges, so what changed since the last round goes out
// in as many messages as it takes. It used to be one message with the newest 8, the lower ones forgotten: on
// Moddable's simulator a board back from a 14-minute outage had its backlog cut by rate_exceeded refusals into
// dozens of ranges before the first round, so the ingest forgot its first 305 stored readings without ever
// confirming them; the board resent them first every minute, those duplicates spent its allowance, and its
// backlog never got in. Past MAX_KEPT_RANGES the lowest range is still forgotten (it went out at least once when
// it changed; a board that missed that resends it and the duplicate restates the boot, see markDirty).
import { MAX_CONFIRMATION_RANGES } from "../../../firmware/src/telemetry/confirmation";
import type { SeqRange } from "../../../firmware/src/telemetry/confirmation";

/** Ranges kept per boot: 8 confirmation messages' worth. */
export const MAX_KEPT_RANGES = 8 * MAX_CONFIRMATION_RANGES;
const BOOTS_KEPT = 2;

/** A range and whether its board has been told of it as it is now. */
interface KeptRange extends SeqRange {
  fresh: boolean;
}

export class DurableRanges {
  readonly #byDevice = new Map<string, Map<number, KeptRange[]>>();
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
    if (!added) return false;
    if (ranges.length > MAX_KEPT_RANGES) ranges.splice(0, ranges.length - MAX_KEPT_RANGES);
    this.#mark(sensorId, boot);
    return true;
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

  /**
   * The device's board should hear about all of this boot again: it resent something already durable (it
   * missed a confirmation), or the last one could not be published.
   */
  markDirty(sensorId: string, boot: number): void {
    for (const r of this.#byDevice.get(sensorId)?.get(boot) ?? []) r.fresh = true;
    this.#mark(sensorId, boot);
  }

  #mark(sensorId: string, boot: number): void {
    let boots = this.#dirty.get(sensorId);
    if (!boots) this.#dirty.set(sensorId, (boots = new Set()));
    boots.add(boot);
  }

  /**
   * The confirmations to send: for every (device, boot) marked since the last call, the ranges that changed,
   * at most MAX_CONFIRMATION_RANGES to an entry (one message each). Clears the marks.
   */
  takeDirty(): { sensorId: string; boot: number; ranges: readonly SeqRange[] }[] {
    const out: { sensorId: string; boot: number; ranges: readonly SeqRange[] }[] = [];
    for (const [sensorId, boots] of this.#dirty)
      for (const boot of boots) {
        const fresh: SeqRange[] = [];
        for (const r of this.#byDevice.get(sensorId)?.get(boot) ?? [])
          if (r.fresh) {
            r.fresh = false;
            fresh.push({ from: r.from, to: r.to });
          }
        for (let i = 0; i < fresh.length; i += MAX_CONFIRMATION_RANGES)
          out.push({ sensorId, boot, ranges: fresh.slice(i, i + MAX_CONFIRMATION_RANGES) });
      }
    this.#dirty.clear();
    return out;
  }

  get devices(): number {
    return this.#byDevice.size;
  }
}

/** Inserts seq into sorted, disjoint, non-adjacent ranges, merging neighbours; false if already there. */
function insert(ranges: KeptRange[], seq: number): boolean {
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
    before.fresh = true;
    ranges.splice(i + 1, 1);
  } else if (joinsBefore) {
    before.to = seq;
    before.fresh = true;
  } else if (joinsAfter) {
    after.from = seq;
    after.fresh = true;
  } else ranges.splice(i + 1, 0, { from: seq, to: seq, fresh: true });
  return true;
}
