// Per-device rate accounting, the containment Mosquitto 2.0 cannot do: it has no per-client publish
// limit, and every board's readings queue in the ingest's one session, first in, first out. A board
// publishing far beyond its configured rate would fill that queue and delay (past its limits, drop)
// every other board's readings. So the ingest spends on each device at most its allowance: a token
// bucket per device, checked from the topic alone, before any decryption or store write. Messages
// past it are refused as `rate_exceeded` (counted and dead-lettered, never stored), which costs the
// ingest a fraction of a stored reading, so it keeps draining the broker faster than one board floods.
//
// Arrival rate is not sending rate: after an ingest outage the broker delivers every board's backlog
// at once, each board far "above" its rate. So the allowance scales with the fleet: every second the
// limiter takes the (lower) median, over the devices active in the last
// ten seconds, of arrival rate / configured
// rate, and multiplies every device's allowance by it (never below 1). In a catch-up every board is
// sped up alike and nothing is refused; one flooding board cannot move the median of the others. With
// fewer than three active devices there is no speed-up (a lone flooder would be its own median), so
// a fleet of one or two catching up has its backlog past the burst refused.
//
// Pure logic: the clock is injected; memory is one entry per device that has sent something (the
// broker's ACL lets a certificate publish only under its own name, and the manifest bounds the names).

export interface DeviceRateLimitOptions {
  /** Readings per second a device is configured to send (from its interval); undefined: `defaultRate`. */
  rateOf?: (sensorId: string) => number | undefined;
  /** Rate for devices `rateOf` does not know (default 1/s: the fastest common interval). */
  defaultRate?: number;
  /**
   * How many times its configured rate a device may send, sustained (DEFAULT_RATE_ALLOWANCE): a board
   * catching up sends its outbox faster than it samples, and status messages come on top.
   */
  allowance?: number;
  /** Messages a device may send at once beyond its sustained rate (DEFAULT_RATE_BURST). */
  burst?: number;
  now?: () => number;
}

/** Times its configured rate a device may send, sustained. */
export const DEFAULT_RATE_ALLOWANCE = 4;
/**
 * Messages a device may send at once past its rate: three firmware outboxes (100 readings each), so a
 * board reconnecting after an outage sends its backlog unrefused. Not more: what a new flooder spends
 * of it is written at full cost, and that is the one stretch in which it delays the other boards
 * (host/test/ingest/containment.test.ts: about 1.3 s at 1000 under a load of 15 on 2 cores).
 */
export const DEFAULT_RATE_BURST = 300;

interface Bucket {
  tokens: number;
  at: number;
  /** Messages in the current one-second window (for the fleet's speed-up). */
  count: number;
  /** When it last sent anything. */
  lastAt: number;
}

const WINDOW_MS = 1000;
/**
 * A device silent this long no longer counts towards the median (it is offline); one that sent within
 * it counts even in a window it sent nothing in, so a flooder alone in a window cannot set the median.
 */
const ACTIVE_MS = 10_000;
/** Fewer active devices than this set no speed-up: at start-up a flooder may be the only one seen yet. */
const QUORUM = 3;

export class DeviceRateLimiter {
  readonly #rateOf: (sensorId: string) => number | undefined;
  readonly #defaultRate: number;
  readonly #allowance: number;
  readonly #burst: number;
  readonly #now: () => number;
  readonly #buckets = new Map<string, Bucket>();
  #windowStart: number | undefined;
  #speedup = 1;

  constructor(o: DeviceRateLimitOptions = {}) {
    this.#rateOf = o.rateOf ?? (() => undefined);
    this.#defaultRate = o.defaultRate ?? 1;
    this.#allowance = o.allowance ?? DEFAULT_RATE_ALLOWANCE;
    this.#burst = o.burst ?? DEFAULT_RATE_BURST;
    this.#now = o.now ?? Date.now;
    if (!(this.#defaultRate > 0) || !(this.#allowance > 0) || !(this.#burst >= 1))
      throw new RangeError("rate, allowance and burst must be positive");
  }

  #rate(sensorId: string): number {
    return this.#rateOf(sensorId) ?? this.#defaultRate;
  }

  /** Readings per second the device is configured to send (its manifest interval, else the default). */
  configuredRate(sensorId: string): number {
    return this.#rate(sensorId);
  }

  /** Messages per second the device may send, sustained, at the fleet's current speed-up. */
  limitOf(sensorId: string): number {
    return this.#rate(sensorId) * this.#allowance * this.#speedup;
  }

  /** How many times faster than configured the median device arrives (at least 1). */
  get speedup(): number {
    return this.#speedup;
  }

  /** Spends one message of the device's allowance; false when it has none left (refuse the message). */
  take(sensorId: string): boolean {
    const now = this.#now();
    this.#roll(now);
    let b = this.#buckets.get(sensorId);
    if (!b) {
      b = { tokens: this.#burst, at: now, count: 0, lastAt: now };
      this.#buckets.set(sensorId, b);
    } else if (now > b.at) {
      b.tokens = Math.min(this.#burst, b.tokens + ((now - b.at) / 1000) * this.limitOf(sensorId));
      b.at = now;
    }
    b.count++;
    b.lastAt = now;
    if (b.tokens < 1) return false;
    b.tokens -= 1;
    return true;
  }

  /** Closes the one-second window when it is over: the median device's speed becomes the speed-up. */
  #roll(now: number): void {
    this.#windowStart ??= now;
    const elapsed = now - this.#windowStart;
    if (elapsed < WINDOW_MS) return;
    const ratios: number[] = [];
    for (const [id, b] of this.#buckets) {
      if (now - b.lastAt <= ACTIVE_MS) ratios.push(b.count / ((elapsed / 1000) * this.#rate(id)));
      b.count = 0;
    }
    ratios.sort((x, y) => x - y);
    this.#speedup =
      ratios.length < QUORUM ? 1 : Math.max(1, ratios[Math.floor((ratios.length - 1) / 2)] ?? 1);
    this.#windowStart = now;
  }
}
