// One MQTT session over the ECMA-419 client: connects, publishes the outbox at QoS 1, acknowledges
// entries on PUBACK, and on any failure throws the client away and connects again after a backoff.
// The client keeps nothing across connections, so everything that must survive one lives in the
// outbox: unacknowledged readings go again, in order, with the same packet id and the DUP flag.
import type { Outbox } from "../outbox/outbox";
import { encodeUtf8 } from "../util/utf8";
import type Backoff from "./backoff";
import type BrokerRotation from "./broker-rotation";
import { MqttOperation, publishPacketBytes } from "./mqtt-client";
import type { MqttClient, MqttClientFactory, MqttControlMessage, MqttTlsOptions } from "./mqtt-client";
import type { Log, TimerHandle, Timers } from "./services";

/** A queued message; payload is exactly its own ArrayBuffer (the client writes whole buffers). */
export interface OutboxMessage {
  topic: string;
  payload: ArrayBuffer;
}

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
}

export type SessionState = "idle" | "connecting" | "connected" | "waiting" | "stopped";

/** Telemetry packet ids cycle through 1..65534; 65535 is kept for the status message. */
const TELEMETRY_ID_SPAN = 65534;
const STATUS_PACKET_ID = 65535;

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
  };
  readonly #topicBytes = new Map<string, number>();

  constructor(options: MqttSessionOptions) {
    if (!Number.isInteger(options.maxInflight) || options.maxInflight < 1)
      throw new RangeError("maxInflight must be >= 1");
    this.#o = options;
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
        onReadable: (count) => {
          // Nothing is subscribed; drain whatever arrives so the client's parser moves on.
          if (current()) this.#client?.read(count);
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
      const queued = this.#o.outbox.size;
      this.#o.log.info(`mqtt: connected${queued ? `, ${queued} queued reading(s) to send` : ""}`);
      // The client reports writable space right after CONNACK; sending waits for that.
      return;
    }
    if (message.operation === MqttOperation.PUBACK && message.id !== undefined) {
      if (message.id === STATUS_PACKET_ID) return;
      const seq = this.#inflightIds.get(message.id);
      if (seq === undefined) return;
      this.#inflightIds.delete(message.id);
      if (this.#o.outbox.ack(seq)) this.#counters.acked++;
      this.#pump();
    }
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
      const outbox = o.outbox;
      while (outbox.inflight < o.maxInflight) {
        // In-flight entries always form the head of the queue (taken in order, acked or dropped from
        // the front, all released together on a lost connection), so the next one to send is here.
        const next = outbox.pending()[outbox.inflight];
        if (!next) break;
        const id = packetIdFor(next.seq);
        // An id still awaiting its PUBACK 65534 readings later: wait rather than confuse the two.
        if (this.#inflightIds.has(id)) break;
        const size = publishPacketBytes(this.#topicLength(next.item.topic), next.item.payload.byteLength, 1);
        if (size > this.#writable) break;
        const [entry] = outbox.takeSendable(outbox.inflight + 1);
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

function describe(e: unknown): string {
  return e instanceof Error ? e.message || e.name : String(e);
}
