/**
 * The fleet split across worker threads when one core is not enough: each worker runs every n-th board with
 * the same Fleet code; this class starts them on one shared clock, sums their figures for the live view and
 * the summary, and forwards the commands of a run (steady, stop, drain, shut down).
 */
import { Worker } from "node:worker_threads";
import { ClockSkewWindows } from "../fleet";
import type { DeviceCount, FaultLogEntry, FleetControl, FleetOptions, IdentityFiles } from "../fleet";
import { FleetStats } from "../stats";
import type { StatsSnapshot } from "../stats";
import type { FromShard, ShardSetup, ToShard } from "./protocol";

interface Shard {
  worker: Worker;
  latest: StatsSnapshot | undefined;
  pending: number;
  allConnectedAtS: number | undefined;
  loaded: number;
  /** Replies the main thread is waiting for, by message type. */
  waiting: Map<FromShard["type"], { resolve: (m: FromShard) => void; reject: (err: Error) => void }>;
}

const REPORT_EVERY_MS = 200;

export type ShardedFleetOptions = FleetOptions & { workers: number };

export class ShardedFleet implements FleetControl {
  readonly stats = new FleetStats();
  readonly faultLog: FaultLogEntry[] = [];
  readonly #o: ShardedFleetOptions;
  readonly #count: number;
  readonly #shards: Shard[] = [];
  readonly #clockSkew: ClockSkewWindows;
  #startWallMs = 0;
  #failure: Error | undefined;
  #closing = false;

  constructor(o: ShardedFleetOptions) {
    if (!Number.isInteger(o.workers) || o.workers < 2)
      throw new Error("a sharded fleet needs at least 2 workers");
    this.#o = o;
    this.#count = Math.min(o.workers, o.deviceIds.length);
    this.#clockSkew = new ClockSkewWindows(o.faults ?? []);
  }

  get failure(): Error | undefined {
    return this.#failure;
  }

  get allConnectedAtS(): number | undefined {
    let last = 0;
    for (const s of this.#shards) {
      if (s.allConnectedAtS === undefined) return undefined;
      last = Math.max(last, s.allConnectedAtS);
    }
    return this.#shards.length ? last : undefined;
  }

  async init(onProgress?: (done: number, total: number) => void): Promise<void> {
    const o = this.#o;
    const n = this.#count;
    for (let index = 0; index < n; index++) {
      const files: Record<string, IdentityFiles> = {};
      o.deviceIds.forEach((id, i) => {
        if (i % n === index) files[id] = o.device(id);
      });
      const { device: _device, onFault: _onFault, shard: _shard, workers: _workers, ...serialisable } = o;
      const setup: ShardSetup = {
        fleet: {
          ...serialisable,
          // The fleet's pacing is shared out, so the broker sees the same connection rate whatever the split.
          connectRate: o.connectRate / n,
          maxPendingConnects: Math.max(1, Math.ceil((o.maxPendingConnects ?? 256) / n)),
        },
        shard: { index, count: n },
        files,
        reportEveryMs: REPORT_EVERY_MS,
      };
      const worker = new Worker(new URL("./shard-worker.mjs", import.meta.url), { workerData: setup });
      const shard: Shard = {
        worker,
        latest: undefined,
        pending: 0,
        allConnectedAtS: undefined,
        loaded: 0,
        waiting: new Map(),
      };
      worker.on("message", (m: FromShard) => this.#onMessage(shard, m, onProgress));
      worker.on("error", (err) => this.#fail(new Error(`emulator worker ${index} failed: ${err.message}`)));
      worker.on("exit", (code) => {
        if (code !== 0 && !this.#closing)
          this.#fail(new Error(`emulator worker ${index} exited with code ${code}`));
      });
      this.#shards.push(shard);
    }
    await Promise.all(this.#shards.map((s) => this.#await(s, "ready")));
  }

  start(): void {
    this.#startWallMs = Date.now();
    this.#broadcast({ type: "start", startWallMs: this.#startWallMs });
  }

  elapsedS(): number {
    return (Date.now() - this.#startWallMs) / 1000;
  }

  clockUntrusted(deviceId: string): boolean {
    return this.#clockSkew.untrusted(deviceId, this.elapsedS());
  }

  markSteady(): void {
    this.stats.steady = true;
    this.#broadcast({ type: "steady" });
  }

  async stopSampling(): Promise<void> {
    await Promise.all(this.#shards.map((s) => this.#ask(s, { type: "stopSampling" }, "stopped")));
  }

  pendingMessages(): number {
    return this.#shards.reduce((n, s) => n + s.pending, 0);
  }

  async drain(timeoutMs: number): Promise<number> {
    const replies = await Promise.all(
      this.#shards.map((s) => this.#ask(s, { type: "drain", timeoutMs }, "drained")),
    );
    return replies.reduce((n, m) => n + (m.type === "drained" ? m.pending : 0), 0);
  }

  async deviceCounts(): Promise<DeviceCount[]> {
    const replies = await Promise.all(this.#shards.map((s) => this.#ask(s, { type: "counts" }, "counts")));
    const byId = new Map<string, DeviceCount>();
    for (const m of replies) if (m.type === "counts") for (const d of m.devices) byId.set(d.id, d);
    // In fleet order, as a single-threaded run lists them.
    return this.#o.deviceIds.map(
      (id) =>
        byId.get(id) ?? {
          id,
          published: 0,
          dropped: 0,
          confirmed: 0,
          awaiting: 0,
          confirmations: "off",
          boots: [],
          ringHeld: 0,
        },
    );
  }

  async shutdown(): Promise<void> {
    if (this.#failure) this.#closing = true;
    await Promise.all(
      this.#shards.map(async (s) => {
        await Promise.race([
          this.#ask(s, { type: "shutdown" }, "down").catch(() => undefined),
          new Promise((r) => setTimeout(r, 10_000)),
        ]);
        this.#closing = true;
        await s.worker.terminate();
      }),
    );
  }

  #onMessage(shard: Shard, m: FromShard, onProgress?: (done: number, total: number) => void): void {
    switch (m.type) {
      case "loaded": {
        shard.loaded = m.done;
        const done = this.#shards.reduce((n, s) => n + s.loaded, 0);
        onProgress?.(done, this.#o.deviceIds.length);
        break;
      }
      case "report": {
        shard.latest = m.stats;
        shard.pending = m.pending;
        shard.allConnectedAtS = m.allConnectedAtS;
        const latest = this.#shards.flatMap((s) => (s.latest ? [s.latest] : []));
        this.stats.absorb(latest, m.stats);
        for (const e of m.faults) {
          this.faultLog.push(e);
          this.#o.onFault?.(e);
        }
        break;
      }
      case "failed":
        this.#fail(new Error(`emulator worker: ${m.message}`));
        break;
      default:
        break;
    }
    const waiter = shard.waiting.get(m.type);
    if (waiter) {
      shard.waiting.delete(m.type);
      waiter.resolve(m);
    }
  }

  #broadcast(m: ToShard): void {
    for (const s of this.#shards) s.worker.postMessage(m);
  }

  #ask(s: Shard, m: ToShard, reply: FromShard["type"]): Promise<FromShard> {
    const p = this.#await(s, reply);
    s.worker.postMessage(m);
    return p;
  }

  #await(s: Shard, reply: FromShard["type"]): Promise<FromShard> {
    return new Promise((resolve, reject) => {
      if (this.#failure) return reject(this.#failure);
      s.waiting.set(reply, { resolve, reject });
    });
  }

  #fail(err: Error): void {
    if (this.#failure) return;
    this.#failure = err;
    for (const s of this.#shards) {
      for (const w of s.waiting.values()) w.reject(err);
      s.waiting.clear();
    }
  }
}
