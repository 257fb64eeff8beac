/** Counters the boards bump and the live view and report read. */
import { Histogram } from "./histogram";
import type { HistogramData } from "./histogram";

const COUNTERS = [
  "connected",
  "connects",
  "handshakeFailures",
  "brokerRefused",
  "connectFailures",
  "disconnects",
  "readings",
  "publishes",
  "resends",
  "acked",
  "outboxDropped",
  "faultsInjected",
] as const;
type Counter = (typeof COUNTERS)[number];

/** One shard's figures as a worker thread posts them: counters so far, histogram samples since the last post. */
export interface StatsSnapshot {
  counters: Record<Counter, number>;
  pubackLatency: HistogramData;
  pubackSteady: HistogramData;
  pubackWindow: HistogramData;
  connectLatency: HistogramData;
}

export class FleetStats {
  connected = 0;
  /** CONNACKs with return code 0, first connections and reconnections. */
  connects = 0;
  /** Connections that closed before TLS completed (refused certificate, timeout, reset). */
  handshakeFailures = 0;
  /** Of those, servers the board's broker check refused (key not pinned, chain not the fleet's). */
  brokerRefused = 0;
  /** Connections that closed after TLS but before an accepting CONNACK. */
  connectFailures = 0;
  /** Established connections that were lost (network drop, broker restart...). */
  disconnects = 0;
  /** Readings made (enqueued in an outbox). */
  readings = 0;
  /** PUBLISH packets written, resends included. */
  publishes = 0;
  resends = 0;
  acked = 0;
  /** Readings dropped on a board because its outbox was full. */
  outboxDropped = 0;
  faultsInjected = 0;
  readonly pubackLatency = new Histogram();
  /** Set once every board is connected and its backlog is sent: the steady-state figures start then. */
  steady = false;
  readonly pubackSteady = new Histogram();
  /** PUBACK latency since the live view last looked. */
  readonly pubackWindow = new Histogram();
  readonly connectLatency = new Histogram();

  /** For a shard: the counters, and the histograms' samples since the last call (which empties them). */
  takeSnapshot(): StatsSnapshot {
    const counters = {} as Record<Counter, number>;
    for (const k of COUNTERS) counters[k] = this[k];
    return {
      counters,
      pubackLatency: this.pubackLatency.take(),
      pubackSteady: this.pubackSteady.take(),
      pubackWindow: this.pubackWindow.take(),
      connectLatency: this.connectLatency.take(),
    };
  }

  /** For the whole fleet: sets the counters to the shards' sums and merges their histogram samples. */
  absorb(latest: readonly StatsSnapshot[], fresh: StatsSnapshot): void {
    for (const k of COUNTERS) this[k] = latest.reduce((n, s) => n + s.counters[k], 0);
    this.pubackLatency.merge(fresh.pubackLatency);
    this.pubackSteady.merge(fresh.pubackSteady);
    this.pubackWindow.merge(fresh.pubackWindow);
    this.connectLatency.merge(fresh.connectLatency);
  }
}
