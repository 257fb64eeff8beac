// End-to-end confirmations, the ingest's side: once the store has a reading durably, tell its board (QoS 1 on
// electrolyser/<id>/down/stored, firmware/src/telemetry/confirmation) so the board may forget it. "Accepted"
// is not "durable" for every store, so a StoreDurability rule decides when a written batch counts:
//   - InfluxDB 2 fsyncs its WAL before it answers 204 (README "Durability"): durable on acceptance.
//   - VictoriaMetrics 1.79 answers 204 from memory and no API says when the data is on disk: durable once the
//     same process has been seen alive `horizonMs` after the write (host/src/store/durable-horizon.ts); writes
//     its replaced predecessor may have lost are written again before they are confirmed.
// Confirmations go out at most once per interval per board, each restating the boot's durable ranges, so a lost
// or repeated one is harmless.
import DurableHorizon, { StoreIncarnation, incarnationSample } from "../store/durable-horizon";
import type { HorizonVerdict } from "../store/durable-horizon";
import { encodeConfirmation } from "../../../firmware/src/telemetry/confirmation";
import { downlinkTopic } from "../../../firmware/src/telemetry/topics";
import { DurableRanges } from "./durable-ranges";

/** A reading the store accepted: where it is in its board's sequence, and its line (to write it again). */
export interface StoredReading {
  sensorId: string;
  boot: number;
  seq: number;
  line: string;
}

/** When an accepted write is durable, per store. */
export interface StoreDurability {
  readonly name: string;
  /** Accepted writes not yet durable. */
  readonly pending: number;
  written(items: StoredReading[], atMs: number): void;
  /** Looks at the store: what became durable, and what a replaced store process may have lost. */
  poll(nowMs: number): Promise<HorizonVerdict<StoredReading>>;
}

/** InfluxDB 2: its 204 comes after the WAL fsync, so acceptance is durability. */
export function durableOnAccept(): StoreDurability {
  let ready: StoredReading[] = [];
  return {
    name: "on acceptance (InfluxDB 2 WAL fsync)",
    get pending() {
      return ready.length;
    },
    written(items) {
      ready.push(...items);
    },
    poll() {
      const durable = ready;
      ready = [];
      return Promise.resolve({ durable, rewrite: [] });
    },
  };
}

export type MetricsFetch = (url: string) => Promise<string>;

export const defaultMetricsFetch: MetricsFetch = async (url) => {
  const res = await fetch(url, { signal: AbortSignal.timeout(2000) });
  if (!res.ok) throw new Error(`HTTP ${res.status}`);
  return res.text();
};

/**
 * VictoriaMetrics: durable once the same process (start time and row counter from its /metrics) has been seen
 * alive `horizonMs` after the write. Measured on 1.79 (`npm run bench -- durability`, README "Durability"): writes
 * up to 10 s old are lost to a SIGKILL, 12 s and older survive; the CLI's default 30 s leaves a margin.
 */
export function victoriaMetricsHorizon(o: {
  storeUrl: string;
  horizonMs: number;
  fetchMetrics?: MetricsFetch;
}): StoreDurability {
  const horizon = new DurableHorizon<StoredReading>({ horizonMs: o.horizonMs });
  const incarnation = new StoreIncarnation();
  const fetchMetrics = o.fetchMetrics ?? defaultMetricsFetch;
  const metricsUrl = `${o.storeUrl.replace(/\/+$/, "")}/metrics`;
  // -1 until the store was first seen: such writes come back for a rewrite, never as durable.
  let current = -1;
  return {
    name: `${o.horizonMs / 1000} s after the write, same VictoriaMetrics process`,
    get pending() {
      return horizon.pending;
    },
    written(items, atMs) {
      horizon.written(items, atMs, current);
    },
    async poll(nowMs) {
      let text: string;
      try {
        text = await fetchMetrics(metricsUrl);
      } catch {
        return { durable: [], rewrite: [] }; // down: nothing becomes durable meanwhile
      }
      const sample = incarnationSample(text);
      if (!sample) return { durable: [], rewrite: [] };
      current = incarnation.observe(sample);
      return horizon.observe(nowMs, current);
    },
  };
}

/**
 * The rule for a store at `storeUrl`, found from its /metrics once it answers: VictoriaMetrics exposes
 * `vm_rows_inserted_total`; anything else is taken for InfluxDB 2. Until then nothing counts as durable.
 */
export function detectStoreDurability(o: {
  storeUrl: string;
  horizonMs: number;
  fetchMetrics?: MetricsFetch;
  onDetected?: (rule: StoreDurability) => void;
}): StoreDurability {
  const fetchMetrics = o.fetchMetrics ?? defaultMetricsFetch;
  let rule: StoreDurability | undefined;
  const early: { items: StoredReading[]; atMs: number }[] = [];
  return {
    get name() {
      return rule?.name ?? "not known yet (store not reached)";
    },
    get pending() {
      return rule?.pending ?? early.reduce((n, e) => n + e.items.length, 0);
    },
    written(items, atMs) {
      if (rule) rule.written(items, atMs);
      else early.push({ items, atMs });
    },
    async poll(nowMs) {
      if (!rule) {
        let text: string;
        try {
          text = await fetchMetrics(`${o.storeUrl.replace(/\/+$/, "")}/metrics`);
        } catch {
          return { durable: [], rewrite: [] };
        }
        rule = metricPresent(text, "vm_rows_inserted_total")
          ? victoriaMetricsHorizon({ storeUrl: o.storeUrl, horizonMs: o.horizonMs, fetchMetrics })
          : durableOnAccept();
        o.onDetected?.(rule);
        // Written before the store was identified: its incarnation is unknown, so written again (harmless).
        const rewrite = early.splice(0).flatMap((e) => e.items);
        const verdict = await rule.poll(nowMs);
        return { durable: verdict.durable, rewrite: [...rewrite, ...verdict.rewrite] };
      }
      return rule.poll(nowMs);
    },
  };
}

function metricPresent(text: string, name: string): boolean {
  return new RegExp(`^${name}(\\{|\\s)`, "m").test(text);
}

export interface ConfirmerOptions {
  durability: StoreDurability;
  /** Publishes one confirmation (QoS 1); false when it could not be sent now (broker away): tried next round. */
  publish(topic: string, payload: Uint8Array): boolean;
  /** Writes lines again (a replaced store process may have lost them); rejects while the store is down. */
  rewrite(lines: string[]): Promise<void>;
  /** Default 1000 ms: at most one confirmation per board per interval. */
  intervalMs?: number;
  log?: (line: string) => void;
}

export interface ConfirmerCounts {
  published: number;
  confirmedReadings: number;
  rewritten: number;
  rewriteFailures: number;
}

export class Confirmer {
  readonly #o: ConfirmerOptions;
  readonly #ranges = new DurableRanges();
  readonly counts: ConfirmerCounts = { published: 0, confirmedReadings: 0, rewritten: 0, rewriteFailures: 0 };
  #timer: NodeJS.Timeout | undefined;
  #round: Promise<void> | undefined;
  /** Written again by the store's new process failed: tried again next round. */
  #toRewrite: StoredReading[] = [];
  #unsent: { sensorId: string; boot: number }[] = [];
  /** The horizon needs writes in time order: a wall clock stepping back must not reorder them. */
  #lastAt = 0;

  constructor(o: ConfirmerOptions) {
    this.#o = o;
  }

  get pending(): number {
    return this.#o.durability.pending + this.#toRewrite.length;
  }

  start(): void {
    this.#timer ??= setInterval(() => {
      this.#round ??= this.round().finally(() => (this.#round = undefined));
    }, this.#o.intervalMs ?? 1000);
  }

  async stop(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
    await this.#round;
  }

  /** The store accepted these readings (2xx). */
  stored(items: StoredReading[], atMs = Date.now()): void {
    if (items.length > 0) this.#o.durability.written(items, this.#at(atMs));
  }

  #at(ms: number): number {
    this.#lastAt = Math.max(this.#lastAt, ms);
    return this.#lastAt;
  }

  /** A board sent a reading again that the ingest already has: if it is durable, confirm it again. */
  duplicate(sensorId: string, boot: number, seq: number): void {
    if (this.#ranges.has(sensorId, boot, seq)) this.#ranges.markDirty(sensorId, boot);
  }

  /** One round: learn what became durable, write again what may be lost, confirm. Exposed for tests. */
  async round(nowMs = Date.now()): Promise<void> {
    const { durable, rewrite } = await this.#o.durability.poll(nowMs);
    for (const r of durable) if (this.#ranges.add(r.sensorId, r.boot, r.seq)) this.counts.confirmedReadings++;
    const again = [...this.#toRewrite, ...rewrite];
    this.#toRewrite = [];
    if (again.length > 0) {
      try {
        await this.#o.rewrite(again.map((r) => r.line));
        this.#o.durability.written(again, this.#at(Date.now()));
        this.counts.rewritten += again.length;
        this.#o.log?.(
          `ingest: wrote ${again.length} readings again (the store process changed before they were durable)`,
        );
      } catch {
        this.counts.rewriteFailures++;
        this.#toRewrite = again;
      }
    }
    const send = this.#unsent.splice(0);
    for (const d of send) this.#ranges.markDirty(d.sensorId, d.boot);
    for (const c of this.#ranges.takeDirty()) {
      const payload = encodeConfirmation({ boot: c.boot, ranges: c.ranges });
      if (this.#o.publish(downlinkTopic(c.sensorId, "stored"), payload)) this.counts.published++;
      else this.#unsent.push({ sensorId: c.sensorId, boot: c.boot });
    }
  }
}
