/**
 * The fleet: creates the boards and runs the firmware's timers for all of them on one heap and one interval,
 * paces (re)connections through a token bucket (each board's own MqttSession decides when to reconnect, with
 * the firmware's backoff), injects the scenario's faults and logs each one, and at the end drains the
 * outboxes and reports.
 */
import { EMULATOR_FW_PREFIX } from "../../../firmware/src/telemetry/vocabulary";
import { X509Certificate } from "node:crypto";
import { mkdirSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import FileFlashArea from "../flash/file-flash-area";
import MemoryFlashArea from "../flash/memory-flash-area";
import { BrokerCheck } from "../tls/node-broker-trust";
import { nodeAead } from "../crypto/node-aead";
import { deriveDeviceKey } from "../crypto/device-keys";
import type { PayloadMode } from "../../../firmware/src/payload/telemetry-message";
import type { ConfirmationMode, ConfirmationState } from "../../../firmware/src/app/mqtt-session";
import { Board, MAX_INFLIGHT } from "./board";
import type { BootCount } from "./board";
import type { BrokerAddress } from "../../../firmware/src/app/broker-rotation";
import type { BoardEnvironment } from "./board";
import { PHYSICS_FAULTS } from "./faults/scenario";
import type { ResolvedFault } from "./faults/scenario";
import { Prng } from "../../../firmware/src/plant/prng";
import { FleetTimers } from "./session/fleet-timers";
import { FleetStats } from "./stats";

export interface IdentityFiles {
  cert: string;
  key: string;
}

/**
 * The boards' flash (the outbox ring, firmware/src/outbox/outbox-journal.ts). off: none, a power cut loses
 * the outbox; memory: every board, in this process's memory; file: every board, one file each in `dir`
 * (kept across runs: a board replays at its next run what it never got confirmed); auto (the default):
 * memory flash for the boards a power_cut fault targets, none for the others.
 */
export interface FlashSettings {
  mode: "off" | "auto" | "memory" | "file";
  dir?: string;
  /** Sectors of 4 KiB per board (default 64: 256 KiB, ~900 sealed readings). */
  sectors?: number;
}

export const DEFAULT_FLASH_SECTORS = 64;

export interface FleetOptions {
  deviceIds: readonly string[];
  rateHz: number;
  seed: number | string;
  host: string;
  port: number;
  /** Further brokers (the other nodes of a cluster): the boards are spread over all of them and fail over. */
  failover?: readonly BrokerAddress[];
  /** The root the boards trust (PEM), as provisioning gives the firmware. */
  caFile: string;
  /** pin-sha256 of the broker keys the boards accept (pki's brokerPins): a board refuses any other server. */
  brokerPins: readonly Uint8Array[];
  device(id: string): IdentityFiles;
  boot: number;
  fw?: string;
  /** When set, every board seals its readings with its derived key. */
  encryption?: { keyId: number; master: Uint8Array };
  faults?: readonly ResolvedFault[];
  /** New connections per second, reconnections included (reconnect storms excepted). */
  connectRate: number;
  /**
   * At most this many connections in progress (TCP + TLS + CONNACK) at once: beyond what the broker can
   * handshake, more attempts only overflow its listen backlog and wait out TCP SYN retransmissions.
   */
  maxPendingConnects?: number;
  maxInflight?: number;
  outboxCapacity?: number;
  /** End-to-end confirmations in every board's session (default auto, as the firmware). */
  confirmations?: ConfirmationMode;
  /** Default 60 s, as the firmware. */
  confirmTimeoutMs?: number;
  /** The boards' flash ring; default auto (memory flash for power-cut targets only). */
  flash?: FlashSettings;
  keepaliveS?: number;
  connectTimeoutMs?: number;
  onFault?: (e: FaultLogEntry) => void;
  /**
   * Run only every count-th board starting at index (a worker thread's share). Phases still come from the
   * whole fleet's sequence, so a board samples at the same instants whichever thread runs it.
   */
  shard?: { index: number; count: number };
}

export interface FaultLogEntry {
  /** Scripted time, seconds since the run started. */
  at: number;
  /** When the emulator acted on it: wall clock and seconds since start. */
  wallTime: string;
  elapsedS: number;
  device: string;
  type: ResolvedFault["type"];
  event: "start" | "end";
  faultId: number;
  detail?: Record<string, unknown>;
}

/** The emulated boards' reconnect backoff (the firmware's Backoff, min and max delay). */
const RECONNECT_MIN_MS = 500;
const RECONNECT_MAX_MS = 30_000;
const TICK_MS = 5;

/** A device's totals at the end of a run. */
export interface DeviceCount {
  id: string;
  published: number;
  dropped: number;
  /** Readings the store confirmed, and PUBACKed ones still awaiting confirmation. */
  confirmed: number;
  awaiting: number;
  confirmations: ConfirmationState;
  /** Readings taken per boot (more than one after a power cut), oldest first; they add up to `published`. */
  boots: BootCount[];
  /** Readings held in the board's flash ring at the end (0 without one). */
  ringHeld: number;
}

/** What a run needs from a fleet, whether its boards live on this thread (Fleet) or on workers (ShardedFleet). */
export interface FleetControl {
  readonly stats: FleetStats;
  readonly faultLog: readonly FaultLogEntry[];
  readonly allConnectedAtS: number | undefined;
  /** Set when the fleet cannot go on (a worker thread died): the run stops and reports it. */
  readonly failure: Error | undefined;
  init(onProgress?: (done: number, total: number) => void): Promise<void>;
  start(): void;
  elapsedS(): number;
  clockUntrusted(deviceId: string): boolean;
  /** From now on PUBACK latencies also go to the steady-state histogram. */
  markSteady(): void;
  /** Resolves once no board samples any more (and, for workers, their last figures are in). */
  stopSampling(): Promise<void>;
  pendingMessages(): number;
  drain(timeoutMs: number): Promise<number>;
  shutdown(): Promise<void>;
  deviceCounts(): Promise<DeviceCount[]>;
}

/** Which devices have a deliberately wrong clock, and when (their end-to-end latencies are not meaningful). */
export class ClockSkewWindows {
  readonly #faults: { fault: ResolvedFault; targets: Set<string> }[];

  constructor(faults: readonly ResolvedFault[]) {
    this.#faults = faults
      .filter((f) => f.type === "clock_skew")
      .map((fault) => ({ fault, targets: new Set(fault.targets) }));
  }

  /** Whether the device's clock is off at run time t (seconds) or was within the minute before. */
  untrusted(deviceId: string, t: number): boolean {
    if (this.#faults.length === 0) return false;
    return this.#faults.some(
      ({ fault: f, targets }) => t >= f.at - 1 && t < f.end + 60 && targets.has(deviceId),
    );
  }
}

export class Fleet implements FleetControl {
  readonly boards: Board[] = [];
  readonly stats = new FleetStats();
  readonly faultLog: FaultLogEntry[] = [];
  readonly byId = new Map<string, Board>();
  readonly #o: FleetOptions;
  readonly #boardTimers = new FleetTimers();
  readonly #connectQueue: Board[] = [];
  #queueHead = 0;
  #tokens = 0;
  #lastPump = 0;
  readonly #jitter: Prng;
  readonly #timers: NodeJS.Timeout[] = [];
  #stopping = false;
  /** The board whose first connection the pacing is granting right now (it opens without queueing again). */
  #granting: Board | undefined;
  /** Boards held offline by a network_drop until this performance.now() time. */
  readonly #offlineUntil = new Map<Board, number>();
  readonly #storm = new Set<Board>();
  readonly #pending = new Set<Board>();
  readonly #clockSkew: ClockSkewWindows;
  startWallMs = 0;
  startPerf = 0;
  allConnectedAtS: number | undefined;
  /** A fleet on this thread fails by throwing; it never sets this. */
  readonly failure: Error | undefined = undefined;

  constructor(o: FleetOptions) {
    this.#o = o;
    this.#jitter = new Prng(`${o.seed}/jitter`);
    this.#clockSkew = new ClockSkewWindows(o.faults ?? []);
  }

  /** Reads the CA, builds the boards and loads their identities. Sampling and connecting start with start(). */
  async init(onProgress?: (done: number, total: number) => void): Promise<void> {
    const o = this.#o;
    const ca = new X509Certificate(await readFile(o.caFile)).raw;
    const keys = new Map<string, Uint8Array>();
    const env: BoardEnvironment = {
      brokers: [{ host: o.host, port: o.port }, ...(o.failover ?? [])],
      caDer: ca.buffer.slice(ca.byteOffset, ca.byteOffset + ca.byteLength) as ArrayBuffer,
      brokerPins: o.brokerPins.map((p) => p.slice().buffer as ArrayBuffer),
      brokerCheck: new BrokerCheck(),
      stats: this.stats,
      timers: this.#boardTimers,
      random: () => this.#jitter.next(),
      rateHz: o.rateHz,
      boot: o.boot,
      fw: o.fw ?? `${EMULATOR_FW_PREFIX}1`,
      keepaliveS: o.keepaliveS ?? 60,
      maxInflight: Math.min(o.maxInflight ?? 16, MAX_INFLIGHT),
      outboxCapacity: o.outboxCapacity ?? 3600,
      connectTimeoutMs: o.connectTimeoutMs ?? 30_000,
      reconnectMinMs: RECONNECT_MIN_MS,
      reconnectMaxMs: RECONNECT_MAX_MS,
      confirmations: o.confirmations ?? "auto",
      confirmTimeoutMs: o.confirmTimeoutMs ?? 60_000,
      readBuffer: Buffer.allocUnsafe(16 * 1024),
      payloadMode: (id): PayloadMode => {
        const enc = o.encryption;
        if (!enc) return PLAIN;
        let key = keys.get(id);
        if (!key) {
          key = deriveDeviceKey(enc.master, id);
          keys.set(id, key);
        }
        return { kind: "encrypted", aead: nodeAead, keyId: enc.keyId, key };
      },
      requestOpen: (b) => this.#requestOpen(b),
      onConnectionEnded: (b) => {
        this.#pending.delete(b);
      },
      onOnline: (b) => {
        this.#pending.delete(b);
        if (this.allConnectedAtS === undefined && this.stats.connected === this.boards.length)
          this.allConnectedAtS = (performance.now() - this.startPerf) / 1000;
      },
    };
    const phaseRng = new Prng(`${o.seed}/phase`);
    const byDevice = new Map<string, ResolvedFault[]>();
    for (const f of o.faults ?? []) {
      if (!PHYSICS_FAULTS.includes(f.type) && f.type !== "clock_skew") continue;
      for (const d of f.targets) {
        const list = byDevice.get(d) ?? [];
        list.push(f);
        byDevice.set(d, list);
      }
    }
    const shard = o.shard ?? { index: 0, count: 1 };
    const flashFor = flashFactory(o.flash ?? { mode: "auto" }, o.faults ?? []);
    o.deviceIds.forEach((id, index) => {
      const phase = phaseRng.next() / o.rateHz;
      if (index % shard.count !== shard.index) return;
      const files = o.device(id);
      const flash = flashFor(id);
      const b = new Board({
        id,
        index,
        seed: o.seed,
        certFile: files.cert,
        keyFile: files.key,
        env,
        phase,
        ...(flash ? { flash } : {}),
      });
      b.faults = byDevice.get(id) ?? [];
      this.boards.push(b);
      this.byId.set(id, b);
    });
    for (let i = 0; i < this.boards.length; i++) {
      this.boards[i]!.loadIdentity();
      if ((i + 1) % 500 === 0 || i + 1 === this.boards.length) {
        onProgress?.(i + 1, this.boards.length);
        await new Promise((r) => setImmediate(r)); // keep the verifier's socket and signals served
      }
    }
  }

  /**
   * Starts the clock: boards sample from now on (offline ones fill their outbox) and connect at the paced rate.
   * Shards of one fleet pass the same wall-clock start so their timelines line up.
   */
  start(startWallMs?: number): void {
    const now = Date.now();
    this.startWallMs = startWallMs ?? now;
    this.startPerf = performance.now() - (now - this.startWallMs);
    this.#lastPump = this.startPerf;
    for (const b of this.boards) {
      b.startSampling(this.startPerf);
      this.#connectQueue.push(b);
    }
    this.#timers.push(setInterval(() => this.#tick(), TICK_MS));
    this.#timers.push(setInterval(() => this.#keepalive(), 5_000));
    this.#scheduleFaults();
  }

  /** Seconds since start. */
  elapsedS(): number {
    return (performance.now() - this.startPerf) / 1000;
  }

  /** Whether a device's clock is deliberately off now or was within the last minute (for latency accounting). */
  clockUntrusted(deviceId: string): boolean {
    return this.#clockSkew.untrusted(deviceId, this.elapsedS());
  }

  markSteady(): void {
    this.stats.steady = true;
  }

  deviceCounts(): Promise<DeviceCount[]> {
    return Promise.resolve(
      this.boards.map((b) => {
        const boots = b.boots();
        return {
          id: b.id,
          published: boots.reduce((n, x) => n + x.taken, 0),
          dropped: b.outbox.dropped,
          confirmed: b.session?.counters.confirmed ?? 0,
          awaiting: b.outbox.delivered,
          confirmations: b.session?.confirmationState ?? "off",
          boots,
          ringHeld: b.journal?.ring.unconfirmed ?? 0,
        };
      }),
    );
  }

  /** Stops sampling; boards keep their connections so their outboxes can drain. */
  stopSampling(): Promise<void> {
    for (const b of this.boards) b.stopSampling();
    return Promise.resolve();
  }

  /** Readings not yet PUBACKed (those PUBACKed and awaiting the store's confirmation are not counted). */
  pendingMessages(): number {
    let n = 0;
    for (const b of this.boards) n += b.outbox.size - b.outbox.delivered;
    return n;
  }

  /** PUBACKed readings still waiting for a confirmation the board expects. */
  awaitingConfirmations(): number {
    let n = 0;
    for (const b of this.boards) n += b.awaitingConfirmation;
    return n;
  }

  /**
   * Waits until every reading is PUBACKed and, on boards that expect confirmations, confirmed stored (or the
   * timeout passes); returns what is still unacknowledged.
   */
  async drain(timeoutMs: number): Promise<number> {
    const until = performance.now() + timeoutMs;
    while ((this.pendingMessages() > 0 || this.awaitingConfirmations() > 0) && performance.now() < until)
      await sleep(50);
    return this.pendingMessages();
  }

  /** Disconnects every board (announcing offline) and stops all timers. */
  async shutdown(): Promise<void> {
    this.#stopping = true;
    // The sessions close their connections from a timer turn: the tick keeps running until they have.
    for (const b of this.boards) b.shutdown();
    const until = performance.now() + 5_000;
    while (this.boards.some((b) => b.client?.opened && !b.client.closed) && performance.now() < until)
      await sleep(20);
    for (const t of this.#timers) clearTimeout(t); // clearTimeout also clears intervals
    for (const b of this.boards) b.dropConnection();
    for (const b of this.boards) b.closeFlash();
  }

  #tick(): void {
    const now = performance.now();
    this.#boardTimers.runDue(now);
    this.#pumpConnects(now);
  }

  #pumpConnects(now: number): void {
    const rate = this.#o.connectRate;
    this.#tokens = Math.min(Math.max(1, rate / 20), this.#tokens + ((now - this.#lastPump) / 1000) * rate);
    this.#lastPump = now;
    const q = this.#connectQueue;
    const maxPending = this.#o.maxPendingConnects ?? 256;
    while (this.#tokens >= 1 && this.#queueHead < q.length && this.#pending.size < maxPending) {
      const b = q[this.#queueHead++]!;
      this.#tokens -= 1;
      if (this.#stopping) continue;
      if (!b.started) {
        // The board's first connection: its session starts now, so its CONNACK timeout runs from here.
        this.#granting = b;
        b.startSession();
        this.#granting = undefined;
      } else this.#open(b);
    }
    if (this.#queueHead > 1024 && this.#queueHead * 2 > q.length) {
      q.splice(0, this.#queueHead);
      this.#queueHead = 0;
    }
  }

  /** A board's session asked for a connection (its factory ran): open it now or when the pacing allows. */
  #requestOpen(b: Board): void {
    if (this.#stopping) return;
    const held = this.#offlineUntil.has(b);
    // A reconnect storm: everyone back at once, past the pacing, to load the broker the way a site outage does.
    if (!held && (this.#granting === b || this.#storm.delete(b))) this.#open(b);
    else this.#connectQueue.push(b);
  }

  #open(b: Board): void {
    const held = this.#offlineUntil.get(b);
    if (held !== undefined) {
      if (held > performance.now()) {
        // Off the network: the attempt fails at once, and the session backs off as it would on a board.
        b.failOpen();
        return;
      }
      this.#offlineUntil.delete(b);
    }
    if (b.open()) this.#pending.add(b);
  }

  #keepalive(): void {
    const now = performance.now();
    for (const b of this.boards) {
      const c = b.client;
      if (!c || !c.established) continue;
      // The ECMA-419 client's keepalive: PINGREQ at half the period, the connection fails past 1.5 periods.
      const ka = c.keepaliveMs;
      if (now - c.lastReceivedAt > 1.5 * ka) c.drop("keepalive timeout");
      else if (now - c.lastSentAt > ka / 2) c.ping();
    }
  }

  #log(f: ResolvedFault, device: string, event: "start" | "end", detail?: Record<string, unknown>): void {
    const e: FaultLogEntry = {
      at: event === "start" ? f.at : f.end,
      wallTime: new Date().toISOString(),
      elapsedS: Math.round(this.elapsedS() * 1000) / 1000,
      device,
      type: f.type,
      event,
      faultId: f.id,
      ...(detail ? { detail } : {}),
    };
    if (event === "start") this.stats.faultsInjected++;
    this.faultLog.push(e);
    this.#o.onFault?.(e);
  }

  #scheduleFaults(): void {
    for (const f of this.#o.faults ?? []) {
      const detail = faultDetail(f);
      const at = (s: number, fn: () => void): void => {
        const t = setTimeout(fn, Math.max(0, s * 1000 - (performance.now() - this.startPerf)));
        t.unref();
        this.#timers.push(t);
      };
      at(f.at, () => {
        for (const id of f.targets) {
          const b = this.byId.get(id);
          if (!b) continue;
          if (f.type === "network_drop") {
            if (f.offlineS !== undefined) this.#offlineUntil.set(b, performance.now() + f.offlineS * 1000);
            b.dropConnection();
          } else if (f.type === "reconnect_storm") {
            if (b.online) this.#storm.add(b);
            b.dropConnection();
          } else if (f.type === "power_cut") b.powerCut();
          this.#log(f, id, "start", detail);
        }
      });
      if (f.type === "power_cut") {
        at(f.at + powerCutS(f), () => {
          for (const id of f.targets) {
            const b = this.byId.get(id);
            if (!b || this.#stopping) continue;
            b.powerOn(this.startPerf);
            this.#log(f, id, "end", { boot: b.boot, recovered: b.journal?.counts.recovered ?? 0 });
          }
        });
      } else if (Number.isFinite(f.end) && f.type !== "network_drop" && f.type !== "reconnect_storm") {
        at(f.end, () => {
          for (const id of f.targets) if (this.byId.has(id)) this.#log(f, id, "end");
        });
      }
    }
  }
}

const PLAIN: PayloadMode = { kind: "plain" };

/** Seconds a power_cut keeps the board dark (its duration; default 5 s). */
export function powerCutS(f: { duration?: number }): number {
  return f.duration ?? 5;
}

/** Each board's flash, as the settings give it; undefined: the board has none. */
function flashFactory(
  settings: FlashSettings,
  faults: readonly ResolvedFault[],
): (id: string) => (MemoryFlashArea | FileFlashArea) | undefined {
  const sectors = settings.sectors ?? DEFAULT_FLASH_SECTORS;
  switch (settings.mode) {
    case "off":
      return () => undefined;
    case "memory":
      return () => new MemoryFlashArea({ sectors });
    case "file": {
      const dir = settings.dir;
      if (!dir) throw new Error("flash mode file needs a directory");
      mkdirSync(dir, { recursive: true, mode: 0o700 });
      return (id) => new FileFlashArea({ path: join(dir, `${id}.flash`), sectors });
    }
    case "auto": {
      const cut = new Set(faults.filter((f) => f.type === "power_cut").flatMap((f) => f.targets));
      return (id) => (cut.has(id) ? new MemoryFlashArea({ sectors }) : undefined);
    }
  }
}

function faultDetail(f: ResolvedFault): Record<string, unknown> | undefined {
  switch (f.type) {
    case "purity_drop":
      return { factor: f.factor ?? 60, ...(f.duration ? { duration: f.duration } : {}) };
    case "voltage_flicker":
      return { amplitude: f.amplitude ?? 0.05, ...(f.duration ? { duration: f.duration } : {}) };
    case "sensor_failure":
      return { channel: f.channel, mode: f.mode, ...(f.duration ? { duration: f.duration } : {}) };
    case "clock_skew":
      return { offsetS: f.offsetS, ...(f.duration ? { duration: f.duration } : {}) };
    case "network_drop":
      return f.offlineS !== undefined ? { offlineS: f.offlineS } : undefined;
    case "power_cut":
      return { offS: powerCutS(f) };
    default:
      return f.duration ? { duration: f.duration } : undefined;
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
