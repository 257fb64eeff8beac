/**
 * The verifying subscriber: connects as a read-only identity (`monitor` by default, never the ingest's: one
 * identity has one session at the broker, so it would take over a running ingest's), reads every board's telemetry (opening the
 * envelope when the fleet encrypts) and keeps, per device, which sequence numbers of the expected boot arrived
 * and how often. From that come end-to-end latency, duplicates and, at the end, loss.
 */
import { STATUS_FILTER, TELEMETRY_FILTER } from "../../../firmware/src/telemetry/vocabulary";
import { createSecureContext, type SecureContext } from "node:tls";
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

/** The verifier's tally of a device's readings of one boot of the run. */
export function tallyKey(deviceId: string, boot: number, runBoot: number): string {
  return boot === runBoot ? deviceId : `${deviceId}@${boot}`;
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
  /**
   * Boots expectedBoot .. expectedBoot + bootSpan - 1 are this run's (power-cut boards boot again with the
   * next number); default 1. Tallies are keyed by device id for expectedBoot, `id@boot` for the others.
   */
  bootSpan?: number;
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

  /** Times the connection to the broker was lost and made again (a broker restart, a network drop). */
  reconnects = 0;

  /**
   * Connects and subscribes; resolves once the broker granted both subscriptions. From then on it keeps a
   * persistent session (clean = false) and reconnects after any loss, so a broker restart costs the count
   * nothing the broker itself kept: what it queued for the session while the verifier was away arrives
   * after the reconnect. Whatever the verifier then still misses, the broker lost (issue 15).
   */
  async start(): Promise<void> {
    const o = this.#o;
    const [ca, cert, key] = await Promise.all([
      readFile(o.caFile),
      readFile(o.certFile),
      readFile(o.keyFile),
    ]);
    this.#secureContext = createSecureContext({ ca, cert, key, minVersion: "TLSv1.2" });
    // A session left by an earlier run would replay its queue: start from none (clean = true ends it).
    await this.#connectOnce(true, false);
    await this.#connectOnce(false, true);
    this.#keepalive = setInterval(() => this.#client?.ping(), 30_000);
  }

  #secureContext: SecureContext | undefined;
  #keepalive: NodeJS.Timeout | undefined;
  #retry: NodeJS.Timeout | undefined;
  /** Called when an established connection is lost; the verifier then reconnects by itself. */
  onReconnecting: ((err: Error) => void) | undefined;

  stop(): void {
    this.#closed = true;
    if (this.#keepalive) clearInterval(this.#keepalive);
    if (this.#retry) clearTimeout(this.#retry);
    this.#client?.disconnect();
    // Ending the persistent session needs one more connection with clean = true; best effort.
    if (this.#secureContext) void this.#connectOnce(true, false).catch(() => undefined);
  }

  /** One connection: resolves when subscribed (or, without `subscribe`, at CONNACK, then disconnects). */
  #connectOnce(clean: boolean, subscribe: boolean): Promise<void> {
    const o = this.#o;
    return new Promise<void>((resolve, reject) => {
      let settled = false;
      let up = false;
      const settle = (err?: Error) => {
        if (settled) return;
        settled = true;
        if (err) reject(err);
        else resolve();
      };
      const client = new LeanMqttClient(
        {
          host: o.host,
          port: o.port,
          secureContext: this.#secureContext!,
          clientId: o.clientId,
          clean,
          keepaliveS: 60,
          connectTimeoutMs: 15_000,
        },
        {
          onConnack: (rc) => {
            if (rc !== 0)
              return settle(new Error(`verifier: broker refused the verifying identity (CONNACK ${rc})`));
            if (!subscribe) {
              client.disconnect();
              return settle();
            }
            // Re-subscribing on a resumed session is harmless and covers a broker that lost it.
            client.subscribe(1, [
              { topic: TELEMETRY_FILTER, qos: 1 },
              { topic: STATUS_FILTER, qos: 1 },
            ]);
          },
          onSuback: (_pid, granted) => {
            if (granted.some((g) => g > 1))
              settle(new Error("verifier: broker refused the verifier's subscriptions"));
            else {
              up = true;
              settle();
            }
          },
          onPuback: () => undefined,
          onPublish: (topic, payload, qos, pid) => {
            this.#onMessage(topic, payload);
            if (qos > 0) client.puback(pid);
          },
          onClose: (err) => {
            const e = new Error(`verifier: connection to the broker lost${err ? ` (${err.message})` : ""}`);
            settle(e);
            // A connection that never came up is retried by whoever made it; one that was up, from here.
            if (!up || this.#closed || this.#client !== client) return;
            this.onReconnecting?.(e);
            this.#scheduleReconnect(500);
          },
        },
      );
      if (subscribe) this.#client = client;
    });
  }

  #scheduleReconnect(delayMs: number): void {
    if (this.#closed) return;
    this.#retry = setTimeout(() => {
      this.#retry = undefined;
      if (this.#closed) return;
      this.#connectOnce(false, true).then(
        () => {
          this.reconnects++;
        },
        () => this.#scheduleReconnect(Math.min(delayMs * 2, 5_000)),
      );
    }, delayMs);
  }

  #onMessage(topic: string, payload: Buffer): void {
    const parsed = parseTopic(topic);
    if (parsed?.kind === "status") {
      // The boards announce JSON ({"online": …, "boot": …}); kept here as the word it means.
      const online = parseStatus(payload);
      this.status.set(
        parsed.sensorId,
        online === undefined ? payload.toString("utf8") : online ? "online" : "offline",
      );
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
    const bootIndex = reading.boot - this.#o.expectedBoot;
    if (bootIndex < 0 || bootIndex >= (this.#o.bootSpan ?? 1)) {
      this.otherBoot++;
      return;
    }
    const key = tallyKey(reading.sensorId, reading.boot, this.#o.expectedBoot);
    let tally = this.tallies.get(key);
    if (!tally) {
      tally = new DeviceTally();
      this.tallies.set(key, tally);
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
