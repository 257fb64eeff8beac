// When may the ingest tell a board that a reading is durably stored? VictoriaMetrics answers 204 while the
// points are still in its memory buffers; a SIGKILL in the next seconds loses them, and no API says when
// they reach disk (`/internal/force_flush` only makes them searchable). Measured on Debian's 1.79 with
// `npm run bench -- durability`: nothing survives a kill 0–5 s after the write, everything 10 s or more after.
// The rule, pure and I/O-free: a write is durable once the same store process (the same incarnation, see
// StoreIncarnation) has been seen alive at least `horizonMs` after it. A changed incarnation means the
// process was replaced: writes its predecessor was not seen to outlive by the
// horizon come back to be written again (the store absorbs the duplicates: same series, same timestamp).
// The cost is latency and memory: each write is held for the horizon (rate × horizon items).

export interface DurableHorizonOptions {
  /** How long the store must be seen alive after a write before the write counts as durable. */
  horizonMs: number;
}

interface Held<T> {
  items: T[];
  atMs: number;
  incarnation: number;
}

export interface HorizonVerdict<T> {
  /** Durable: may be confirmed to the boards. */
  durable: T[];
  /** Possibly lost with a store process that is gone: write them again. */
  rewrite: T[];
}

export default class DurableHorizon<T> {
  readonly #horizonMs: number;
  #held: Held<T>[] = [];
  #pending = 0;
  /** The last time the store was seen alive, and as which process. */
  #seen: { incarnation: number; atMs: number } | undefined;

  constructor(options: DurableHorizonOptions) {
    if (!(options.horizonMs >= 0)) throw new RangeError("durable horizon: horizonMs must be ≥ 0");
    this.#horizonMs = options.horizonMs;
  }

  /** Items not yet durable. */
  get pending(): number {
    return this.#pending;
  }

  /**
   * The store accepted `items` (2xx) at `atMs`. `incarnation` is the store process's incarnation as last read
   * before the write: if the process was replaced in between, the next observe() sees a different
   * incarnation and the items are written again, which is safe.
   */
  written(items: T[], atMs: number, incarnation: number): void {
    if (items.length === 0) return;
    const last = this.#held[this.#held.length - 1];
    if (last && atMs < last.atMs)
      throw new RangeError("durable horizon: writes must be recorded in time order");
    this.#held.push({ items, atMs, incarnation });
    this.#pending += items.length;
  }

  /**
   * The store answered as incarnation `incarnation`; `nowMs` is when the request was sent
   * (the process was alive at some moment after it, never before).
   */
  observe(nowMs: number, incarnation: number): HorizonVerdict<T> {
    const durable: T[] = [];
    const rewrite: T[] = [];
    const previous = this.#seen;
    const kept: Held<T>[] = [];
    for (const h of this.#held) {
      if (h.incarnation === incarnation) {
        if (nowMs - h.atMs >= this.#horizonMs) durable.push(...h.items);
        else kept.push(h);
      } else if (
        previous &&
        previous.incarnation === h.incarnation &&
        previous.atMs - h.atMs >= this.#horizonMs
      ) {
        // Its process is gone, but was seen alive long enough after the write.
        durable.push(...h.items);
      } else rewrite.push(...h.items);
    }
    this.#held = kept;
    this.#pending -= durable.length + rewrite.length;
    if (!previous || previous.incarnation !== incarnation || nowMs >= previous.atMs)
      this.#seen = { incarnation, atMs: nowMs };
    return { durable, rewrite };
  }
}

/**
 * Which store process answered. `process_start_time_seconds` has a resolution of one second, and a
 * SIGKILLed VictoriaMetrics can be back within that second (seen in the durability bench), so the start
 * time alone can miss a restart. `vm_rows_inserted_total` (all types) counts from zero in each process:
 * it going down also means a new process. The incarnation number goes up whenever either says so.
 * Known gap, measured: on 1.79 that counter (like `vm_rows_added_to_storage_total`) moves about a second
 * after the 204, so a kill and restart within one wall-clock second, within a second of the write, is
 * invisible in /metrics (the bench's "restart seen" column shows NO for some 0 s trials). Closing it needs a
 * read-back of the batch when it comes due (is every point still there?), which is not built here.
 */
export class StoreIncarnation {
  #n = 0;
  #last: { startTime: number; rows: number } | undefined;

  observe(sample: { startTime: number; rows: number }): number {
    const last = this.#last;
    if (last && (sample.startTime !== last.startTime || sample.rows < last.rows)) this.#n++;
    this.#last = sample;
    return this.#n;
  }
}

/** The sum of every sample of `name`, whatever its labels, in a Prometheus text exposition; undefined if none. */
export function metricSum(metricsText: string, name: string): number | undefined {
  let sum: number | undefined;
  for (const m of metricsText.matchAll(new RegExp(`^${name}(?:\\{[^}]*\\})?\\s+([0-9.eE+-]+)\\s*$`, "gm"))) {
    const v = Number(m[1]);
    if (Number.isFinite(v)) sum = (sum ?? 0) + v;
  }
  return sum;
}

/** What StoreIncarnation needs from /metrics, or undefined if the exposition lacks it. */
export function incarnationSample(metricsText: string): { startTime: number; rows: number } | undefined {
  const startTime = metricSum(metricsText, "process_start_time_seconds");
  const rows = metricSum(metricsText, "vm_rows_inserted_total");
  return startTime === undefined || rows === undefined ? undefined : { startTime, rows };
}
