// The outbox's persistence: every reading the outbox queues is appended to the flash ring first, and the ring
// is told when a reading may be forgotten, so a reboot or a power cut loses nothing the store has not confirmed.
// At boot the readings the ring still holds from earlier boots are loaded ahead of the new ones, with their own
// boot, seq and sealed bytes (byte-identical, so the store keeps one copy of each).
//
// The RAM outbox stays bounded and the ring's capacity is its own:
// - Recovered readings take the outbox sequence numbers just below 0 (the new boot's readings start at 0 and
//   keep their seq = outbox seq), at most the outbox's capacity of them; the rest stay in the ring for the
//   next boot.
// - A reading the full RAM outbox drops is still in the ring: the ring is not told to forget it, so it is sent
//   again after the next boot (or lost only if the ring itself fills, counted there).
// - The ring's confirmations are prefixes per boot: it is told "forget through seq s" once every reading of the
//   boot up to s may be forgotten (acknowledged, confirmed or released). The marker is written at the next
//   append (at most one per reading); a marker lost to a power cut only makes the board send again.
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

/** Forgotten seqs tracked above a stuck prefix (a reading dropped from RAM) before that prefix is given up. */
const MAX_TRACKED = 4096;

interface BootTrack {
  /** The lowest seq of this boot not yet known forgettable; the ring may forget everything below. */
  floor: number;
  /** Forgettable seqs above the floor. */
  gone: Set<number>;
  /** The highest seq the ring was last told to forget through (-1: none). */
  written: number;
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
  /** Readings of earlier boots found in the ring at mount / loaded into the outbox. */
  recovered: number;
  loaded: number;
  /** Of those found, readings of the current boot or later (a reset boot counter): not sent. */
  skipped: number;
  /** Readings the full RAM outbox dropped (still in the ring). */
  ramDropped: number;
  /** Readings given up because they stayed unsent while MAX_TRACKED later ones were forgotten. */
  abandoned: number;
  /** Readings written to the ring this boot. */
  appended: number;
  /** Appends that failed (flash error): the reading is still sent, but not protected against a power cut. */
  appendFailures: number;
}

export default class OutboxJournal<T extends JournalItem> implements OutboxObserver<T> {
  readonly ring: FlashRing;
  readonly outbox: Outbox<T>;
  readonly boot: number;
  readonly counts: JournalCounts = {
    recovered: 0,
    loaded: 0,
    skipped: 0,
    ramDropped: 0,
    abandoned: 0,
    appended: 0,
    appendFailures: 0,
  };
  readonly #tracks = new Map<number, BootTrack>();
  /** Outbox seq (< 0) → the earlier boot's reading it carries. */
  readonly #recovered = new Map<number, { boot: number; seq: number }>();
  /** Per earlier boot: its readings in the outbox, as [outbox seq, reading seq], in order. */
  readonly #byBoot = new Map<number, [number, number][]>();
  #dirty = false;

  /** Mounts the ring (recovering what it holds) and builds the outbox, earlier boots' readings first. */
  constructor(options: OutboxJournalOptions<T>) {
    this.boot = options.boot;
    this.ring = new FlashRing({
      flash: options.flash,
      ...(options.maxPayload !== undefined ? { maxPayload: options.maxPayload } : {}),
    });
    const earlier: { boot: number; seq: number; payload: Uint8Array }[] = [];
    for (const r of this.ring.readings()) {
      if (r.boot >= options.boot) {
        this.counts.skipped++;
        continue;
      }
      this.counts.recovered++;
      // Every boot found gets a track from its first reading held, loaded or not: its prefix only moves
      // over readings forgotten, so the ones left in flash stay there.
      if (!this.#tracks.has(r.boot))
        this.#tracks.set(r.boot, { floor: r.seq, gone: new Set(), written: r.seq - 1 });
      if (earlier.length < options.capacity) earlier.push(r);
    }
    this.outbox = new Outbox<T>({ capacity: options.capacity, firstSeq: -earlier.length });
    for (const r of earlier) {
      const entry = this.outbox.enqueue(() => options.item(exactBuffer(r.payload)));
      this.#recovered.set(entry.seq, { boot: r.boot, seq: r.seq });
      let list = this.#byBoot.get(r.boot);
      if (!list) this.#byBoot.set(r.boot, (list = []));
      list.push([entry.seq, r.seq]);
    }
    this.counts.loaded = earlier.length;
    if (this.outbox.nextSeq !== 0) throw new Error("outbox journal: recovered readings misnumbered");
    this.#tracks.set(options.boot, { floor: 0, gone: new Set(), written: -1 });
    this.outbox.observe(this);
  }

  /** Readings dropped by the ring itself (its oldest sector reclaimed while they were unconfirmed). */
  get ringDropped(): number {
    return this.ring.dropped;
  }

  /** Whether readings of this earlier boot are in the outbox (a confirmation for it is routed here). */
  holds(boot: number): boolean {
    return boot !== this.boot && (this.#byBoot.get(boot)?.length ?? 0) > 0;
  }

  /** The store holds these seqs of an earlier boot: forgets those in the outbox. Returns how many. */
  confirmEarlier(boot: number, ranges: readonly SeqRange[]): number {
    const list = this.#byBoot.get(boot);
    if (!list || boot === this.boot) return 0;
    const local: SeqRange[] = [];
    for (const [outboxSeq, seq] of list) {
      if (!ranges.some((r) => r.from <= seq && seq <= r.to)) continue;
      const last = local[local.length - 1];
      if (last && last.to + 1 === outboxSeq) last.to = outboxSeq;
      else local.push({ from: outboxSeq, to: outboxSeq });
    }
    return local.length ? this.outbox.confirm(local) : 0;
  }

  /** Writes the ring's pending "forget through" markers now (also done at every append). */
  flush(): void {
    if (!this.#dirty) return;
    this.#dirty = false;
    for (const [boot, t] of this.#tracks) {
      if (t.floor - 1 <= t.written) continue;
      try {
        this.ring.confirm(boot, t.floor - 1);
        t.written = t.floor - 1;
      } catch {
        this.#dirty = true; // tried again at the next append
      }
    }
    // An earlier boot whose readings are all forgotten needs no track any more.
    for (const [boot, t] of this.#tracks)
      if (boot !== this.boot && t.gone.size === 0 && !this.#byBoot.has(boot) && t.written >= t.floor - 1)
        this.#tracks.delete(boot);
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
      return; // still in the ring: it goes again after the next boot
    }
    const t = this.#tracks.get(boot);
    if (!t || seq < t.floor) return;
    if (seq !== t.floor) {
      t.gone.add(seq);
      if (t.gone.size > MAX_TRACKED) {
        // The prefix is stuck on readings the RAM outbox dropped long ago: give them up.
        let min = Infinity;
        for (const s of t.gone) if (s < min) min = s;
        this.counts.abandoned += min - t.floor;
        t.floor = min;
      } else return;
    }
    t.gone.delete(t.floor);
    t.floor++;
    while (t.gone.delete(t.floor)) t.floor++;
    this.#dirty = true;
  }
}

function exactBuffer(bytes: Uint8Array): ArrayBuffer {
  return bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength
    ? (bytes.buffer as ArrayBuffer)
    : (bytes.slice().buffer as ArrayBuffer);
}
