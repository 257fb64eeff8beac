/**
 * The verifying subscriber: connects as a read-only identity (`monitor` by default, never the ingest's: one
 * identity has one session at the broker, so it would take over a running ingest's), reads every board's telemetry (opening the
 * envelope when the fleet encrypts) and keeps, per device, which sequence numbers of the expected boot arrived
 * and how often. From that come end-to-end latency, duplicates and, at the end, loss.
 */
import { STATUS_FILTER, TELEMETRY_FILTER } from "../../../firmware/src/telemetry/vocabulary";
import { createSecureContext } from "node:tls";
import { readFile } from "node:fs/promises";
import { decodeTelemetryMessage } from "../../../firmware/src/payload/telemetry-message";
import type { DecodeMode } from "../../../firmware/src/payload/telemetry-message";
import { parseTopic } from "../../../firmware/src/telemetry/topics";
import type { Reading } from "../../../firmware/src/telemetry/reading";
import { Histogram } from "./histogram";
import { parseStatus } from "../ingest/classify";
import { LeanMqttClient } from "./mqtt/lean-client";

export class DeviceTally {
  #bits = new Uint8Array(64);
  unique = 0;
  received = 0;
  maxSeq = -1;

  /** Returns true the first time `seq` is seen. */
  add(seq: number): boolean {
    this.received++;
    const byte = seq >> 3;
    if (byte >= this.#bits.length) {
      const grown = new Uint8Array(Math.max(this.#bits.length * 2, byte + 1));
      grown.set(this.#bits);
      this.#bits = grown;
    }
    const mask = 1 << (seq & 7);
    if (this.#bits[byte]! & mask) return false;
    this.#bits[byte]! |= mask;
    this.unique++;
    if (seq > this.maxSeq) this.maxSeq = seq;
    return true;
  }

  has(seq: number): boolean {
    const byte = seq >> 3;
    return byte < this.#bits.length && (this.#bits[byte]! & (1 << (seq & 7))) !== 0;
  }

  /** How many of seqs 0..n-1 never arrived. */
  missingBelow(n: number): number {
    let found = 0;
    for (let s = 0; s < n; s++) if (this.has(s)) found++;
    return n - found;
  }
}

export interface VerifierOptions {
  host: string;
  port: number;
  caFile: string;
  certFile: string;
  keyFile: string;
  clientId: string;
  /** Readings of other boots (earlier runs, queued in a persistent session) are counted apart. */
  expectedBoot: number;
  decode: DecodeMode;
  /** Devices whose clock is deliberately wrong right now: their ts says nothing about latency. */
  clockUntrusted?: (deviceId: string) => boolean;
  /** Keep every decoded reading (tests); off for large runs. */
  keepReadings?: boolean;
}

export class Verifier {
  readonly e2eLatency = new Histogram();
  /** Set by the runner once the fleet is connected and caught up. */
  steady = false;
  readonly e2eSteady = new Histogram();
  /** End-to-end latency since the live view last looked. */
  readonly e2eWindow = new Histogram();
  readonly tallies = new Map<string, DeviceTally>();
  readonly readings: Reading[] = [];
  /** Status messages seen (online/offline), by device, last value. */
  readonly status = new Map<string, string>();
  received = 0;
  duplicates = 0;
  otherBoot = 0;
  rejected = 0;
  readonly rejectedReasons = new Map<string, number>();
  readonly #o: VerifierOptions;
  #client: LeanMqttClient | undefined;
  #closed = false;

  constructor(o: VerifierOptions) {
    this.#o = o;
  }

  get unique(): number {
    let n = 0;
    for (const t of this.tallies.values()) n += t.unique;
    return n;
  }

  /** Connects and subscribes; resolves once the broker granted both subscriptions. */
  async start(): Promise<void> {
    const o = this.#o;
    const [ca, cert, key] = await Promise.all([readFile(o.caFile), readFile(o.certFile), readFile(o.keyFile)]);
    const secureContext = createSecureContext({ ca, cert, key, minVersion: "TLSv1.2" });
    await new Promise<void>((resolve, reject) => {
      const client = new LeanMqttClient(
        { host: o.host, port: o.port, secureContext, clientId: o.clientId, clean: true, keepaliveS: 60, connectTimeoutMs: 15_000 },
        {
          onConnack: (rc) => {
            if (rc !== 0) return reject(new Error(`verifier: broker refused the ingest identity (CONNACK ${rc})`));
            client.subscribe(1, [
              { topic: TELEMETRY_FILTER, qos: 1 },
              { topic: STATUS_FILTER, qos: 1 },
            ]);
          },
          onSuback: (_pid, granted) => {
            if (granted.some((g) => g > 1)) reject(new Error("verifier: broker refused the ingest subscriptions"));
            else resolve();
          },
          onPuback: () => undefined,
          onPublish: (topic, payload, qos, pid) => {
            this.#onMessage(topic, payload);
            if (qos > 0) client.puback(pid);
          },
          onClose: (err) => {
            if (!this.#closed) {
              const e = new Error(`verifier: connection to the broker lost${err ? ` (${err.message})` : ""}`);
              reject(e);
              this.onLost?.(e);
            }
          },
        },
      );
      this.#client = client;
    });
    this.#keepalive = setInterval(() => this.#client?.ping(), 30_000);
  }

  #keepalive: NodeJS.Timeout | undefined;
  onLost: ((err: Error) => void) | undefined;

  stop(): void {
    this.#closed = true;
    if (this.#keepalive) clearInterval(this.#keepalive);
    this.#client?.disconnect();
  }

  #onMessage(topic: string, payload: Buffer): void {
    const parsed = parseTopic(topic);
    if (parsed?.kind === "status") {
      // The boards announce JSON ({"online": …, "boot": …}); kept here as the word it means.
      const online = parseStatus(payload);
      this.status.set(parsed.sensorId, online === undefined ? payload.toString("utf8") : online ? "online" : "offline");
      return;
    }
    const now = Date.now();
    const r = decodeTelemetryMessage(topic, payload, this.#o.decode);
    if (!r.ok) {
      this.rejected++;
      this.rejectedReasons.set(r.error.code, (this.rejectedReasons.get(r.error.code) ?? 0) + 1);
      return;
    }
    const reading = r.value;
    this.received++;
    if (reading.boot !== this.#o.expectedBoot) {
      this.otherBoot++;
      return;
    }
    let tally = this.tallies.get(reading.sensorId);
    if (!tally) {
      tally = new DeviceTally();
      this.tallies.set(reading.sensorId, tally);
    }
    if (!tally.add(reading.seq)) {
      this.duplicates++;
      return;
    }
    if (!this.#o.clockUntrusted?.(reading.sensorId)) {
      const ms = Math.max(0, now - reading.ts);
      this.e2eLatency.recordMs(ms);
      this.e2eWindow.recordMs(ms);
      if (this.steady) this.e2eSteady.recordMs(ms);
    }
    if (this.#o.keepReadings) this.readings.push(reading);
  }
}
