/**
 * Messages between the emulator's main thread and the worker threads that run shards of the fleet. Everything
 * here survives structured cloning (no functions, no class instances).
 */
import type { ResolvedFault } from "../faults/scenario";
import type { DeviceCount, FaultLogEntry, IdentityFiles } from "../fleet";
import type { StatsSnapshot } from "../stats";

export interface ShardSetup {
  /** The whole fleet, in order: phases are drawn along it. */
  deviceIds: string[];
  shard: { index: number; count: number };
  /** Certificate and key files of this shard's devices. */
  files: Record<string, IdentityFiles>;
  rateHz: number;
  seed: number | string;
  host: string;
  port: number;
  caFile: string;
  boot: number;
  fw?: string;
  encryption?: { keyId: number; master: Uint8Array };
  faults: ResolvedFault[];
  connectRate: number;
  maxPendingConnects?: number;
  maxInflight?: number;
  outboxCapacity?: number;
  keepaliveS?: number;
  connectTimeoutMs?: number;
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
  | { type: "report"; stats: StatsSnapshot; pending: number; allConnectedAtS: number | undefined; faults: FaultLogEntry[] }
  | { type: "stopped" }
  | { type: "drained"; pending: number }
  | { type: "counts"; devices: DeviceCount[] }
  | { type: "down" }
  | { type: "failed"; message: string };
