// What the application needs from the platform, as interfaces: Moddable implements them on the
// board and the simulator (firmware/src/platform, firmware/board), Node tests with host shims.
// Nothing here imports a Moddable module, so the logic runs unchanged under XS and Node.
import type { ChannelName } from "../telemetry/channels";
import type { WifiSettings } from "../identity/nvs-layout";

/** An opaque handle from Timers.set/repeat. */
export type TimerHandle = object;

/** Moddable's `timer`: callbacks run on the one event loop, never re-entrantly. */
export interface Timers {
  set(callback: () => void, delayMs: number): TimerHandle;
  repeat(callback: () => void, intervalMs: number): TimerHandle;
  clear(handle: TimerHandle | undefined): void;
}

export type { PreferenceStore, PreferenceValue } from "../identity/preference-store";

export type { Clock } from "../util/clock";
export type { Log } from "../util/log";

/** A value in [0, 1), for backoff jitter. */
export type RandomSource = () => number;

/** One sample of all channels, in the shape a Reading carries. */
export interface InstrumentSample {
  values: Record<ChannelName, number | null>;
  faults: ChannelName[];
}

/**
 * The board's instruments behind one call; a failing sensor is a fault flag, never an exception.
 * Asynchronous when a bus answers later (the Modbus flow meter).
 */
export interface Instruments {
  sample(): InstrumentSample | Promise<InstrumentSample>;
}

/**
 * Bringing the link up and the clock right, both asynchronous on the board. `done` is called once;
 * `ok` false means "try again later" and `detail` says why, for the console.
 */
export interface Network {
  connect(wifi: WifiSettings | null, done: (ok: boolean, detail?: string) => void): void;
}

export interface TimeSync {
  /** Sets the device clock (SNTP on the board). Certificates' dates are checked, so TLS waits for this. */
  sync(done: (ok: boolean, detail?: string) => void): void;
}
