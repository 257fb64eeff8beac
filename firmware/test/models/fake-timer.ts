/*
	Virtual time for driver tests: implements the TimerService the drivers take (Moddable's
	Timer.set / Timer.clear shape) and a blocking delay that advances the same clock, so
	device models can let conversions and bus latencies "take time" deterministically.
*/

import type { TimerService } from "../../src/drivers/io";

interface Scheduled {
  id: number;
  due: number;
  callback: () => void;
}

export class FakeTimer implements TimerService {
  now = 0;
  #next = 1;
  #scheduled: Scheduled[] = [];

  set(callback: () => void, ms: number): unknown {
    const id = this.#next++;
    this.#scheduled.push({ id, due: this.now + Math.max(0, ms), callback });
    return id;
  }

  clear(id: unknown): void {
    this.#scheduled = this.#scheduled.filter((entry) => entry.id !== id);
  }

  get pending(): number {
    return this.#scheduled.length;
  }

  /** Moddable's Timer.delay: time passes, timers due meanwhile do not run (the VM is blocked). */
  readonly delay = (ms: number): void => {
    this.now += ms;
  };

  /** Runs the earliest timer; false when none is scheduled. */
  runNext(): boolean {
    if (this.#scheduled.length === 0) return false;
    this.#scheduled.sort((a, b) => a.due - b.due || a.id - b.id);
    const entry = this.#scheduled.shift();
    if (!entry) return false;
    this.now = Math.max(this.now, entry.due);
    entry.callback();
    return true;
  }
}

/** Lets promise continuations run, then fires timers one by one until the promise settles. */
export async function drive<T>(timer: FakeTimer, promise: Promise<T>): Promise<T> {
  let settled = false;
  const watched = promise.finally(() => {
    settled = true;
  });
  for (let step = 0; step < 10_000; step++) {
    await new Promise<void>((resolve) => setImmediate(resolve));
    if (settled) return watched;
    if (!timer.runNext()) throw new Error("deadlock: promise pending with no timer scheduled");
  }
  throw new Error("promise did not settle within 10000 timer steps");
}
