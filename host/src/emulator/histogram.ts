/**
 * Latency histogram with bounded memory and about 3 % relative error: log-spaced buckets from 1 µs to ~1 h.
 * Tens of thousands of samples per second go in; only percentiles come out.
 */
const BUCKETS_PER_DOUBLING = 24;
const MIN_US = 1;
const DOUBLINGS = 32;

/** A histogram's contents, as posted between threads (structured-clone friendly). */
export interface HistogramData {
  counts: Float64Array;
  n: number;
  max: number;
  sum: number;
}

export class Histogram {
  readonly #counts = new Float64Array(BUCKETS_PER_DOUBLING * DOUBLINGS + 1);
  #n = 0;
  #max = 0;
  #sum = 0;

  get count(): number {
    return this.#n;
  }
  get maxUs(): number {
    return this.#max;
  }
  get meanUs(): number {
    return this.#n === 0 ? 0 : this.#sum / this.#n;
  }

  recordUs(us: number): void {
    const v = us < MIN_US ? MIN_US : us;
    const i = Math.min(this.#counts.length - 1, Math.floor(Math.log2(v / MIN_US) * BUCKETS_PER_DOUBLING));
    this.#counts[i]!++;
    this.#n++;
    this.#sum += us;
    if (us > this.#max) this.#max = us;
  }

  recordMs(ms: number): void {
    this.recordUs(ms * 1000);
  }

  /** The value (µs) below which fraction q of samples fall; upper edge of the bucket, NaN when empty. */
  percentileUs(q: number): number {
    if (this.#n === 0) return Number.NaN;
    const target = Math.max(1, Math.ceil(q * this.#n));
    let seen = 0;
    for (let i = 0; i < this.#counts.length; i++) {
      seen += this.#counts[i]!;
      if (seen >= target) return Math.min(this.#max, MIN_US * 2 ** ((i + 1) / BUCKETS_PER_DOUBLING));
    }
    return this.#max;
  }

  percentileMs(q: number): number {
    return this.percentileUs(q) / 1000;
  }

  /** Hands over what was recorded since the last take and starts empty. */
  take(): HistogramData {
    const d = { counts: this.#counts.slice(), n: this.#n, max: this.#max, sum: this.#sum };
    this.reset();
    return d;
  }

  /** Adds another histogram's samples (same bucket layout). */
  merge(d: HistogramData): void {
    if (d.n === 0) return;
    for (let i = 0; i < this.#counts.length; i++) this.#counts[i]! += d.counts[i] ?? 0;
    this.#n += d.n;
    this.#sum += d.sum;
    if (d.max > this.#max) this.#max = d.max;
  }

  reset(): void {
    this.#counts.fill(0);
    this.#n = 0;
    this.#max = 0;
    this.#sum = 0;
  }
}
