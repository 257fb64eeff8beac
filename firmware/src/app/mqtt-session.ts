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
//
// Field rotation (../identity/trust-rotation.ts, through ./session-trust.ts): the downlink subscription is made in
// every mode, since trust and config messages ride on it. A message on down/trust the handler staged makes the
// session stop sending, wait (bounded) for the PUBACKs of what is in flight, and reconnect at once to the same
// broker with the identity being tried; its CONNACK commits it, a refused handshake or CONNACK counts against it
// (the handler falls back to the old slot after its tries). Queued readings stay in the outbox throughout.
import type { Outbox } from "../outbox/outbox";
import { decodeConfirmation } from "../telemetry/confirmation";
import type { SeqRange } from "../telemetry/confirmation";
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
import type { SessionTrust } from "./session-trust";

/** A queued message; payload is exactly its own ArrayBuffer (the client writes whole buffers). */
export interface OutboxMessage {
  topic: string;
  payload: ArrayBuffer;
}

/**
 * on: keep every reading until the store confirms it; off: forget it on PUBACK (the downlink is still
 * subscribed: trust and config messages need it);
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
/**
 * A trust message: an RSA-2048 certificate and PKCS#8 key with a few pins is ~2.7 KB sealed; the buffer is
 * held only while one is being read.
 */
export const MAX_TRUST_DOWNLINK_BYTES = 6144;
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
  /** Fixed credentials; ignored when `trust` is given. */
  tls: MqttTlsOptions | null;
  /** The board's identity with field rotation (down/trust); its `current()` is what each connection uses. */
  trust?: SessionTrust;
  keepaliveMs: number;
  maxInflight: number;
  connectTimeoutMs: number;
  statusTopic: string;
  /**
   * Retained on connect; its payload is built then, so it carries current counters, and the serial of the
   * certificate this connection was accepted with (undefined without `trust`), for `trust finish --wait`.
   */
  onlineStatus: (certSerial: string | undefined) => ArrayBuffer;
  /** The retained last will the broker publishes when the connection dies uncleanly. */
  offlineStatus: ArrayBuffer;
  /** End-to-end confirmations; absent: mode off. */
  confirmations?: ConfirmationSettings;
  /**
   * Readings of earlier boots in the outbox (loaded from the flash ring at boot, ../outbox/outbox-journal.ts):
   * a confirmation for such a boot is applied to them instead of being ignored as foreign.
   */
  earlierBoots?: {
    holds(boot: number): boolean;
    confirmEarlier(boot: number, ranges: readonly SeqRange[]): number;
  };
  /** Milliseconds from any steady clock, for the confirmation timeout. */
  now: () => number;
}

export type SessionState = "idle" | "connecting" | "connected" | "waiting" | "stopped";

/**
 * Telemetry packet ids cycle through 1..65532; 65533 is kept for a key request's answer, 65534 for SUBSCRIBE
 * and 65535 for the status message.
 */
const TELEMETRY_ID_SPAN = 65532;
export const KEY_ANSWER_PACKET_ID = 65533;
export const SUBSCRIBE_PACKET_ID = 65534;
export const STATUS_PACKET_ID = 65535;

export function packetIdFor(seq: number): number {
  // Readings loaded from the flash ring at boot have outbox seqs below 0.
  return (((seq % TELEMETRY_ID_SPAN) + TELEMETRY_ID_SPAN) % TELEMETRY_ID_SPAN) + 1;
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
  /** Trust messages staged (each followed by a reconnect with the new identity) / refused by the handler. */
  trustStaged: number;
  trustRefused: number;
  /** Reconnects to switch identity; connections refused with an identity being tried. */
  identitySwitches: number;
  identityFailures: number;
}

export default class MqttSession {
  readonly #o: MqttSessionOptions;
  #state: SessionState = "idle";
  #client: MqttClient | undefined;
  /** Callbacks of a client that was given up on must not touch the session any more. */
  #generation = 0;
  #writable = 0;
  #statusPending = false;
  /** A key request's answer (its CSR) to publish; kept across a reconnect until the broker has it. */
  #answer: { topic: string; payload: Uint8Array } | undefined;
  /** Written on this connection, awaiting its PUBACK; a new connection sends it again. */
  #answerSent = false;
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
    trustStaged: 0,
    trustRefused: 0,
    identitySwitches: 0,
    identityFailures: 0,
  };
  readonly #topicBytes = new Map<string, number>();
  #confirmState: ConfirmationState;
  readonly #storedTopic: string;
  readonly #trustTopic: string;
  readonly #downFilter: string;
  /** The identity of the connection being made or held (undefined without `trust`). */
  #attempt: { trying: boolean; certSerial: string } | undefined;
  /** A staged identity waits for the in-flight PUBACKs before the session reconnects with it. */
  #switchPending = false;
  #switchTimer: TimerHandle | undefined;
  #subscribePending = false;
  #confirmTimer: TimerHandle | undefined;
  #timeoutScale = 1;
  /**
   * When the first reading was PUBACKed while no confirmation had come yet: in mode auto the fallback is due a
   * timeout after it. Not the oldest reading held, which a full outbox keeps replacing (it evicts the oldest),
   * so a board whose outbox holds less than a timeout's worth of readings never fell back.
   */
  #awaitingSince: number | undefined;
  /** The downlink message being read: its topic and the fragments so far (undefined: discarding). */
  #rx: { topic: string; chunks: Uint8Array[]; bytes: number; oversized: boolean; limit: number } | undefined;

  constructor(options: MqttSessionOptions) {
    if (!Number.isInteger(options.maxInflight) || options.maxInflight < 1)
      throw new RangeError("maxInflight must be >= 1");
    const c = options.confirmations;
    if (c && c.mode !== "off" && !(c.timeoutMs > 0)) throw new RangeError("confirmation timeout must be > 0");
    this.#o = options;
    this.#confirmState = !c || c.mode === "off" ? "off" : "awaiting";
    this.#storedTopic = downlinkTopic(options.clientId, "stored");
    this.#trustTopic = downlinkTopic(options.clientId, "trust");
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

  /** The certificate serial of the identity the session connects with now ("" if unknown, undefined without trust). */
  get certSerial(): string | undefined {
    return this.#o.trust?.current().certSerial;
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
    // Callbacks as object-literal methods over `session`, not arrows: under tsx (esbuild keepNames) an arrow
    // named by its property gets a redefined `name` and a ~300 B property dictionary, per connection of
    // every emulated board. A client's callbacks only act while it is the session's current client.
    // eslint-disable-next-line @typescript-eslint/no-this-alias
    const session = this;
    const o = this.#o;
    const broker = o.brokers.current;
    const identity = o.trust?.current();
    this.#attempt = identity && { trying: identity.trying, certSerial: identity.certSerial };
    const tls = identity ? identity.tls : o.tls;
    o.log.info(
      `mqtt: connecting to ${broker.host}:${broker.port}${tls ? " (mutual TLS)" : ""} as ${o.clientId}` +
        `${identity?.trying ? ` with the new certificate ${identity.certSerial}` : ""}`,
    );
    this.#connectTimer = o.timers.set(() => {
      this.#connectTimer = undefined;
      if (generation === this.#generation) this.#lost(`no CONNACK within ${o.connectTimeoutMs} ms`);
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
        tls,
        onControl(message) {
          if (generation === session.#generation) session.#onControl(message);
        },
        onWritable(count) {
          if (generation !== session.#generation) return;
          session.#writable = count;
          session.#pump();
        },
        onReadable(count, info) {
          if (generation === session.#generation) session.#onReadable(count, info);
        },
        onError(tlsFailure) {
          if (generation !== session.#generation) return;
          if (tlsFailure === undefined) {
            session.#lost("connection failed or lost");
            return;
          }
          session.#counters.tlsFailures++;
          session.#identityRefused();
          session.#lost(`TLS: ${tlsFailure}`);
        },
      });
    } catch (e) {
      this.#lost(`client could not start: ${describe(e)}`);
    }
  }

  #onControl(message: MqttControlMessage): void {
    if (message.operation === MqttOperation.CONNACK) {
      if (message.returnCode) {
        this.#identityRefused();
        this.#lost(`broker refused the connection (return code ${message.returnCode})`);
        return;
      }
      // Before the status is built: a tried identity becomes the one in use only now.
      if (this.#attempt?.trying) {
        this.#o.trust!.connected();
        this.#attempt.trying = false;
      }
      this.#o.timers.clear(this.#connectTimer);
      this.#connectTimer = undefined;
      this.#state = "connected";
      this.#counters.connects++;
      this.#o.backoff.reset();
      this.#statusPending = true;
      // Every connection: a broker that lost its persistent session (a crash before it saved) lost the
      // subscription with it. The broker may also have lost what it PUBACKed: unconfirmed readings go again.
      // In every confirmation mode: trust and config messages come on the same tree.
      this.#subscribePending = true;
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
      if (message.id === KEY_ANSWER_PACKET_ID) {
        this.#answer = undefined;
        return;
      }
      const seq = this.#inflightIds.get(message.id);
      if (seq === undefined) return;
      this.#inflightIds.delete(message.id);
      const outbox = this.#o.outbox;
      if (this.#holding) {
        if (outbox.markDelivered(seq, this.#o.now())) {
          this.#counters.acked++;
          if (this.#confirmState === "awaiting") this.#awaitingSince ??= this.#o.now();
          this.#armConfirmTimer();
        }
      } else if (outbox.ack(seq)) this.#counters.acked++;
      if (this.#switchPending && this.#inflightIds.size === 0) {
        this.#switchIdentity();
        return;
      }
      this.#pump();
    }
  }

  /** The connection with an identity being tried was refused (handshake or CONNACK): it counts against it. */
  #identityRefused(): void {
    if (!this.#attempt?.trying) return;
    this.#attempt.trying = false;
    this.#counters.identityFailures++;
    this.#o.trust!.failed();
  }

  #onReadable(count: number, info: MqttReadableInfo | undefined): void {
    const client = this.#client;
    if (!client) return;
    if (info?.topic !== undefined) {
      const limit = info.topic === this.#trustTopic ? MAX_TRUST_DOWNLINK_BYTES : MAX_DOWNLINK_BYTES;
      const oversized = (info.byteLength ?? count) > limit;
      this.#rx = { topic: info.topic, chunks: [], bytes: 0, oversized, limit };
    }
    const data = client.read(count);
    const rx = this.#rx;
    if (!rx) return; // a fragment of a message whose start we never saw: discarded
    if (!rx.oversized && data instanceof ArrayBuffer) {
      rx.bytes += data.byteLength;
      if (rx.bytes > rx.limit) rx.oversized = true;
      else rx.chunks.push(new Uint8Array(data));
    }
    if (info?.more) return;
    this.#rx = undefined;
    if (rx.oversized) {
      this.#counters.downlinkIgnored++;
      return;
    }
    if (rx.topic === this.#storedTopic && this.#confirmState !== "off")
      this.#onConfirmation(joinChunks(rx.chunks, rx.bytes));
    else if (rx.topic === this.#trustTopic && this.#o.trust?.rotates)
      this.#onTrust(joinChunks(rx.chunks, rx.bytes));
    else this.#counters.downlinkIgnored++;
  }

  /** A message on down/trust: the handler checks and stages it; a staged identity is connected with next. */
  #onTrust(bytes: Uint8Array): void {
    const out = this.#o.trust!.handle(bytes);
    if (!out.ok) {
      // Refused and counted by the handler; the connection and the readings carry on as they were.
      this.#counters.trustRefused++;
      return;
    }
    if (out.action === "publish") {
      this.#answer = { topic: out.topic, payload: out.payload };
      this.#pump();
      return;
    }
    if (out.action !== "reconnect") return;
    this.#counters.trustStaged++;
    if (this.#state !== "connected") return; // the next connection uses it anyway
    // Readings in flight would be sent again on the new connection (QoS 1: twice at the subscriber), so the
    // session stops sending and waits for their PUBACKs; a broker that does not answer does not hold it up.
    this.#switchPending = true;
    if (this.#inflightIds.size === 0) {
      // From a fresh turn: the client answers this PUBLISH's PUBACK after the callback returns.
      this.#switchTimer = this.#o.timers.set(() => this.#switchIdentity(), 0);
      return;
    }
    this.#switchTimer = this.#o.timers.set(() => this.#switchIdentity(), this.#o.connectTimeoutMs);
  }

  /** Closes the connection and connects again at once, to the same broker, with the staged identity. */
  #switchIdentity(): void {
    this.#o.timers.clear(this.#switchTimer);
    this.#switchTimer = undefined;
    if (!this.#switchPending || this.#state !== "connected") return;
    this.#switchPending = false;
    const inflight = this.#inflightIds.size;
    this.#dropClient();
    this.#o.outbox.connectionLost();
    this.#inflightIds.clear();
    this.#counters.identitySwitches++;
    this.#state = "waiting";
    this.#o.log.info(
      `mqtt: reconnecting with the new identity (${this.#o.outbox.size} queued` +
        `${inflight ? `, ${inflight} unacknowledged sent again` : ""})`,
    );
    this.#retryTimer = this.#o.timers.set(() => this.#connect(), 0);
  }

  #onConfirmation(bytes: Uint8Array): void {
    const decoded = decodeConfirmation(bytes);
    if (!decoded.ok) {
      this.#counters.confirmationsRejected++;
      this.#o.log.warn(`mqtt: refused a confirmation (${decoded.error.code}: ${decoded.error.message})`);
      return;
    }
    const { boot, ranges } = decoded.value;
    const earlier = boot !== this.#o.confirmations!.boot && this.#o.earlierBoots?.holds(boot) === true;
    if (boot !== this.#o.confirmations!.boot && !earlier) {
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
    const removed = earlier
      ? this.#o.earlierBoots!.confirmEarlier(boot, ranges)
      : this.#o.outbox.confirm(ranges);
    this.#counters.confirmed += removed;
    this.#o.timers.clear(this.#confirmTimer);
    this.#confirmTimer = undefined;
    this.#armConfirmTimer();
    if (removed > 0) this.#pump();
  }

  /** In mode auto before any confirmation came, the fallback decision is due a timeout after the first PUBACK. */
  get #decidingFallback(): boolean {
    return this.#confirmState === "awaiting" && this.#o.confirmations?.mode === "auto";
  }

  /** What the next deadline counts from: the first PUBACK (auto, deciding) or the oldest delivered reading. */
  #deadlineFrom(): number | undefined {
    const oldest = this.#o.outbox.oldestDeliveredAt();
    if (oldest === undefined || !this.#decidingFallback) return oldest;
    return this.#awaitingSince ?? oldest;
  }

  /** One timer for the oldest delivered reading's confirmation deadline. */
  #armConfirmTimer(): void {
    if (this.#confirmTimer || !this.#holding) return;
    const from = this.#deadlineFrom();
    if (from === undefined) return;
    const timeout = this.#o.confirmations!.timeoutMs * this.#timeoutScale;
    const wait = Math.max(0, from + timeout - this.#o.now());
    this.#confirmTimer = this.#o.timers.set(() => {
      this.#confirmTimer = undefined;
      this.#confirmationTimedOut(timeout);
    }, wait);
  }

  #confirmationTimedOut(timeout: number): void {
    const outbox = this.#o.outbox;
    const from = this.#deadlineFrom();
    if (!this.#holding || from === undefined) return;
    const left = from + timeout - this.#o.now();
    if (left > 0 || this.#state !== "connected") {
      // Not due yet (the oldest was confirmed or evicted meanwhile), or offline (the reconnect resends them
      // anyway): look again when it is due, or a timeout later.
      this.#confirmTimer = this.#o.timers.set(
        () => {
          this.#confirmTimer = undefined;
          this.#confirmationTimedOut(timeout);
        },
        left > 0 ? left : timeout,
      );
      return;
    }
    if (this.#decidingFallback) {
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
    if (this.#switchPending) return; // about to reconnect with a new identity: nothing new goes out
    const o = this.#o;
    try {
      if (this.#statusPending) {
        const status = o.onlineStatus(this.#attempt?.certSerial);
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
      const answer = this.#answer;
      if (answer && !this.#answerSent) {
        if (publishPacketBytes(this.#topicLength(answer.topic), answer.payload.length, 1) > this.#writable)
          return;
        this.#writable = this.#client.write(answer.payload.slice().buffer as ArrayBuffer, {
          topic: answer.topic,
          QoS: 1,
          retain: true,
          id: KEY_ANSWER_PACKET_ID,
        });
        this.#answerSent = true;
      }
      if (this.#subscribePending) {
        const filter = this.#downFilter;
        if (subscribePacketBytes([this.#topicLength(filter)]) > this.#writable) return;
        this.#writable = this.#client.write(undefined, {
          operation: MqttOperation.SUBSCRIBE,
          id: SUBSCRIBE_PACKET_ID,
          // QoS 0 on purpose: every downlink message is safe to miss. A confirmation lost with a connection
          // is made good by the resend after the reconnect (the ingest confirms duplicates too), and trust
          // messages are retained, so the next subscribe delivers them. A QoS 1 subscription would make the
          // broker keep per-board state: on NATS a replicated JetStream consumer per board, 300 of which kept
          // a restarted node from becoming current within 30 s.
          items: [{ topic: filter, QoS: 0 }],
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
    this.#switchPending = false;
    this.#o.timers.clear(this.#switchTimer);
    this.#switchTimer = undefined;
    this.#o.timers.clear(this.#connectTimer);
    this.#connectTimer = undefined;
    this.#statusPending = false;
    this.#answerSent = false;
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
