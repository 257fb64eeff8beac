/**
 * The run's live figures, computed once a second from the fleet's counters and the latency windows of the
 * boards and the verifier: the one snapshot both the live view (live-view.ts) and the periodic store
 * metrics (bench-metrics.ts) read, so the two cannot disagree. Taking a snapshot empties the windows.
 */
import type { FaultLogEntry, FleetControl } from "./fleet";
import type { Verifier } from "./verifier";

export interface LiveSnapshot {
  elapsedS: number;
  target: number;
  connected: number;
  /** Connections that closed before TLS completed. */
  handshakeFailures: number;
  /** Connections that closed after TLS but before an accepting CONNACK. */
  connectFailures: number;
  /** Acknowledged per second since the previous snapshot. */
  msgPerS: number;
  /** PUBACK latency since the previous snapshot. */
  pubackP50Ms: number;
  pubackP99Ms: number;
  /** End-to-end latency since the previous snapshot (with a verifier). */
  e2eP50Ms?: number;
  e2eP99Ms?: number;
  /** Acknowledged by the broker but not (yet) seen by the verifier. */
  inTransit?: number;
  duplicates?: number;
  queued: number;
  faultsInjected: number;
  /** The last three faults that started, as type@device. */
  lastFaults: string[];
}

export const SNAPSHOT_INTERVAL_MS = 1000;

export class LiveSampler {
  readonly #fleet: FleetControl;
  readonly #verifier: Verifier | undefined;
  readonly #target: number;
  readonly #recentFaults: string[] = [];
  #seenFaults = 0;
  #lastAcked = 0;
  #lastTick: number;

  constructor(fleet: FleetControl, verifier: Verifier | undefined, target: number, now = performance.now()) {
    this.#fleet = fleet;
    this.#verifier = verifier;
    this.#target = target;
    this.#lastTick = now;
  }

  /** A snapshot when a second has passed since the last one, else undefined. */
  sample(now = performance.now()): LiveSnapshot | undefined {
    this.#noteFaults();
    if (now - this.#lastTick < SNAPSHOT_INTERVAL_MS) return undefined;
    const s = this.#fleet.stats;
    const v = this.#verifier;
    const snapshot: LiveSnapshot = {
      elapsedS: this.#fleet.elapsedS(),
      target: this.#target,
      connected: s.connected,
      handshakeFailures: s.handshakeFailures,
      connectFailures: s.connectFailures,
      msgPerS: ((s.acked - this.#lastAcked) * 1000) / (now - this.#lastTick),
      pubackP50Ms: s.pubackWindow.percentileMs(0.5),
      pubackP99Ms: s.pubackWindow.percentileMs(0.99),
      ...(v
        ? {
            e2eP50Ms: v.e2eWindow.percentileMs(0.5),
            e2eP99Ms: v.e2eWindow.percentileMs(0.99),
            inTransit: Math.max(0, s.acked - v.unique),
            duplicates: v.duplicates,
          }
        : {}),
      queued: this.#fleet.pendingMessages(),
      faultsInjected: s.faultsInjected,
      lastFaults: [...this.#recentFaults],
    };
    s.pubackWindow.reset();
    v?.e2eWindow.reset();
    this.#lastAcked = s.acked;
    this.#lastTick = now;
    return snapshot;
  }

  #noteFaults(): void {
    const log = this.#fleet.faultLog;
    for (; this.#seenFaults < log.length; this.#seenFaults++) this.#noteFault(log[this.#seenFaults]!);
  }

  #noteFault(e: FaultLogEntry): void {
    if (e.event !== "start") return;
    this.#recentFaults.push(`${e.type}@${e.device}`);
    if (this.#recentFaults.length > 3) this.#recentFaults.shift();
  }
}
