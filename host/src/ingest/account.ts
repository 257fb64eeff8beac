// The ingest's account of every message: what came in, what reached the store, what was a
// re-delivery, what is missing (sequence gaps) and what was refused and why.
import type { DeviceAccountFields } from "./line-protocol";

/** Latencies kept per device for its p50/p99: the most recent ones, in a ring. */
const LATENCY_RING = 512;
/** Messages whose topic names no valid device are booked here. */
export const UNKNOWN_DEVICE = "_unknown";

interface DeviceEntry {
  received: number;
  written: number;
  duplicates: number;
  gaps: number;
  rejected: number;
  rejectedByReason: Map<string, number>;
  latencies: Float64Array;
  latencyCount: number;
}

export interface DeviceAccount extends DeviceAccountFields {
  sensorId: string;
  rejectedByReason: Record<string, number>;
  /** Readings per second the device is configured to send, when the ingest knows (its rate limit). */
  configuredRate?: number;
}

export function percentile(sorted: ArrayLike<number>, p: number): number | undefined {
  if (sorted.length === 0) return undefined;
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank];
}

/** The most recent latencies of all devices, for fleet-wide percentiles. */
export class LatencyWindow {
  readonly #ring: Float64Array;
  #count = 0;
  constructor(size = 65_536) {
    this.#ring = new Float64Array(size);
  }
  observe(ms: number): void {
    this.#ring[this.#count % this.#ring.length] = ms;
    this.#count++;
  }
  /** Percentiles (0..100) of the window; undefined while empty. */
  percentiles(ps: number[]): (number | undefined)[] {
    const sorted = this.#ring.slice(0, Math.min(this.#count, this.#ring.length)).sort();
    return ps.map((p) => percentile(sorted, p));
  }
}

export class IngestAccount {
  readonly #devices = new Map<string, DeviceEntry>();
  readonly #rejectedByReason = new Map<string, number>();
  #rateOf: ((sensorId: string) => number | undefined) | undefined;

  /** Where each device's configured rate comes from (the rate limiter), for the account and the dashboards. */
  configureRates(rateOf: (sensorId: string) => number | undefined): void {
    this.#rateOf = rateOf;
  }

  #entry(sensorId: string): DeviceEntry {
    let e = this.#devices.get(sensorId);
    if (!e) {
      e = {
        received: 0,
        written: 0,
        duplicates: 0,
        gaps: 0,
        rejected: 0,
        rejectedByReason: new Map(),
        latencies: new Float64Array(LATENCY_RING),
        latencyCount: 0,
      };
      this.#devices.set(sensorId, e);
    }
    return e;
  }

  received(sensorId: string): void {
    this.#entry(sensorId).received++;
  }

  written(sensorId: string, latencyMs: number): void {
    const e = this.#entry(sensorId);
    e.written++;
    e.latencies[e.latencyCount % LATENCY_RING] = latencyMs;
    e.latencyCount++;
  }

  duplicate(sensorId: string): void {
    this.#entry(sensorId).duplicates++;
  }

  /** delta < 0 when a late message fills a gap counted earlier. */
  gaps(sensorId: string, delta: number): void {
    this.#entry(sensorId).gaps += delta;
  }

  rejected(sensorId: string, reason: string): void {
    const e = this.#entry(sensorId);
    e.rejected++;
    e.rejectedByReason.set(reason, (e.rejectedByReason.get(reason) ?? 0) + 1);
    this.#rejectedByReason.set(reason, (this.#rejectedByReason.get(reason) ?? 0) + 1);
  }

  rejectedByReason(): Record<string, number> {
    return Object.fromEntries(this.#rejectedByReason);
  }

  totals(): DeviceAccountFields {
    const t = { received: 0, written: 0, duplicates: 0, gaps: 0, rejected: 0 };
    for (const e of this.#devices.values()) {
      t.received += e.received;
      t.written += e.written;
      t.duplicates += e.duplicates;
      t.gaps += e.gaps;
      t.rejected += e.rejected;
    }
    return t;
  }

  /** Counts only, no percentiles: cheap enough for every metrics scrape. */
  counts(): (DeviceAccountFields & { sensorId: string })[] {
    return [...this.#devices].map(([sensorId, e]) => ({
      sensorId,
      received: e.received,
      written: e.written,
      duplicates: e.duplicates,
      gaps: e.gaps,
      rejected: e.rejected,
    }));
  }

  device(sensorId: string): DeviceAccount | undefined {
    const e = this.#devices.get(sensorId);
    return e ? this.#snapshot(sensorId, e) : undefined;
  }

  devices(): DeviceAccount[] {
    return [...this.#devices].map(([id, e]) => this.#snapshot(id, e));
  }

  #snapshot(sensorId: string, e: DeviceEntry): DeviceAccount {
    const n = Math.min(e.latencyCount, LATENCY_RING);
    const sorted = e.latencies.slice(0, n).sort();
    return {
      sensorId,
      received: e.received,
      written: e.written,
      duplicates: e.duplicates,
      gaps: e.gaps,
      rejected: e.rejected,
      rejectedByReason: Object.fromEntries(e.rejectedByReason),
      latencyMsP50: percentile(sorted, 50),
      latencyMsP99: percentile(sorted, 99),
      ...(this.#rateOf?.(sensorId) !== undefined ? { configuredRate: this.#rateOf(sensorId) } : {}),
    };
  }
}
