/**
 * One emulated board: the firmware's own board logic above the socket — its Outbox, MqttSession (packet ids,
 * in-order resend with DUP, CONNACK timeout, retained status and will), Backoff with the firmware's per-board
 * jitter and its Sampler — driven by the physics model, over the Node MQTT client seam. What stays here is
 * Node-specific: the identity files, the connection the fleet paces, and the figures the fleet reports.
 */
import { X509Certificate, createPrivateKey } from "node:crypto";
import { readFileSync } from "node:fs";
import Backoff from "../../../firmware/src/app/backoff";
import BrokerRotation, { type BrokerAddress } from "../../../firmware/src/app/broker-rotation";
import { deviceRandom } from "../../../firmware/src/app/device-random";
import type { MqttClient, MqttConnectOptions } from "../../../firmware/src/app/mqtt-client";
import MqttSession, { STATUS_PACKET_ID } from "../../../firmware/src/app/mqtt-session";
import type { ConfirmationMode, OutboxMessage } from "../../../firmware/src/app/mqtt-session";
import Sampler from "../../../firmware/src/app/sampler";
import type {
  Clock,
  InstrumentSample,
  Instruments,
  Log,
  RandomSource,
  TimerHandle,
} from "../../../firmware/src/app/services";
import { offlineStatus, onlineStatus } from "../../../firmware/src/app/status-message";
import { SessionTrust } from "../../../firmware/src/app/session-trust";
import type { TlsIdentity } from "../../../firmware/src/identity/nvs-layout";
import { TrustRotationHandler } from "../../../firmware/src/identity/trust-rotation";
import { MemoryNvs } from "./memory-nvs";
import { nodeKeyMaker } from "../trust/node-key-maker";
import type { FlashArea } from "../../../firmware/src/outbox/flash-area";
import { Outbox } from "../../../firmware/src/outbox/outbox";
import OutboxJournal from "../../../firmware/src/outbox/outbox-journal";
import type { PayloadMode, PayloadModeSource } from "../../../firmware/src/payload/telemetry-message";
import { statusTopic, telemetryTopic } from "../../../firmware/src/telemetry/topics";
import { clockSkewAt, physicsEffectsAt } from "./faults/effects";
import type { ResolvedFault } from "./faults/scenario";
import { NodeMqttClient, secureContextFor } from "./mqtt/node-mqtt-client";
import type { ConnectionProbe } from "./mqtt/node-mqtt-client";
import { PlantInstruments } from "../../../firmware/src/plant/plant-instruments";
import type { FleetTimers } from "./session/fleet-timers";
import type { FleetStats } from "./stats";
import type { BrokerCheck } from "../tls/node-broker-trust";

/** Room for PUBLISH times of the in-flight window, indexed by packet id (must exceed maxInflight). */
const SENT_RING = 64;
/** The in-flight window must fit the ring of send times. */
export const MAX_INFLIGHT = SENT_RING / 2;

/** The steady clock of every board (one function for the fleet, not one closure per board). */
const PERF_CLOCK = { now: (): number => performance.now() };

/** An emulated board says nothing on a console: its figures go to the fleet's stats. */
const SILENT: Log = { info: () => undefined, warn: () => undefined, error: () => undefined };

/** What every board shares, set once by the fleet. */
export interface BoardEnvironment {
  /** Every broker of the fleet; board `index` starts at `index % length` (home) and fails over round robin. */
  brokers: readonly BrokerAddress[];
  /** The trust anchor (the fleet's root CA), DER, shared by every board. */
  caDer: ArrayBuffer;
  /** pin-sha256 of the broker keys the boards accept, as provisioning writes them into NVS. */
  brokerPins: ArrayBuffer[];
  /**
   * The firmware's broker check (pins, strict chain) over node:crypto, run before a board sends anything,
   * against the pins of the identity each connection uses (the NVS slot in use: a rotation may move them).
   */
  brokerCheck: BrokerCheck;
  stats: FleetStats;
  timers: FleetTimers;
  /** The platform's draw for backoff jitter (seeded: same run, same delays); each board mixes in its own stream. */
  random: RandomSource;
  rateHz: number;
  /** The run's boot; a board power-cut k times boots again as boot + k (setup reserves them). */
  boot: number;
  fw: string;
  keepaliveS: number;
  maxInflight: number;
  outboxCapacity: number;
  connectTimeoutMs: number;
  reconnectMinMs: number;
  reconnectMaxMs: number;
  /** End-to-end confirmations (the firmware's MqttSession): on, off or auto. */
  confirmations: ConfirmationMode;
  confirmTimeoutMs: number;
  /** One receive buffer for every board of the fleet (boards receive acks and small downlink messages; a trust message is a few KB). */
  readBuffer: Buffer;
  payloadMode(deviceId: string): PayloadMode;
  /** The board's session wants a connection: the fleet opens it when its pacing allows. */
  requestOpen(board: Board): void;
  /** A connection the fleet opened ended (failed, refused or lost). */
  onConnectionEnded(board: Board, established: boolean): void;
  onOnline(board: Board): void;
}

/** Readings a board took in one boot. */
export interface BootCount {
  boot: number;
  taken: number;
}

export class Board implements Instruments, Clock, ConnectionProbe {
  readonly id: string;
  readonly index: number;
  /** Offset of this board's sampling instants within a period, seconds; spreads the fleet's load. */
  readonly phase: number;
  readonly physics: PlantInstruments;
  faults: ResolvedFault[] = [];
  /** Next sample index; the reading with seq k is taken at simulated time phase + k / rate. */
  nextSample = 0;
  readonly #env: BoardEnvironment;
  readonly #certFile: string;
  readonly #keyFile: string;
  readonly #sentAt = new Float64Array(SENT_RING);
  /** The board's flash chip (the outbox ring), if it has one: it outlives a power cut, the RAM state does not. */
  readonly #flash: (FlashArea & { close?(): void }) | undefined;
  #journal: OutboxJournal<OutboxMessage> | undefined;
  #outbox: Outbox<OutboxMessage>;
  #boot: number;
  #reboots = 0;
  #powered = true;
  readonly #pastBoots: BootCount[] = [];
  #trust: SessionTrust | undefined;
  #mode: PayloadMode | PayloadModeSource | undefined;
  #session: MqttSession | undefined;
  #sampler: Sampler | undefined;
  #client: NodeMqttClient | undefined;
  #sampling: TimerHandle | undefined;
  #ackedSeen = 0;
  #droppedSeen = 0;
  #openedAt = 0;

  constructor(o: {
    id: string;
    index: number;
    seed: number | string;
    certFile: string;
    keyFile: string;
    env: BoardEnvironment;
    phase: number;
    /** The outbox ring's flash (file or memory); absent: the outbox is in RAM only and a power cut loses it. */
    flash?: FlashArea & { close?(): void };
  }) {
    this.id = o.id;
    this.index = o.index;
    this.phase = o.phase;
    this.#env = o.env;
    this.#certFile = o.certFile;
    this.#keyFile = o.keyFile;
    this.physics = new PlantInstruments({ seed: o.seed, deviceId: o.id });
    this.#flash = o.flash;
    this.#boot = o.env.boot;
    this.#outbox = this.#bootOutbox();
  }

  /** The outbox of the current boot (a power cut replaces it with the next boot's). */
  get outbox(): Outbox<OutboxMessage> {
    return this.#outbox;
  }
  get journal(): OutboxJournal<OutboxMessage> | undefined {
    return this.#journal;
  }
  get boot(): number {
    return this.#boot;
  }
  /** False between a power cut and the power coming back. */
  get powered(): boolean {
    return this.#powered;
  }
  /** Readings taken per boot this run, oldest first; the last entry is the current boot's. */
  boots(): BootCount[] {
    return [...this.#pastBoots, { boot: this.#boot, taken: this.#outbox.nextSeq }];
  }

  get online(): boolean {
    return this.#client?.established ?? false;
  }
  /** The current connection, if the session has one. */
  get client(): NodeMqttClient | undefined {
    return this.#client;
  }
  get session(): MqttSession | undefined {
    return this.#session;
  }
  /** The serial of the certificate the board connects with now (lowercase hex), as its status reports it. */
  get certSerial(): string | undefined {
    return this.#session?.certSerial;
  }
  /**
   * PUBACKed readings this board still waits to see confirmed: only when confirmations are expected (mode on, or
   * auto once one came); an auto board that has heard none yet would fall back, not wait.
   */
  get awaitingConfirmation(): number {
    const state = this.#session?.confirmationState;
    const expects = state === "present" || (state === "awaiting" && this.#env.confirmations === "on");
    return expects ? this.outbox.delivered : 0;
  }

  get started(): boolean {
    return this.#session !== undefined && this.#session.state !== "idle";
  }

  /** Simulated time of sample k, seconds since the run started. */
  sampleTime(k: number): number {
    return this.phase + k / this.#env.rateHz;
  }

  /**
   * Loads the board's certificate and key and builds its session, as a board does at boot. The fleet calls
   * this before the clock starts, so connect times measure handshakes, not file parsing.
   */
  loadIdentity(): void {
    if (this.#trust) {
      if (!this.#session && this.#powered) this.#buildSession();
      return;
    }
    const env = this.#env;
    const base: TlsIdentity = {
      caDer: new Uint8Array(env.caDer),
      certDer: new Uint8Array(new X509Certificate(readFileSync(this.#certFile)).raw),
      keyDer: new Uint8Array(createPrivateKey(this.#readKey()).export({ format: "der", type: "pkcs8" })),
      brokerPins: env.brokerPins.map((p) => new Uint8Array(p)),
    };
    const mode = env.payloadMode(this.id);
    // As the firmware app: field rotation over down/trust when the board seals its readings (trust messages
    // are sealed under the same payload key), its NVS slots in memory (kept across a power cut, as NVS is);
    // readings are sealed under the payload key of the slot in use.
    const handler =
      mode.kind === "encrypted"
        ? new TrustRotationHandler({
            store: new MemoryNvs(),
            aead: mode.aead,
            clock: this,
            log: SILENT,
            deviceId: this.id,
            payload: { keyId: mode.keyId, key: mode.key },
            base,
            // Key requests: the board makes its key (node:crypto here, mbedTLS on the board) and sends a CSR.
            keys: nodeKeyMaker,
          })
        : undefined;
    this.#mode = handler ?? mode;
    this.#trust = handler ? new SessionTrust({ handler }) : new SessionTrust({ tls: base });
    // Built now, not at the first connect: the TLS context is what the board's identity costs.
    secureContextFor(this.#trust.current().tls);
    if (this.#powered) this.#buildSession();
  }

  #readKey(): Buffer {
    try {
      return readFileSync(this.#keyFile);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
      // After `trust rotate` (the key made on the board) the PKI holds the certificate only; the key was in the board's NVS,
      // which for an emulated board lasts one run.
      throw new Error(
        `board ${this.id}: no private key at ${this.#keyFile}: its key was made on the board (trust rotate), and an emulated board keeps it only for the run it was made in; give it a new key and certificate with npm run pki -- rotate ${this.id}`,
      );
    }
  }

  /** The outbox a boot starts with: over the flash ring (what earlier boots left in it first), or in RAM. */
  #bootOutbox(): Outbox<OutboxMessage> {
    this.#journal = undefined;
    if (!this.#flash) return new Outbox<OutboxMessage>({ capacity: this.#env.outboxCapacity });
    const topic = telemetryTopic(this.id);
    this.#journal = new OutboxJournal<OutboxMessage>({
      flash: this.#flash,
      boot: this.#boot,
      capacity: this.#env.outboxCapacity,
      item: (payload) => ({ topic, payload }),
    });
    return this.#journal.outbox;
  }

  /** The boot's RAM state above the outbox: the session and the sampler, as the firmware app builds them. */
  #buildSession(): void {
    const env = this.#env;
    const boot = this.#boot;
    const outbox = this.#outbox;
    const topic = statusTopic(this.id);
    // Callbacks as object-literal methods over `board`, not arrows: under tsx (esbuild keepNames) an arrow
    // named by its property carries a ~300 B property dictionary, per board.
    // eslint-disable-next-line @typescript-eslint/no-this-alias
    const board = this;
    this.#session = new MqttSession({
      factory(options) {
        return board.#newClient(options);
      },
      timers: env.timers,
      log: SILENT,
      backoff: new Backoff({
        minMs: env.reconnectMinMs,
        maxMs: env.reconnectMaxMs,
        random: deviceRandom(env.random, this.id, boot),
      }),
      outbox,
      brokers: new BrokerRotation(homeFirst(env.brokers, this.index), PERF_CLOCK),
      clientId: this.id,
      tls: null,
      trust: this.#trust!,
      keepaliveMs: env.keepaliveS * 1000,
      maxInflight: env.maxInflight,
      connectTimeoutMs: env.connectTimeoutMs,
      statusTopic: topic,
      onlineStatus(certSerial) {
        return onlineStatus({ boot, fw: env.fw, outbox, now: Date.now(), certSerial });
      },
      offlineStatus: offlineStatus(boot),
      confirmations: { mode: env.confirmations, timeoutMs: env.confirmTimeoutMs, boot },
      ...(this.#journal ? { earlierBoots: this.#journal } : {}),
      now: PERF_CLOCK.now,
    });
    this.#sampler = new Sampler({
      timers: env.timers,
      clock: this,
      log: SILENT,
      instruments: this,
      outbox,
      intervalMs: 1000 / env.rateHz,
      sensorId: this.id,
      boot,
      fw: env.fw,
      mode: this.#mode!,
      onQueued() {
        board.#onQueued();
      },
    });
  }

  /** Starts the session (its first connection); the fleet calls this when its pacing lets the board connect. */
  startSession(): void {
    if (!this.#powered) return;
    this.loadIdentity();
    this.#session!.start();
  }

  /**
   * Starts sampling so that reading k is taken at startPerf + sampleTime(k) (performance.now() milliseconds).
   * The firmware's Sampler takes each reading; the pacing is the fleet's timeline rather than Sampler.start's
   * timer, so a worker that starts late catches up instead of shifting its boards' instants.
   */
  startSampling(startPerf: number): void {
    if (!this.#powered) return;
    this.loadIdentity();
    const sampler = this.#sampler!;
    this.#env.timers.clear(this.#sampling);
    this.#sampling = this.#env.timers.repeatFrom(
      () => sampler.tick(),
      1000 / this.#env.rateHz,
      startPerf + this.sampleTime(this.nextSample) * 1000,
    );
  }

  /**
   * A power cut: the socket dies without DISCONNECT (the broker publishes the will), and everything in RAM
   * (the outbox, the session and its timers, the sampler) is gone. Only the flash ring, if any, remains.
   */
  powerCut(): void {
    if (!this.#powered) return;
    this.#powered = false;
    this.stopSampling();
    this.#client?.drop("power cut (injected)");
    // Clears the session's timers; its client is destroyed already, so nothing more goes out.
    this.#session?.stop();
    this.#session = undefined;
    this.#sampler = undefined;
    this.#pastBoots.push({ boot: this.#boot, taken: this.#outbox.nextSeq });
    this.#outbox = new Outbox<OutboxMessage>({ capacity: 1 }); // no RAM while the power is off
    this.#journal = undefined;
  }

  /**
   * Power back: a new boot (the next boot number), its outbox mounted from the flash ring, sampling from the
   * next instant on the fleet's timeline (`startPerf`: the fleet's start), and a first connection.
   */
  powerOn(startPerf: number): void {
    if (this.#powered) return;
    this.#powered = true;
    this.#reboots++;
    this.#boot = this.#env.boot + this.#reboots;
    this.#ackedSeen = 0;
    this.#droppedSeen = 0;
    this.#outbox = this.#bootOutbox();
    this.loadIdentity();
    // The readings of the dark period were never taken: the next one is the next instant from now.
    const k = Math.ceil(((performance.now() - startPerf) / 1000 - this.phase) * this.#env.rateHz);
    this.nextSample = Math.max(this.nextSample, k);
    this.startSampling(startPerf);
    this.#session!.start();
  }

  stopSampling(): void {
    this.#env.timers.clear(this.#sampling);
    this.#sampling = undefined;
  }

  /** Instruments: the reading due now, from the plant model at its place on the simulated timeline. */
  sample(): InstrumentSample {
    const k = this.nextSample++;
    const t = this.sampleTime(k);
    return this.physics.sample(t, this.faults.length ? physicsEffectsAt(this.faults, t) : undefined);
  }

  /** Clock: the board's wall clock, with an injected skew at the reading about to be taken. */
  now(): number {
    if (!this.faults.length) return Date.now();
    return Date.now() + Math.round(clockSkewAt(this.faults, this.sampleTime(this.nextSample)) * 1000);
  }

  /** Network failure as the broker sees it: no DISCONNECT, so the broker publishes the will. */
  dropConnection(): void {
    this.#client?.drop("network drop (injected)");
  }

  /** Stops for good: no more sampling or reconnecting; the connection ends and the will says offline. */
  shutdown(): void {
    this.stopSampling();
    this.#session?.stop();
    // A clean stop: the ring's last "forget through" markers are written (a power cut skips this).
    this.#journal?.flush();
  }

  /** Closes the flash file, if any (after shutdown). */
  closeFlash(): void {
    this.#flash?.close?.();
  }

  // ConnectionProbe: what the fleet sees of the connection.
  onConnack(_client: NodeMqttClient, accepted: boolean): void {
    if (!accepted) return;
    const stats = this.#env.stats;
    stats.connected++;
    stats.connects++;
    stats.connectLatency.recordMs(performance.now() - this.#openedAt);
    this.#env.onOnline(this);
  }

  onPublish(id: number, duplicate: boolean, retain: boolean): void {
    if (retain) return; // the status announcement
    const stats = this.#env.stats;
    stats.publishes++;
    if (duplicate) stats.resends++;
    this.#sentAt[id % SENT_RING] = performance.now();
  }

  onPuback(id: number): void {
    if (id === STATUS_PACKET_ID) return;
    // Called after the session handled the PUBACK: it counts only what acknowledged an outbox entry.
    const acked = this.#session!.counters.acked;
    if (acked === this.#ackedSeen) return;
    this.#ackedSeen = acked;
    const stats = this.#env.stats;
    stats.acked++;
    const ms = performance.now() - this.#sentAt[id % SENT_RING]!;
    stats.pubackLatency.recordMs(ms);
    stats.pubackWindow.recordMs(ms);
    if (stats.steady) stats.pubackSteady.recordMs(ms);
  }

  onClosed(client: NodeMqttClient, established: boolean, handshake: boolean, brokerRefused: boolean): void {
    const stats = this.#env.stats;
    if (established) {
      stats.connected--;
      stats.disconnects++;
    } else if (handshake) {
      stats.handshakeFailures++;
      if (brokerRefused) stats.brokerRefused++;
    } else stats.connectFailures++;
    if (client === this.#client) this.#client = undefined;
    this.#env.onConnectionEnded(this, established);
  }

  /** The fleet's pacing lets the waiting connection open now; false if none was waiting. */
  open(): boolean {
    this.#openedAt = performance.now();
    return this.#client?.open() ?? false;
  }

  /** The fleet holds this board off the network: the waiting connection fails as if no route existed. */
  failOpen(): void {
    const c = this.#client;
    this.#client = undefined;
    c?.fail();
  }

  #newClient(options: MqttConnectOptions): MqttClient {
    this.#client = undefined;
    const client = new NodeMqttClient(options, {
      readBuffer: this.#env.readBuffer,
      probe: this,
      brokerCheck: this.#env.brokerCheck,
    });
    this.#client = client;
    this.#env.requestOpen(this);
    return client;
  }

  #onQueued(): void {
    const stats = this.#env.stats;
    stats.readings++;
    const dropped = this.outbox.dropped;
    stats.outboxDropped += dropped - this.#droppedSeen;
    this.#droppedSeen = dropped;
    this.#session?.notify();
  }
}

/** The fleet's broker list as board `index` is provisioned with it: its home first, the others in turn. */
export function homeFirst(brokers: readonly BrokerAddress[], index: number): BrokerAddress[] {
  const k = index % brokers.length;
  return [...brokers.slice(k), ...brokers.slice(0, k)];
}
