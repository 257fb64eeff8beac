// One MQTT session over the ECMA-419 client: connects, publishes the outbox at QoS 1, acknowledges
// entries on PUBACK, and on any failure throws the client away and connects again after a backoff.
// The client keeps nothing across connections, so everything that must survive one lives in the
// outbox: unacknowledged readings go again, in order, with the same packet id and the DUP flag.
//
// End-to-end confirmations (../telemetry/confirmation): the session subscribes to the board's downlink tree,
// keeps each reading after its PUBACK ("delivered") until the ingest confirms the store holds it durably, and
// sends the unconfirmed ones again after a reconnect or when no confirmation came within the timeout (the
// broker may have PUBACKed them and lost them in a crash). A board whose ingest never confirms anything (an
// older ingest, Telegraf) falls back to PUBACK semantics in mode "auto" and says so (confirmationState).
import type { Outbox } from "../outbox/outbox";
import { decodeConfirmation } from "../telemetry/confirmation";
import { downlinkFilter, downlinkTopic } from "../telemetry/topics";
import { encodeUtf8 } from "../util/utf8";
import type Backoff from "./backoff";
import type BrokerRotation from "./broker-rotation";
import { MqttOperation, publishPacketBytes, subscribePacketBytes } from "./mqtt-client";
import type {
  MqttClient,
  MqttClientFactory,
  MqttControlMessage,
  MqttReadableInfo,
  MqttTlsOptions,
} from "./mqtt-client";
import type { Log, TimerHandle, Timers } from "./services";

/** A queued message; payload is exactly its own ArrayBuffer (the client writes whole buffers). */
export interface OutboxMessage {
  topic: string;
  payload: ArrayBuffer;
}

/**
 * on: keep every reading until the store confirms it; off: forget it on PUBACK (no downlink subscription);
 * auto: as on, but if no confirmation at all has come by the first timeout, fall back to PUBACK semantics.
 */
export type ConfirmationMode = "on" | "off" | "auto";
export const CONFIRMATION_MODES: readonly ConfirmationMode[] = ["on", "off", "auto"];

/** off: mode off; awaiting: none received yet this boot; present: confirmations arrive; absent: fell back. */
export type ConfirmationState = "off" | "awaiting" | "present" | "absent";

export interface ConfirmationSettings {
  mode: ConfirmationMode;
  /** A delivered reading not confirmed this long after its PUBACK is sent again (doubling while none come). */
  timeoutMs: number;
  /** The boot whose readings this session sends: confirmations for another boot are ignored and counted. */
  boot: number;
}

/** Downlink messages larger than this are read and discarded (a confirmation is at most 70 bytes). */
const MAX_DOWNLINK_BYTES = 512;
/** Consecutive timeouts without a confirmation stretch the next one up to this factor. */
const MAX_TIMEOUT_SCALE = 8;

export interface MqttSessionOptions {
  factory: MqttClientFactory;
  timers: Timers;
  log: Log;
  backoff: Backoff;
  outbox: Outbox<OutboxMessage>;
  /** Where to connect; every failure moves it on (broker-rotation.ts). One broker is a list of one. */
  brokers: BrokerRotation;
  clientId: string;
  tls: MqttTlsOptions | null;
  keepaliveMs: number;
  maxInflight: number;
  connectTimeoutMs: number;
  statusTopic: string;
  /** Retained on connect; its payload is built then, so it carries current counters. */
  onlineStatus: () => ArrayBuffer;
  /** The retained last will the broker publishes when the connection dies uncleanly. */
  offlineStatus: ArrayBuffer;
  /** End-to-end confirmations; absent: mode off. */
  confirmations?: ConfirmationSettings;
  /** Milliseconds from any steady clock, for the confirmation timeout. */
  now: () => number;
}

export type SessionState = "idle" | "connecting" | "connected" | "waiting" | "stopped";

/** Telemetry packet ids cycle through 1..65533; 65534 is kept for SUBSCRIBE and 65535 for the status message. */
const TELEMETRY_ID_SPAN = 65533;
export const SUBSCRIBE_PACKET_ID = 65534;
export const STATUS_PACKET_ID = 65535;

export function packetIdFor(seq: number): number {
  return (seq % TELEMETRY_ID_SPAN) + 1;
}

export interface SessionCounters {
  connects: number;
  connectionsLost: number;
  published: number;
  republished: number;
  acked: number;
  /** Connections that ended in the TLS handshake: a refused broker (pin, chain) or a failed handshake. */
  tlsFailures: number;
  /** Readings the store confirmed (forgotten on a confirmation). */
  confirmed: number;
  /** Confirmation messages applied / refused as malformed / for another boot. */
  confirmations: number;
  confirmationsRejected: number;
  confirmationsForeign: number;
  /** Delivered readings queued again (reconnect or confirmation timeout) because no confirmation came. */
  requeued: number;
  confirmationTimeouts: number;
  /** Delivered readings forgotten unconfirmed when the board fell back to PUBACK semantics. */
  releasedUnconfirmed: number;
  /** Downlink messages of a kind this session does not handle (or too large). */
  downlinkIgnored: number;
  /** SUBACKs that refused the downlink subscription. */
  subscribeRefused: number;
}

export default class MqttSession {
  readonly #o: MqttSessionOptions;
  #state: SessionState = "idle";
  #client: MqttClient | undefined;
  /** Callbacks of a client that was given up on must not touch the session any more. */
  #generation = 0;
  #writable = 0;
  #statusPending = false;
  #connectTimer: TimerHandle | undefined;
  #retryTimer: TimerHandle | undefined;
  readonly #inflightIds = new Map<number, number>();
  readonly #counters: SessionCounters = {
    connects: 0,
    connectionsLost: 0,
    published: 0,
    republished: 0,
    acked: 0,
    tlsFailures: 0,
    confirmed: 0,
    confirmations: 0,
    confirmationsRejected: 0,
    confirmationsForeign: 0,
    requeued: 0,
    confirmationTimeouts: 0,
    releasedUnconfirmed: 0,
    downlinkIgnored: 0,
    subscribeRefused: 0,
  };
  readonly #topicBytes = new Map<string, number>();
  #confirmState: ConfirmationState;
  readonly #storedTopic: string;
  readonly #downFilter: string;
  #subscribePending = false;
  #confirmTimer: TimerHandle | undefined;
  #timeoutScale = 1;
  /** The downlink message being read: its topic and the fragments so far (undefined: discarding). */
  #rx: { topic: string; chunks: Uint8Array[]; bytes: number; oversized: boolean } | undefined;

  constructor(options: MqttSessionOptions) {
    if (!Number.isInteger(options.maxInflight) || options.maxInflight < 1)
      throw new RangeError("maxInflight must be >= 1");
    const c = options.confirmations;
    if (c && c.mode !== "off" && !(c.timeoutMs > 0)) throw new RangeError("confirmation timeout must be > 0");
    this.#o = options;
    this.#confirmState = !c || c.mode === "off" ? "off" : "awaiting";
    this.#storedTopic = downlinkTopic(options.clientId, "stored");
    this.#downFilter = downlinkFilter(options.clientId);
  }

  /** Whether readings wait for the store's confirmation (awaiting, present) or only for PUBACK (off, absent). */
  get confirmationState(): ConfirmationState {
    return this.#confirmState;
  }

  /** Confirmations are known to come (one did), or required (mode on). */
  get #expectsConfirmations(): boolean {
    return (
      this.#confirmState === "present" ||
      (this.#confirmState === "awaiting" && this.#o.confirmations?.mode === "on")
    );
  }

  get #holding(): boolean {
    return this.#confirmState === "awaiting" || this.#confirmState === "present";
  }

  get state(): SessionState {
    return this.#state;
  }

  get counters(): Readonly<SessionCounters> {
    return this.#counters;
  }

  start(): void {
    if (this.#state !== "idle") return;
    this.#connect();
  }

  /** Stops for good: no reconnect. Queued readings stay in the outbox. */
  stop(): void {
    this.#state = "stopped";
    this.#o.timers.clear(this.#retryTimer);
    this.#retryTimer = undefined;
    this.#o.timers.clear(this.#confirmTimer);
    this.#confirmTimer = undefined;
    this.#dropClient();
  }

  /** Something was queued: send it if the connection allows. */
  notify(): void {
    this.#pump();
  }

  #connect(): void {
    this.#retryTimer = undefined;
    if (this.#state === "stopped") return;
    this.#state = "connecting";
    this.#writable = 0;
    const generation = ++this.#generation;
    const current = (): boolean => generation === this.#generation;
    const o = this.#o;
    const broker = o.brokers.current;
    o.log.info(
      `mqtt: connecting to ${broker.host}:${broker.port}${o.tls ? " (mutual TLS)" : ""} as ${o.clientId}`,
    );
    this.#connectTimer = o.timers.set(() => {
      this.#connectTimer = undefined;
      if (current()) this.#lost(`no CONNACK within ${o.connectTimeoutMs} ms`);
    }, o.connectTimeoutMs);
    try {
      this.#client = o.factory({
        host: broker.host,
        port: broker.port,
        id: o.clientId,
        // A persistent session: the broker keeps it (and the will) across our reconnects.
        clean: false,
        keepalive: o.keepaliveMs,
        will: { topic: o.statusTopic, message: o.offlineStatus, QoS: 1, retain: true },
        tls: o.tls,
        onControl: (message) => {
          if (current()) this.#onControl(message);
        },
        onWritable: (count) => {
          if (!current()) return;
          this.#writable = count;
          this.#pump();
        },
        onReadable: (count, info) => {
          if (current()) this.#onReadable(count, info);
        },
        onError: (tlsFailure) => {
          if (!current()) return;
          if (tlsFailure === undefined) {
            this.#lost("connection failed or lost");
            return;
          }
          this.#counters.tlsFailures++;
          this.#lost(`TLS: ${tlsFailure}`);
        },
      });
    } catch (e) {
      this.#lost(`client could not start: ${describe(e)}`);
    }
  }

  #onControl(message: MqttControlMessage): void {
    if (message.operation === MqttOperation.CONNACK) {
      if (message.returnCode) {
        this.#lost(`broker refused the connection (return code ${message.returnCode})`);
        return;
      }
      this.#o.timers.clear(this.#connectTimer);
      this.#connectTimer = undefined;
      this.#state = "connected";
      this.#counters.connects++;
      this.#o.backoff.reset();
      this.#statusPending = true;
      // Every connection: a broker that lost its persistent session (a crash before it saved) lost the
      // subscription with it. The broker may also have lost what it PUBACKed: unconfirmed readings go again.
      this.#subscribePending = this.#confirmState !== "off";
      // In auto mode before any confirmation came the board does not yet know there is an ingest that confirms:
      // resending then would only duplicate what a PUBACK-only fleet already has.
      if (this.#expectsConfirmations) this.#counters.requeued += this.#o.outbox.requeueDelivered();
      const queued = this.#o.outbox.size;
      this.#o.log.info(`mqtt: connected${queued ? `, ${queued} queued reading(s) to send` : ""}`);
      // The client reports writable space right after CONNACK; sending waits for that.
      return;
    }
    if (message.operation === MqttOperation.SUBACK) {
      const granted = message.payload;
      if (granted && granted.length > 0 && (granted[0]! & 0x80) !== 0) {
        this.#counters.subscribeRefused++;
        this.#o.log.warn(`mqtt: the broker refused the downlink subscription ${this.#downFilter}`);
      }
      return;
    }
    if (message.operation === MqttOperation.PUBACK && message.id !== undefined) {
      if (message.id === STATUS_PACKET_ID) return;
      const seq = this.#inflightIds.get(message.id);
      if (seq === undefined) return;
      this.#inflightIds.delete(message.id);
      const outbox = this.#o.outbox;
      if (this.#holding) {
        if (outbox.markDelivered(seq, this.#o.now())) {
          this.#counters.acked++;
          this.#armConfirmTimer();
        }
      } else if (outbox.ack(seq)) this.#counters.acked++;
      this.#pump();
    }
  }

  #onReadable(count: number, info: MqttReadableInfo | undefined): void {
    const client = this.#client;
    if (!client) return;
    if (info?.topic !== undefined) {
      const oversized = (info.byteLength ?? count) > MAX_DOWNLINK_BYTES;
      this.#rx = { topic: info.topic, chunks: [], bytes: 0, oversized };
    }
    const data = client.read(count);
    const rx = this.#rx;
    if (!rx) return; // a fragment of a message whose start we never saw: discarded
    if (!rx.oversized && data instanceof ArrayBuffer) {
      rx.bytes += data.byteLength;
      if (rx.bytes > MAX_DOWNLINK_BYTES) rx.oversized = true;
      else rx.chunks.push(new Uint8Array(data));
    }
    if (info?.more) return;
    this.#rx = undefined;
    if (rx.oversized || rx.topic !== this.#storedTopic) {
      this.#counters.downlinkIgnored++;
      return;
    }
    this.#onConfirmation(joinChunks(rx.chunks, rx.bytes));
  }

  #onConfirmation(bytes: Uint8Array): void {
    if (this.#confirmState === "off") return;
    const decoded = decodeConfirmation(bytes);
    if (!decoded.ok) {
      this.#counters.confirmationsRejected++;
      this.#o.log.warn(`mqtt: refused a confirmation (${decoded.error.code}: ${decoded.error.message})`);
      return;
    }
    const { boot, ranges } = decoded.value;
    if (boot !== this.#o.confirmations!.boot) {
      // Another boot's readings are not in this outbox; a stale message from before a reboot, say.
      this.#counters.confirmationsForeign++;
      return;
    }
    this.#counters.confirmations++;
    this.#timeoutScale = 1;
    if (this.#confirmState !== "present") {
      if (this.#confirmState === "absent")
        this.#o.log.info("mqtt: confirmations from the ingest resumed: readings wait for them again");
      this.#confirmState = "present";
    }
    const removed = this.#o.outbox.confirm(ranges);
    this.#counters.confirmed += removed;
    this.#o.timers.clear(this.#confirmTimer);
    this.#confirmTimer = undefined;
    this.#armConfirmTimer();
    if (removed > 0) this.#pump();
  }

  /** One timer for the oldest delivered reading's confirmation deadline. */
  #armConfirmTimer(): void {
    if (this.#confirmTimer || !this.#holding) return;
    const oldest = this.#o.outbox.oldestDeliveredAt();
    if (oldest === undefined) return;
    const timeout = this.#o.confirmations!.timeoutMs * this.#timeoutScale;
    const wait = Math.max(0, oldest + timeout - this.#o.now());
    this.#confirmTimer = this.#o.timers.set(() => {
      this.#confirmTimer = undefined;
      this.#confirmationTimedOut(timeout);
    }, wait);
  }

  #confirmationTimedOut(timeout: number): void {
    const outbox = this.#o.outbox;
    const oldest = outbox.oldestDeliveredAt();
    if (!this.#holding || oldest === undefined) return;
    if (this.#o.now() - oldest < timeout || this.#state !== "connected") {
      // Not due yet, or offline (the reconnect resends them anyway): look again later.
      this.#confirmTimer = this.#o.timers.set(() => {
        this.#confirmTimer = undefined;
        this.#confirmationTimedOut(timeout);
      }, timeout);
      return;
    }
    const mode = this.#o.confirmations!.mode;
    if (this.#confirmState === "awaiting" && mode === "auto") {
      const n = outbox.releaseDelivered();
      this.#counters.releasedUnconfirmed += n;
      this.#confirmState = "absent";
      this.#o.log.warn(
        `mqtt: no confirmation from the ingest within ${timeout} ms: falling back to PUBACK (readings are ` +
          `forgotten once the broker has them; ${n} released unconfirmed)`,
      );
      return;
    }
    this.#counters.confirmationTimeouts++;
    this.#counters.requeued += outbox.requeueDelivered();
    this.#timeoutScale = Math.min(MAX_TIMEOUT_SCALE, this.#timeoutScale * 2);
    this.#pump();
  }

  #pump(): void {
    if (this.#state !== "connected" || !this.#client) return;
    const o = this.#o;
    try {
      if (this.#statusPending) {
        const status = o.onlineStatus();
        if (publishPacketBytes(this.#topicLength(o.statusTopic), status.byteLength, 1) > this.#writable)
          return;
        this.#writable = this.#client.write(status, {
          topic: o.statusTopic,
          QoS: 1,
          retain: true,
          id: STATUS_PACKET_ID,
        });
        this.#statusPending = false;
      }
      if (this.#subscribePending) {
        const filter = this.#downFilter;
        if (subscribePacketBytes([this.#topicLength(filter)]) > this.#writable) return;
        this.#writable = this.#client.write(undefined, {
          operation: MqttOperation.SUBSCRIBE,
          id: SUBSCRIBE_PACKET_ID,
          items: [{ topic: filter, QoS: 1 }],
        });
        this.#subscribePending = false;
      }
      const outbox = o.outbox;
      while (outbox.inflight < o.maxInflight) {
        // The oldest reading not in flight and not delivered: the outbox keeps them in seq order.
        const next = outbox.peekSendable();
        if (!next) break;
        const id = packetIdFor(next.seq);
        // An id still awaiting its PUBACK 65534 readings later: wait rather than confuse the two.
        if (this.#inflightIds.has(id)) break;
        const size = publishPacketBytes(this.#topicLength(next.item.topic), next.item.payload.byteLength, 1);
        if (size > this.#writable) break;
        const entry = outbox.takeNext();
        if (!entry || entry.seq !== next.seq) throw new Error("outbox order broken");
        const resend = entry.attempts > 1;
        this.#inflightIds.set(id, entry.seq);
        this.#writable = this.#client.write(entry.item.payload, {
          topic: entry.item.topic,
          QoS: 1,
          id,
          duplicate: resend,
        });
        this.#counters.published++;
        if (resend) this.#counters.republished++;
      }
    } catch (e) {
      this.#lost(`publish failed: ${describe(e)}`);
    }
  }

  #topicLength(topic: string): number {
    let n = this.#topicBytes.get(topic);
    if (n === undefined) {
      n = encodeUtf8(topic).length;
      this.#topicBytes.set(topic, n);
    }
    return n;
  }

  #lost(reason: string): void {
    if (this.#state === "stopped" || this.#state === "waiting") return;
    const wasConnected = this.#state === "connected";
    this.#dropClient();
    this.#o.outbox.connectionLost();
    this.#inflightIds.clear();
    if (wasConnected) this.#counters.connectionsLost++;
    // The session lives in the broker cluster, so any node resumes it: the next attempt may go elsewhere.
    const next = this.#o.brokers.failed();
    const delay = this.#o.backoff.next();
    this.#state = "waiting";
    const where = this.#o.brokers.brokers.length > 1 ? `, next ${next.host}:${next.port}` : "";
    this.#o.log.warn(`mqtt: ${reason}; retrying in ${delay} ms (${this.#o.outbox.size} queued)${where}`);
    this.#retryTimer = this.#o.timers.set(() => this.#connect(), delay);
  }

  #dropClient(): void {
    this.#generation++;
    this.#o.timers.clear(this.#connectTimer);
    this.#connectTimer = undefined;
    this.#statusPending = false;
    this.#subscribePending = false;
    this.#rx = undefined;
    this.#writable = 0;
    const client = this.#client;
    this.#client = undefined;
    if (!client) return;
    // Closed from a fresh turn: the client may still be inside the callback that reported the failure
    // and touches its own state after the callback returns.
    this.#o.timers.set(() => {
      try {
        client.close();
      } catch {
        // already closed by itself
      }
    }, 0);
  }
}

function joinChunks(chunks: readonly Uint8Array[], total: number): Uint8Array {
  if (chunks.length === 1) return chunks[0]!;
  const out = new Uint8Array(total);
  let o = 0;
  for (const c of chunks) {
    out.set(c, o);
    o += c.length;
  }
  return out;
}

function describe(e: unknown): string {
  return e instanceof Error ? e.message || e.name : String(e);
}
