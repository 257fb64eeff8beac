/**
 * The firmware's `Timers` service for a whole fleet on one thread: one binary heap of due times served by
 * the fleet's tick, instead of a Node timer per board. Every emulated board's MqttSession and Sampler run
 * on it unchanged, so 10,000 boards cost one interval, not 10,000 pending timeouts.
 */
import type { TimerHandle, Timers } from "../../../../firmware/src/app/services";
import { DueHeap } from "../due-heap";

interface Entry {
  dueAt: number;
  callback: () => void;
  /** 0 for a one-shot timer. */
  intervalMs: number;
  cancelled: boolean;
}

export class FleetTimers implements Timers {
  readonly #heap = new DueHeap<Entry>();
  readonly #now: () => number;

  constructor(now: () => number = () => performance.now()) {
    this.#now = now;
  }

  get size(): number {
    return this.#heap.size;
  }

  set(callback: () => void, delayMs: number): TimerHandle {
    return this.#push({
      dueAt: this.#now() + Math.max(0, delayMs),
      callback,
      intervalMs: 0,
      cancelled: false,
    });
  }

  repeat(callback: () => void, intervalMs: number): TimerHandle {
    if (!(intervalMs > 0)) throw new RangeError("repeat interval must be > 0 ms");
    return this.#push({ dueAt: this.#now() + intervalMs, callback, intervalMs, cancelled: false });
  }

  /**
   * A repeating timer whose first run is at `firstDueAt` (this clock's milliseconds), even if that is
   * already past: a fleet's boards keep their places on one shared timeline, and a late start catches up.
   */
  repeatFrom(callback: () => void, intervalMs: number, firstDueAt: number): TimerHandle {
    if (!(intervalMs > 0)) throw new RangeError("repeat interval must be > 0 ms");
    return this.#push({ dueAt: firstDueAt, callback, intervalMs, cancelled: false });
  }

  clear(handle: TimerHandle | undefined): void {
    // Cancelled entries stay in the heap until they come due: cheaper than a removal, and bounded by the
    // number of timers a board ever has pending (a connect timeout, a retry, a sampler).
    if (handle) (handle as Entry).cancelled = true;
  }

  /**
   * Runs every callback due by now, in due order. A repeating timer keeps its phase (due += interval); one
   * that fell more than ten intervals behind (a suspended process) restarts from now rather than firing a burst.
   */
  runDue(now = this.#now()): void {
    const heap = this.#heap;
    for (let e = heap.peek(); e && e.dueAt <= now; e = heap.peek()) {
      heap.pop();
      if (e.cancelled) continue;
      if (e.intervalMs > 0) {
        e.dueAt += e.intervalMs;
        if (e.dueAt < now - 10 * e.intervalMs) e.dueAt = now;
        heap.push(e);
      }
      e.callback();
    }
  }

  #push(e: Entry): Entry {
    this.#heap.push(e);
    return e;
  }
}
