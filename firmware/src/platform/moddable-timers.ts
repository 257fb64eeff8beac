// Moddable's `timer` behind the app's Timers interface (the Timer class is handed in by main.ts).
import type { TimerHandle, Timers } from "../app/services";

/** Timer's static API; T is the SDK's Timer instance type. */
export interface ModdableTimerModule<T extends object> {
  set(callback: () => void, delay?: number, repeat?: number): T;
  repeat(callback: () => void, interval: number): T;
  clear(timer: T | undefined): void;
}

export default class ModdableTimers<T extends object> implements Timers {
  readonly #Timer: ModdableTimerModule<T>;

  constructor(options: { Timer: ModdableTimerModule<T> }) {
    this.#Timer = options.Timer;
  }

  set(callback: () => void, delayMs: number): TimerHandle {
    return this.#Timer.set(() => callback(), delayMs);
  }

  repeat(callback: () => void, intervalMs: number): TimerHandle {
    return this.#Timer.repeat(() => callback(), intervalMs);
  }

  clear(handle: TimerHandle | undefined): void {
    // Timer.clear(undefined) is a no-op on XS; a cleared-twice handle is too.
    // Handles only ever come from set/repeat above.
    if (handle) this.#Timer.clear(handle as T);
  }
}
