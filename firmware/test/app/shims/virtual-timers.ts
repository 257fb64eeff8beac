// Host shim of Moddable's `timer` on a virtual clock: callbacks run one at a time in due order (as on
// XS's single event loop), and promise continuations run between them, so a test can let hours pass.
import type { Clock, TimerHandle, Timers } from "../../../src/app/services";

interface Entry {
  due: number;
  order: number;
  interval: number | null;
  callback: () => void;
  cleared: boolean;
}

/** 2026-01-01T00:00:00Z: a clock that SNTP already set. */
export const EPOCH_MS = 1_767_225_600_000;

const settle = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

export class VirtualTimers implements Timers, Clock {
  #now = 0;
  #order = 0;
  #entries: Entry[] = [];

  constructor(readonly epochMs = EPOCH_MS) {}

  /** Milliseconds since the virtual boot. */
  get elapsed(): number {
    return this.#now;
  }

  now(): number {
    return this.epochMs + this.#now;
  }

  set(callback: () => void, delayMs: number): TimerHandle {
    return this.#add(callback, delayMs, null);
  }

  repeat(callback: () => void, intervalMs: number): TimerHandle {
    if (!(intervalMs > 0)) throw new RangeError("repeat interval must be positive");
    return this.#add(callback, intervalMs, intervalMs);
  }

  clear(handle: TimerHandle | undefined): void {
    const e = handle as Entry | undefined;
    if (!e) return;
    e.cleared = true;
    this.#entries = this.#entries.filter((x) => x !== e);
  }

  get pending(): number {
    return this.#entries.length;
  }

  /** Lets `ms` of virtual time pass, running everything that falls due, in order. */
  async advance(ms: number): Promise<void> {
    const end = this.#now + ms;
    await settle();
    for (;;) {
      const next = this.#earliest();
      if (!next || next.due > end) break;
      this.#now = next.due;
      if (next.interval === null) this.#entries = this.#entries.filter((x) => x !== next);
      else {
        next.due += next.interval;
        next.order = this.#order++;
      }
      next.callback();
      await settle();
    }
    this.#now = end;
    await settle();
  }

  #add(callback: () => void, delayMs: number, interval: number | null): Entry {
    const e: Entry = {
      due: this.#now + Math.max(0, delayMs),
      order: this.#order++,
      interval,
      callback,
      cleared: false,
    };
    this.#entries.push(e);
    return e;
  }

  #earliest(): Entry | undefined {
    let best: Entry | undefined;
    for (const e of this.#entries)
      if (!best || e.due < best.due || (e.due === best.due && e.order < best.order)) best = e;
    return best;
  }
}
