/**
 * One emulated board: the firmware's platform-neutral core (reading model, codec, envelope, outbox) driven by
 * the physics model, speaking MQTT over mutual TLS with its own certificate. The fleet decides when it samples
 * and when it may (re)connect; the board owns its session, its outbox and the mapping of packet ids.
 */
import { readFileSync } from "node:fs";
import { createSecureContext } from "node:tls";
import type { SecureContext } from "node:tls";
import { Outbox } from "../../../firmware/src/outbox/outbox";
import { encodeTelemetryMessage } from "../../../firmware/src/payload/telemetry-message";
import type { PayloadMode } from "../../../firmware/src/payload/telemetry-message";
import { statusTopic, telemetryTopic } from "../../../firmware/src/telemetry/topics";
import { clockSkewAt, physicsEffectsAt } from "./faults/effects";
import type { ResolvedFault } from "./faults/scenario";
import { BrokerRefusedError, LeanMqttClient } from "./mqtt/lean-client";
import type { BrokerCheck } from "../tls/node-broker-trust";
import { BoardPhysics } from "./physics/board-physics";
import type { FleetStats } from "./stats";

/** Telemetry packet ids are derived from the sequence number, so a resend reuses its id (MQTT's DUP rule). */
const TELEMETRY_PID_SPACE = 65000;
const STATUS_PID = 65001;
/** Room for PUBLISH times of the in-flight window (must exceed maxInflight). */
const SENT_RING = 64;
const MAX_OUTBOX_CAPACITY = TELEMETRY_PID_SPACE - 1;
/** The in-flight window must fit the ring of send times. */
export const MAX_INFLIGHT = SENT_RING / 2;

/** The firmware's TLS 1.2 suites (Moddable's TLS has its AES-256-GCM suites disabled). */
const FIRMWARE_CIPHERS = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256";

export interface BoardCredentials {
  ca: Buffer;
  certFile: string;
  keyFile: string;
}

/** What every board shares, set once by the fleet. */
export interface BoardEnvironment {
  host: string;
  port: number;
  ca: Buffer;
  /** The firmware's broker check (pins, strict chain), run before a board sends anything. */
  brokerCheck: BrokerCheck;
  stats: FleetStats;
  rateHz: number;
  boot: number;
  fw: string;
  keepaliveS: number;
  maxInflight: number;
  outboxCapacity: number;
  connectTimeoutMs: number;
  /** One receive buffer for every board of the fleet (boards only ever receive small acks). */
  readBuffer: Buffer;
  payloadMode(deviceId: string): PayloadMode;
  /** The board lost or failed its connection: the fleet schedules the next attempt. */
  onConnectionEnded(board: Board, established: boolean): void;
  onOnline(board: Board): void;
}

export class Board {
  readonly id: string;
  readonly index: number;
  /** Offset of this board's sampling instants within a period, seconds; spreads the fleet's load. */
  readonly phase: number;
  readonly physics: BoardPhysics;
  readonly outbox: Outbox<Uint8Array>;
  faults: ResolvedFault[] = [];
  /** Next sample index; the reading with seq k is taken at simulated time phase + k / rate. */
  nextSample = 0;
  /** performance.now() when the next sample is due (the fleet's scheduler key). */
  dueAt = 0;
  attempt = 0;
  readonly #env: BoardEnvironment;
  readonly #certFile: string;
  readonly #keyFile: string;
  readonly #topic: Buffer;
  readonly #statusTopic: Buffer;
  readonly #sentAt = new Float64Array(SENT_RING);
  #context: SecureContext | undefined;
  #client: LeanMqttClient | undefined;
  #online = false;
  #connectStarted = 0;

  constructor(o: { id: string; index: number; seed: number | string; certFile: string; keyFile: string; env: BoardEnvironment; phase: number }) {
    this.id = o.id;
    this.index = o.index;
    this.phase = o.phase;
    this.#env = o.env;
    this.#certFile = o.certFile;
    this.#keyFile = o.keyFile;
    this.physics = new BoardPhysics({ seed: o.seed, deviceId: o.id });
    this.outbox = new Outbox<Uint8Array>({ capacity: Math.min(o.env.outboxCapacity, MAX_OUTBOX_CAPACITY) });
    this.#topic = Buffer.from(telemetryTopic(o.id));
    this.#statusTopic = Buffer.from(statusTopic(o.id));
  }

  get online(): boolean {
    return this.#online;
  }
  get client(): LeanMqttClient | undefined {
    return this.#client;
  }

  /** Simulated time of sample k, seconds since the run started. */
  sampleTime(k: number): number {
    return this.phase + k / this.#env.rateHz;
  }

  /**
   * Takes the due reading, queues it and sends what the in-flight window allows. Values follow the simulated
   * timeline (reproducible); ts is the board's clock now, skew included, as firmware would stamp it.
   */
  sample(): void {
    const env = this.#env;
    const k = this.nextSample++;
    const t = this.sampleTime(k);
    const s = this.physics.sample(t, this.faults.length ? physicsEffectsAt(this.faults, t) : undefined);
    const skewMs = this.faults.length ? clockSkewAt(this.faults, t) * 1000 : 0;
    const droppedBefore = this.outbox.dropped;
    this.outbox.enqueue(
      (seq) =>
        encodeTelemetryMessage(
          { sensorId: this.id, seq, ts: Date.now() + Math.round(skewMs), boot: env.boot, fw: env.fw, values: s.values, faults: s.faults },
          env.payloadMode(this.id),
        ).payload,
    );
    env.stats.readings++;
    env.stats.outboxDropped += this.outbox.dropped - droppedBefore;
    if (this.#online) this.#flush();
  }

  /**
   * Loads the board's certificate and key into a TLS context, as a board does at boot. The fleet calls this
   * before the clock starts, so connect times measure handshakes, not file parsing.
   */
  loadIdentity(): void {
    this.#context ??= createSecureContext({
      ca: this.#env.ca,
      cert: readFileSync(this.#certFile),
      key: readFileSync(this.#keyFile),
      // What the firmware's TLS (Moddable) speaks: TLS 1.2 only, ECDHE with AES-128-GCM. It is also cheaper
      // here than TLS 1.3 (no post-handshake session tickets to parse and copy per connection). The key
      // exchange curve is left to OpenSSL (X25519 first): the firmware's P-256 costs ~0.2 ms more a handshake.
      minVersion: "TLSv1.2",
      maxVersion: "TLSv1.2",
      ciphers: FIRMWARE_CIPHERS,
    });
  }

  connect(): void {
    if (this.#client) return;
    const env = this.#env;
    this.loadIdentity();
    this.#connectStarted = performance.now();
    this.#client = new LeanMqttClient(
      {
        host: env.host,
        port: env.port,
        secureContext: this.#context!,
        clientId: this.id,
        clean: false,
        keepaliveS: env.keepaliveS,
        will: { topic: statusTopic(this.id), payload: Buffer.from("offline"), qos: 1, retain: true },
        connectTimeoutMs: env.connectTimeoutMs,
        sharedReadBuffer: env.readBuffer,
        checkServer: (socket) => env.brokerCheck.refusal(socket),
      },
      {
        onConnack: (rc) => this.#onConnack(rc),
        onPuback: (pid) => this.#onPuback(pid),
        onClose: (err, handshake) => this.#onClose(handshake, err instanceof BrokerRefusedError),
      },
    );
  }

  /** Network failure as the broker sees it: no DISCONNECT, so the broker publishes the will. */
  dropConnection(): void {
    this.#client?.destroy(new Error("network drop (injected)"));
  }

  /** Orderly end: announce offline (retained) and DISCONNECT. */
  shutdown(): void {
    const c = this.#client;
    if (!c) return;
    if (this.#online) c.publish(this.#statusTopic, Buffer.from("offline"), 0, true, 0, false);
    c.disconnect();
  }

  #onConnack(rc: number): void {
    const env = this.#env;
    const c = this.#client;
    if (!c) return;
    if (rc !== 0) {
      c.destroy(new Error(`CONNACK return code ${rc}`));
      return;
    }
    this.#online = true;
    this.attempt = 0;
    env.stats.connected++;
    env.stats.connects++;
    env.stats.connectLatency.recordMs(performance.now() - this.#connectStarted);
    c.publish(this.#statusTopic, Buffer.from("online"), 1, true, STATUS_PID, false);
    this.#flush();
    env.onOnline(this);
  }

  #flush(): void {
    const c = this.#client!;
    const env = this.#env;
    const now = performance.now();
    for (const e of this.outbox.takeSendable(env.maxInflight)) {
      const resend = e.attempts > 1;
      c.publish(this.#topic, e.item, 1, false, (e.seq % TELEMETRY_PID_SPACE) + 1, resend);
      this.#sentAt[e.seq % SENT_RING] = now;
      env.stats.publishes++;
      if (resend) env.stats.resends++;
    }
  }

  #onPuback(pid: number): void {
    if (pid > TELEMETRY_PID_SPACE) return; // the status announcement
    const pending = this.outbox.pending();
    const oldest = pending[0];
    if (!oldest) return;
    // The in-flight window is far smaller than the id space: the seq is the first at or after the oldest with this id.
    const seq = oldest.seq + ((pid - 1 - (oldest.seq % TELEMETRY_PID_SPACE) + TELEMETRY_PID_SPACE) % TELEMETRY_PID_SPACE);
    if (!this.outbox.ack(seq)) return;
    const env = this.#env;
    env.stats.acked++;
    const ms = performance.now() - this.#sentAt[seq % SENT_RING]!;
    env.stats.pubackLatency.recordMs(ms);
    env.stats.pubackWindow.recordMs(ms);
    if (env.stats.steady) env.stats.pubackSteady.recordMs(ms);
    this.#flush();
  }

  #onClose(handshake: boolean, brokerRefused: boolean): void {
    const env = this.#env;
    const wasOnline = this.#online;
    this.#client = undefined;
    this.#online = false;
    this.outbox.connectionLost();
    if (wasOnline) {
      env.stats.connected--;
      env.stats.disconnects++;
    } else if (handshake) {
      env.stats.handshakeFailures++;
      if (brokerRefused) env.stats.brokerRefused++;
    }
    else env.stats.connectFailures++;
    env.onConnectionEnded(this, wasOnline);
  }
}
