// Reconnect delays: exponential so a broker outage is not hammered, jittered so a fleet that lost
// the broker at the same moment does not come back in lockstep.
import type { RandomSource } from "./services";

export interface BackoffOptions {
  minMs: number;
  maxMs: number;
  random: RandomSource;
}

export default class Backoff {
  readonly #minMs: number;
  readonly #maxMs: number;
  readonly #random: RandomSource;
  #failures = 0;

  constructor(options: BackoffOptions) {
    if (!(options.minMs > 0) || !(options.maxMs >= options.minMs))
      throw new RangeError("backoff needs 0 < minMs <= maxMs");
    this.#minMs = options.minMs;
    this.#maxMs = options.maxMs;
    this.#random = options.random;
  }

  get failures(): number {
    return this.#failures;
  }

  /**
   * The wait before the next attempt: the ceiling doubles per failure up to maxMs, and the delay is
   * drawn from its upper half ("equal jitter"), so it never collapses to zero and never exceeds maxMs.
   */
  next(): number {
    const ceiling = Math.min(this.#maxMs, this.#minMs * 2 ** Math.min(this.#failures, 30));
    this.#failures++;
    const half = ceiling / 2;
    return Math.max(this.#minMs, Math.round(half + this.#random() * half));
  }

  reset(): void {
    this.#failures = 0;
  }
}
