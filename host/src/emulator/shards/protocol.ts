/**
 * Messages between the emulator's main thread and the worker threads that run shards of the fleet. Everything
 * here survives structured cloning (no functions, no class instances).
 */
import type { DeviceCount, FaultLogEntry, FleetOptions, IdentityFiles } from "../fleet";
import type { StatsSnapshot } from "../stats";

/** What a worker needs to build its Fleet: the fleet's options without the callbacks, and its share. */
export interface ShardSetup {
  fleet: Omit<FleetOptions, "device" | "onFault" | "shard">;
  shard: { index: number; count: number };
  /** Certificate and key files of this shard's devices. */
  files: Record<string, IdentityFiles>;
  /** Milliseconds between the shard's progress posts. */
  reportEveryMs: number;
}

export type ToShard =
  | { type: "start"; startWallMs: number }
  | { type: "steady" }
  | { type: "stopSampling" }
  | { type: "drain"; timeoutMs: number }
  | { type: "counts" }
  | { type: "shutdown" };

export type FromShard =
  | { type: "loaded"; done: number; total: number }
  | { type: "ready" }
  | {
      type: "report";
      stats: StatsSnapshot;
      pending: number;
      allConnectedAtS: number | undefined;
      faults: FaultLogEntry[];
    }
  | { type: "stopped" }
  | { type: "drained"; pending: number }
  | { type: "counts"; devices: DeviceCount[] }
  | { type: "down" }
  | { type: "failed"; message: string };
