// Which broker a board connects to next, when it has more than one (the nodes of a broker cluster).
// Platform-neutral: the firmware and the emulator's boards run this same rule.
//
// The rule:
// - The first broker of the list is the board's home (provisioning spreads a fleet by ordering each
//   board's list). A board starts there.
// - Any failure — an attempt that got no CONNACK, or an established connection that ended — moves to
//   the next broker of the list, round robin. A node that has just died refuses the same board again, so
//   staying would only spend the backoff; the session itself lives in the cluster, not in the node.
// - Back home: at a reconnect (never by dropping a working connection, which would make every board
//   of a restarted node stampede back at once), a board away from home goes home again when home has
//   not failed for `homeRetryMs`.
// The delay before each attempt is the session's Backoff (exponential, jittered): this only says where.

import { MAX_BROKERS, type BrokerAddress } from "../identity/broker-list";

export type { BrokerAddress } from "../identity/broker-list";

export interface BrokerRotationOptions {
  /** Milliseconds, monotonic or wall clock: only differences are used. */
  now: () => number;
  /** How long home must have been free of failures before a reconnect goes back to it; default 5 min. */
  homeRetryMs?: number;
}

export const DEFAULT_HOME_RETRY_MS = 5 * 60_000;

export default class BrokerRotation {
  readonly #brokers: readonly BrokerAddress[];
  readonly #now: () => number;
  readonly #homeRetryMs: number;
  #index = 0;
  #homeFailedAt: number | undefined;
  #moves = 0;

  constructor(brokers: readonly BrokerAddress[], options: BrokerRotationOptions) {
    if (brokers.length === 0) throw new RangeError("broker rotation needs at least one broker");
    if (brokers.length > MAX_BROKERS) throw new RangeError(`at most ${MAX_BROKERS} brokers`);
    this.#brokers = brokers.map((b) => ({ host: b.host, port: b.port }));
    this.#now = options.now;
    this.#homeRetryMs = options.homeRetryMs ?? DEFAULT_HOME_RETRY_MS;
    if (!(this.#homeRetryMs >= 0)) throw new RangeError("homeRetryMs must be >= 0");
  }

  /** Where the next connection attempt goes. */
  get current(): BrokerAddress {
    return this.#brokers[this.#index]!;
  }

  /** Position of `current` in the list; 0 is home. */
  get index(): number {
    return this.#index;
  }

  get brokers(): readonly BrokerAddress[] {
    return this.#brokers;
  }

  /** How often the board moved to another broker. */
  get moves(): number {
    return this.#moves;
  }

  /**
   * The attempt to `current` failed or its connection ended: choose where the next attempt goes and
   * return it.
   */
  failed(): BrokerAddress {
    const now = this.#now();
    if (this.#index === 0) this.#homeFailedAt = now;
    const n = this.#brokers.length;
    let next = (this.#index + 1) % n;
    if (this.#index !== 0 && next !== 0 && this.#homeHealthy(now)) next = 0;
    if (next !== this.#index) this.#moves++;
    this.#index = next;
    return this.current;
  }

  #homeHealthy(now: number): boolean {
    return this.#homeFailedAt === undefined || now - this.#homeFailedAt >= this.#homeRetryMs;
  }
}
