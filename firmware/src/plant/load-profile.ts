/**
 * What the plant operator (or the power market) asks of a stack over time: a load setpoint as a fraction of
 * rated current, made of held levels, part-load stretches, ramps between them and trips. Generated lazily
 * from a seeded stream so it is endless and reproducible.
 */
import type { Prng } from "./prng";

export type LoadProfileKind = "steady" | "part_load" | "ramps" | "mixed";
export const LOAD_PROFILE_KINDS: readonly LoadProfileKind[] = ["steady", "part_load", "ramps", "mixed"];

export interface LoadCommand {
  /** Requested load, 0..1 of rated current. */
  setpoint: number;
  /** A trip: the stack's current is cut at once (no ramp) and held at zero. */
  tripped: boolean;
}

interface Segment {
  until: number;
  setpoint: number;
  tripped: boolean;
}

/** PEM stacks below about 5–10 % load make hydrogen too impure to use; operators keep them above. */
export const MIN_PART_LOAD = 0.1;

export class LoadProfile {
  readonly kind: LoadProfileKind;
  readonly #rng: Prng;
  #lastTripped = false;
  #segment: Segment;

  constructor(kind: LoadProfileKind, rng: Prng) {
    this.kind = kind;
    this.#rng = rng;
    this.#segment = this.#nextSegment(0);
  }

  /** Call with non-decreasing times (seconds since the board started). */
  at(t: number): LoadCommand {
    while (t >= this.#segment.until) this.#segment = this.#nextSegment(this.#segment.until);
    return { setpoint: this.#segment.setpoint, tripped: this.#segment.tripped };
  }

  #nextSegment(start: number): Segment {
    const r = this.#rng;
    switch (this.kind) {
      case "steady":
        return { until: start + 3600, setpoint: r.uniform(0.8, 1), tripped: false };
      case "part_load":
        return {
          until: start + r.uniform(120, 600),
          setpoint: r.uniform(MIN_PART_LOAD, 0.4),
          tripped: false,
        };
      case "ramps":
        // Following a renewable supply: a new level every one to three minutes.
        return { until: start + r.uniform(60, 180), setpoint: r.uniform(MIN_PART_LOAD, 1), tripped: false };
      case "mixed": {
        // About one trip per board-hour; a trip holds the stack off for 30 s to 3 min before a restart.
        const wasTripped = this.#lastTripped;
        this.#lastTripped = !wasTripped && start > 0 && r.next() < 0.02;
        if (this.#lastTripped) return { until: start + r.uniform(30, 180), setpoint: 0, tripped: true };
        return {
          until: start + r.exponential(300) + 30,
          setpoint: r.uniform(MIN_PART_LOAD, 1),
          tripped: false,
        };
      }
    }
  }
}
