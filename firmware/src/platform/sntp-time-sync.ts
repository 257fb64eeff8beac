// The clock before TLS: Moddable's ssl checks certificate validity dates against Date.now(), and an
// ESP32 boots at 1970. SNTP and Time are handed in by the board module.
import type { Clock, TimeSync } from "../app/services";

export interface SntpModule {
  readonly time: number;
  readonly error: number;
}
export type SntpConstructor = SntpModule &
  (new (options: { host: string }, callback: (message: number, value?: number) => void) => object);
export interface TimeModule {
  set(seconds: number): void;
}

/** 2024-01-01T00:00:00Z: a clock earlier than this was never set. */
export const PLAUSIBLE_CLOCK_MS = 1_704_067_200_000;

export default class SntpTimeSync implements TimeSync {
  readonly #host: string;
  readonly #SNTP: SntpConstructor | null;
  readonly #Time: TimeModule | null;
  readonly #clock: Clock;

  /** host "" means the clock is kept by someone else (the simulator's host): only checked. */
  constructor(options: {
    host: string;
    SNTP: SntpConstructor | null;
    Time: TimeModule | null;
    clock: Clock;
  }) {
    this.#host = options.host;
    this.#SNTP = options.SNTP;
    this.#Time = options.Time;
    this.#clock = options.clock;
  }

  sync(done: (ok: boolean, detail?: string) => void): void {
    const SNTP = this.#SNTP;
    const Time = this.#Time;
    if (!this.#host || !SNTP || !Time) {
      if (this.#clock.now() >= PLAUSIBLE_CLOCK_MS) done(true);
      else done(false, "clock not set and no SNTP server configured");
      return;
    }
    let finished = false;
    new SNTP({ host: this.#host }, (message, value) => {
      if (finished) return;
      if (message === SNTP.time && typeof value === "number") {
        finished = true;
        Time.set(value);
        done(true);
      } else if (message === SNTP.error) {
        finished = true;
        done(false, `SNTP ${this.#host} did not answer`);
      }
    });
  }
}
