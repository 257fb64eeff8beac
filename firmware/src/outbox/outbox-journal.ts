// The outbox's persistence: every reading the outbox queues is appended to the flash ring first, and the ring
// is told when a reading may be forgotten, so a reboot or a power cut loses nothing the store has not confirmed.
// At boot the readings the ring still holds from earlier boots are loaded ahead of the new ones, with their own
// boot, seq and sealed bytes (byte-identical, so the store keeps one copy of each).
//
// The RAM outbox is a bounded window onto the ring, which holds more (an hour at 1 Hz):
// - A reading is in exactly one of three places: the RAM outbox, the ring only ("spilled": the full outbox
//   dropped it, or there was no room for it at boot), or forgotten (acknowledged, confirmed or released).
//   The journal keeps the spilled ones as runs of seqs per boot, a few bytes however many there are.
// - When acknowledgements or confirmations free room in the outbox, spilled readings are read back from the ring and put back
//   into the outbox, oldest first, with their own seq, and go again: an outage longer than the RAM outbox
//   loses nothing while the ring holds it, without waiting for a reboot.
// - The ring forgets by prefix per boot ("forget through seq s"): s is one below the lowest seq of the boot
//   still in RAM or spilled, so memory does not grow with what was forgotten above a stuck reading. The
//   marker is written at the next append (at most one per reading); one lost to a power cut only makes the
//   board send again.
// - Readings of earlier boots take outbox seqs below 0, a block per boot in (boot, seq) order, so they go in
//   order ahead of the new boot's (whose readings keep seq = outbox seq).
// A spilled reading the ring has reclaimed (ring full) is dropped from the runs when a read-back finds it
// gone; the ring counts it (`ringDropped`).
import type { SeqRange } from "../telemetry/confirmation";
import FlashRing from "./flash-ring";
import type { FlashArea } from "./flash-area";
import { Outbox } from "./outbox";
import type { OutboxEntry, OutboxObserver } from "./outbox";

/** What the journal needs of an outbox item: the sealed payload (its bytes go to flash as they are). */
export interface JournalItem {
  topic: string;
  payload: ArrayBuffer;
}

export interface OutboxJournalOptions<T extends JournalItem> {
  flash: FlashArea;
  /** The boot whose readings the outbox will queue from now on. */
  boot: number;
  /** RAM outbox capacity (readings). */
  capacity: number;
  /** Rebuilds an outbox item from a reading read back from flash (its topic is the device's telemetry topic). */
  item: (payload: ArrayBuffer) => T;
  /** The largest payload (default the ring's 1024). */
  maxPayload?: number;
}

export interface JournalCounts {
  /** Readings of earlier boots found in the ring at mount / loaded into the outbox then. */
  recovered: number;
  loaded: number;
  /** Of those found, readings of the current boot or later (a reset boot counter): not sent. */
  skipped: number;
  /** Readings the full RAM outbox dropped (still in the ring). */
  ramDropped: number;
  /** Spilled readings read back from the ring into the outbox while running. */
  restored: number;
  /** Read-backs of the ring (each reads every live sector). */
  readBacks: number;
  /** Readings written to the ring this boot. */
  appended: number;
  /** Appends that failed (flash error): the reading is still sent, but not protected against a power cut. */
  appendFailures: number;
}

/** Seqs as sorted, disjoint, non-adjacent [from, to] runs. */
type Runs = [number, number][];

export default class OutboxJournal<T extends JournalItem> implements OutboxObserver<T> {
  readonly ring: FlashRing;
  readonly outbox: Outbox<T>;
  readonly boot: number;
  readonly counts: JournalCounts = {
    recovered: 0,
    loaded: 0,
    skipped: 0,
    ramDropped: 0,
    restored: 0,
    readBacks: 0,
    appended: 0,
    appendFailures: 0,
  };
  readonly #item: (payload: ArrayBuffer) => T;
  /** Read back once at least this much room is free, and leave this much for new readings. */
  readonly #refillAt: number;
  readonly #reserve: number;
  /** Earlier boots the ring still holds readings of (the ring is told to forget each once none is left). */
  readonly #earlier = new Set<number>();
  /** Outbox seq (< 0) → the earlier boot's reading it carries. */
  readonly #recovered = new Map<number, { boot: number; seq: number }>();
  /** Per earlier boot: its readings in the outbox, as [outbox seq, reading seq]. */
  readonly #byBoot = new Map<number, [number, number][]>();
  /** Per boot: the readings in the ring only. */
  readonly #spilled = new Map<number, Runs>();
  #spilledCount = 0;
  /** Per earlier boot: outbox seq = base + (seq - first). */
  readonly #blocks = new Map<number, { base: number; first: number }>();
  #dirty = false;

  /** Mounts the ring (recovering what it holds) and builds the outbox, earlier boots' readings first. */
  constructor(options: OutboxJournalOptions<T>) {
    this.boot = options.boot;
    this.#item = options.item;
    this.#reserve = options.capacity > 1 ? Math.max(1, Math.floor(options.capacity / 8)) : 0;
    this.#refillAt = Math.max(1, Math.floor(options.capacity / 4), this.#reserve + 1);
    this.ring = new FlashRing({
      flash: options.flash,
      ...(options.maxPayload !== undefined ? { maxPayload: options.maxPayload } : {}),
    });
    // Room is left for the new boot's first readings, so they do not push the loaded ones straight out.
    const room = Math.max(1, options.capacity - this.#reserve);
    const earlier: { boot: number; seq: number; payload: Uint8Array }[] = [];
    const spans = new Map<number, { first: number; last: number }>();
    for (const r of this.ring.readings()) {
      if (r.boot >= options.boot) {
        this.counts.skipped++;
        continue;
      }
      this.counts.recovered++;
      this.#earlier.add(r.boot);
      const span = spans.get(r.boot);
      if (!span) spans.set(r.boot, { first: r.seq, last: r.seq });
      else span.last = Math.max(span.last, r.seq);
      if (earlier.length < room) earlier.push(r);
      else this.#spill(r.boot, r.seq);
    }
    // The blocks end at -1, the latest boot's last: the new boot's readings start at 0.
    let base = 0;
    for (const boot of [...spans.keys()].sort((a, b) => b - a)) {
      const span = spans.get(boot)!;
      base -= span.last - span.first + 1;
      this.#blocks.set(boot, { base, first: span.first });
    }
    this.outbox = new Outbox<T>({ capacity: options.capacity });
    for (const r of earlier) {
      const outboxSeq = this.#outboxSeq(r.boot, r.seq);
      if (!this.outbox.restore(outboxSeq, options.item(exactBuffer(r.payload))))
        throw new Error("outbox journal: recovered readings misnumbered");
      this.#hold(outboxSeq, r.boot, r.seq);
    }
    this.counts.loaded = earlier.length;
    this.outbox.observe(this);
  }

  /** Readings dropped by the ring itself (its oldest sector reclaimed while they were unconfirmed). */
  get ringDropped(): number {
    return this.ring.dropped;
  }

  /** Readings in the ring only, waiting for room in the outbox. */
  get spilled(): number {
    return this.#spilledCount;
  }

  /** Whether readings of this earlier boot are held (a confirmation for it is routed here). */
  holds(boot: number): boolean {
    return boot !== this.boot && (this.#byBoot.has(boot) || this.#spilled.has(boot));
  }

  /** The store holds these seqs of an earlier boot: forgets them, in the outbox and spilled. Returns how many. */
  confirmEarlier(boot: number, ranges: readonly SeqRange[]): number {
    if (boot === this.boot) return 0;
    let removed = 0;
    const runs = this.#spilled.get(boot);
    if (runs)
      for (const r of ranges) {
        const n = removeRange(runs, r.from, r.to);
        if (n > 0) {
          removed += n;
          this.#spilledCount -= n;
          this.#dirty = true;
        }
      }
    if (runs && runs.length === 0) this.#spilled.delete(boot);
    const list = this.#byBoot.get(boot);
    if (!list) return removed;
    const local: SeqRange[] = [];
    for (const [outboxSeq, seq] of list)
      if (ranges.some((r) => r.from <= seq && seq <= r.to)) local.push({ from: outboxSeq, to: outboxSeq });
    return removed + (local.length ? this.outbox.confirm(local) : 0);
  }

  /** Writes the ring's pending "forget through" markers now (also done at every append). */
  flush(): void {
    if (!this.#dirty) return;
    this.#dirty = false;
    try {
      const floor = this.#floor(this.boot);
      if (floor > 0) this.ring.confirm(this.boot, floor - 1);
      for (const boot of [...this.#earlier]) {
        const floor = this.#floor(boot);
        if (floor === Infinity) {
          this.ring.confirm(boot, 0xffffffff);
          this.#earlier.delete(boot);
        } else if (floor > 0) this.ring.confirm(boot, floor - 1);
      }
    } catch {
      this.#dirty = true; // tried again at the next append
    }
  }

  // OutboxObserver: the outbox queued an entry (before it can be sent) or forgot one.
  queued(entry: OutboxEntry<T>): void {
    if (entry.seq < 0) return; // loaded from the ring at boot
    this.flush();
    try {
      this.ring.append(this.boot, entry.seq, new Uint8Array(entry.item.payload));
      this.counts.appended++;
    } catch {
      this.counts.appendFailures++;
    }
    this.#refill();
  }

  forgotten(entry: OutboxEntry<T>, why: "acked" | "confirmed" | "released" | "dropped"): void {
    let boot = this.boot;
    let seq = entry.seq;
    if (entry.seq < 0) {
      const r = this.#recovered.get(entry.seq);
      if (!r) return;
      this.#recovered.delete(entry.seq);
      const list = this.#byBoot.get(r.boot);
      if (list) {
        const i = list.findIndex(([s]) => s === entry.seq);
        if (i >= 0) list.splice(i, 1);
        if (list.length === 0) this.#byBoot.delete(r.boot);
      }
      boot = r.boot;
      seq = r.seq;
    }
    if (why === "dropped") {
      this.counts.ramDropped++;
      this.#spill(boot, seq);
    }
    this.#dirty = true;
  }

  freed(): void {
    this.#refill();
  }

  /** The lowest seq of `boot` still held (in RAM or spilled); Infinity for an earlier boot with none. */
  #floor(boot: number): number {
    let floor = boot === this.boot ? this.outbox.nextSeq : Infinity;
    const runs = this.#spilled.get(boot);
    if (runs && runs.length) floor = Math.min(floor, runs[0]![0]);
    if (boot === this.boot) {
      for (const e of this.outbox.pending())
        if (e.seq >= 0) {
          floor = Math.min(floor, e.seq);
          break;
        }
    } else for (const [, seq] of this.#byBoot.get(boot) ?? []) floor = Math.min(floor, seq);
    return floor;
  }

  #outboxSeq(boot: number, seq: number): number {
    if (boot === this.boot) return seq;
    const block = this.#blocks.get(boot)!;
    return block.base + (seq - block.first);
  }

  #hold(outboxSeq: number, boot: number, seq: number): void {
    this.#recovered.set(outboxSeq, { boot, seq });
    let list = this.#byBoot.get(boot);
    if (!list) this.#byBoot.set(boot, (list = []));
    list.push([outboxSeq, seq]);
  }

  #spill(boot: number, seq: number): void {
    let runs = this.#spilled.get(boot);
    if (!runs) this.#spilled.set(boot, (runs = []));
    if (addSeq(runs, seq)) this.#spilledCount++;
  }

  /** Reads spilled readings back from the ring into the outbox's free room, oldest first. */
  #refill(): void {
    const free = this.outbox.capacity - this.outbox.size;
    if (this.#spilledCount === 0 || free < this.#refillAt) return;
    let quota = free - this.#reserve;
    this.counts.readBacks++;
    // The ring yields readings in the order they were appended: by boot, then seq. A spilled reading the scan
    // has passed without finding was reclaimed by the ring (counted there).
    let stopBoot = Infinity;
    let stopSeq = Infinity;
    for (const r of this.ring.readings()) {
      const runs = this.#spilled.get(r.boot);
      if (!runs || !containsSeq(runs, r.seq)) continue;
      const outboxSeq = this.#outboxSeq(r.boot, r.seq);
      if (quota === 0 || !this.outbox.restore(outboxSeq, this.#item(exactBuffer(r.payload)))) {
        stopBoot = r.boot;
        stopSeq = r.seq;
        break;
      }
      if (r.boot !== this.boot) this.#hold(outboxSeq, r.boot, r.seq);
      removeRange(runs, r.seq, r.seq);
      this.#spilledCount--;
      this.counts.restored++;
      quota--;
    }
    // Whatever is still spilled below where the scan stopped is no longer in the ring.
    for (const [boot, runs] of this.#spilled) {
      if (boot < stopBoot) this.#spilledCount -= removeRange(runs, 0, Infinity);
      else if (boot === stopBoot) this.#spilledCount -= removeRange(runs, 0, stopSeq - 1);
      if (runs.length === 0) this.#spilled.delete(boot);
    }
    this.#dirty = true;
  }
}

function containsSeq(runs: Runs, seq: number): boolean {
  let lo = 0;
  let hi = runs.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const [from, to] = runs[mid]!;
    if (seq < from) hi = mid - 1;
    else if (seq > to) lo = mid + 1;
    else return true;
  }
  return false;
}

/** Adds one seq; false if it was there. Spills come mostly in order, so the last run is checked first. */
function addSeq(runs: Runs, seq: number): boolean {
  const last = runs[runs.length - 1];
  if (!last || seq > last[1] + 1) {
    runs.push([seq, seq]);
    return true;
  }
  if (seq === last[1] + 1) {
    last[1] = seq;
    return true;
  }
  if (containsSeq(runs, seq)) return false;
  let i = 0;
  while (runs[i]![1] < seq) i++;
  const run = runs[i]!;
  const prev = runs[i - 1];
  if (prev && prev[1] + 1 === seq && run[0] - 1 === seq) {
    prev[1] = run[1];
    runs.splice(i, 1);
  } else if (prev && prev[1] + 1 === seq) prev[1] = seq;
  else if (run[0] - 1 === seq) run[0] = seq;
  else runs.splice(i, 0, [seq, seq]);
  return true;
}

/** Removes from..to; returns how many seqs it removed. */
function removeRange(runs: Runs, from: number, to: number): number {
  let removed = 0;
  for (let i = 0; i < runs.length;) {
    const run = runs[i]!;
    if (run[1] < from) {
      i++;
      continue;
    }
    if (run[0] > to) break;
    const lo = Math.max(run[0], from);
    const hi = Math.min(run[1], to);
    removed += hi - lo + 1;
    if (run[0] < lo && run[1] > hi) {
      runs.splice(i + 1, 0, [hi + 1, run[1]]);
      run[1] = lo - 1;
      break;
    }
    if (run[0] < lo) {
      run[1] = lo - 1;
      i++;
    } else if (run[1] > hi) {
      run[0] = hi + 1;
      break;
    } else runs.splice(i, 1);
  }
  return removed;
}

function exactBuffer(bytes: Uint8Array): ArrayBuffer {
  return bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength
    ? (bytes.buffer as ArrayBuffer)
    : (bytes.slice().buffer as ArrayBuffer);
}
