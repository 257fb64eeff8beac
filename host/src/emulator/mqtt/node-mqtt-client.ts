/**
 * The emulator's implementation of the firmware's MQTT client seam (`MqttClientFactory`/`MqttClient` in
 * firmware/src/app/mqtt-client.ts) over node:tls, behaving as the ECMA-419 client does for the session:
 * CONNACK and PUBACK through onControl, writable space reported after CONNACK, one onError when the
 * connection fails or dies, no callbacks after close(), no outbox, no reconnect. Everything above this
 * (packet ids, resend with DUP, CONNACK timeout, backoff, status and will) is the firmware's MqttSession.
 *
 * This is the one place where an emulated board's DER identity becomes a Node TLS connection, so the
 * firmware's broker check (pins, strict chain: firmware/src/tls/broker-trust) runs here, before CONNECT, and a
 * refused server or a failed TLS handshake reaches the session as a TLS failure with its reason, as the
 * firmware's guarded TLS socket reports it.
 */
import { createSecureContext } from "node:tls";
import type { SecureContext, TLSSocket } from "node:tls";
import { MqttOperation } from "../../../../firmware/src/app/mqtt-client";
import type {
  MqttClient,
  MqttConnectOptions,
  MqttPublishOptions,
  MqttSubscribeOptions,
  MqttTlsOptions,
} from "../../../../firmware/src/app/mqtt-client";
import { BrokerRefusedError, LeanMqttClient } from "./lean-client";
import type { LeanClientHandlers } from "./lean-client";
import type { BrokerCheck } from "../../tls/node-broker-trust";

/**
 * A Node socket buffers whatever is written, so the writable space the session sees is a fixed budget
 * per write: the session's in-flight window, not the socket, bounds what is queued.
 */
export const NODE_WRITABLE_BYTES = 64 * 1024;

/** The firmware's TLS 1.2 suites (Moddable's TLS has its AES-256-GCM suites disabled). */
const FIRMWARE_CIPHERS = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256";

const contexts = new WeakMap<MqttTlsOptions, SecureContext>();

function pem(der: ArrayBuffer, label: string): string {
  const b64 = Buffer.from(der).toString("base64");
  return `-----BEGIN ${label}-----\n${b64.replace(/.{64}/g, "$&\n")}\n-----END ${label}-----\n`;
}

/**
 * The TLS context for a board's identity, built once per identity (a board builds it at boot, before the
 * fleet's clock starts, so connect times measure handshakes and not key parsing).
 */
export function secureContextFor(tls: MqttTlsOptions): SecureContext {
  let context = contexts.get(tls);
  if (!context) {
    context = createSecureContext({
      // No CA: the board's broker check (BrokerCheck, the firmware's BrokerTrust) judges the chain against the
      // identity's anchor and pins, as on the board; OpenSSL verifying it too cost ~1 ms a handshake for
      // nothing (lean-client.ts, checkServer).
      cert: pem(tls.certDer, "CERTIFICATE"),
      key: pem(tls.keyDer, "PRIVATE KEY"),
      // What the firmware's TLS (Moddable) speaks: TLS 1.2 only, ECDHE with AES-128-GCM. It is also cheaper
      // here than TLS 1.3 (no post-handshake session tickets to parse and copy per connection). The key
      // exchange curve is left to OpenSSL (X25519 first): the firmware's P-256 costs ~0.2 ms more a handshake.
      minVersion: "TLSv1.2",
      maxVersion: "TLSv1.2",
      ciphers: FIRMWARE_CIPHERS,
    });
    contexts.set(tls, context);
  }
  return context;
}

/** What the fleet observes of a board's connection: pacing and figures, never delivery decisions. */
export interface ConnectionProbe {
  onConnack(client: NodeMqttClient, accepted: boolean): void;
  onPublish(id: number, duplicate: boolean, retain: boolean): void;
  /** After the session handled the PUBACK. */
  onPuback(id: number): void;
  /** Once per opened client, whatever ended it; `brokerRefused` when the broker check refused the server. */
  onClosed(client: NodeMqttClient, established: boolean, handshake: boolean, brokerRefused: boolean): void;
}

export interface NodeMqttClientOptions {
  /** One receive buffer for every board of a thread (boards receive acks and small downlink messages; a trust message is a few KB). */
  readBuffer: Buffer;
  probe: ConnectionProbe;
  brokerCheck: BrokerCheck;
}

/**
 * The client is its own connection's handler (LeanClientHandlers), rather than an object of arrow functions per
 * connection: under tsx each named arrow is a function with a property dictionary (keepNames), ~300 B a board.
 */
export class NodeMqttClient implements MqttClient, LeanClientHandlers {
  readonly #o: MqttConnectOptions;
  readonly #n: NodeMqttClientOptions;
  #lean: LeanMqttClient | undefined;
  #closed = false;
  #established = false;
  #topic = "";
  #topicBytes: Buffer = Buffer.alloc(0);
  /** The payload of the PUBLISH being announced through onReadable, until read() takes it. */
  #incoming: Buffer | undefined;

  constructor(options: MqttConnectOptions, node: NodeMqttClientOptions) {
    if (!options.tls) throw new Error("emulated boards speak mutual TLS only");
    this.#o = options;
    this.#n = node;
  }

  /** Milliseconds (performance.now) of the last byte written / read, for the fleet's keepalive sweep. */
  get lastSentAt(): number {
    return this.#lean?.lastSentAt ?? 0;
  }
  get lastReceivedAt(): number {
    return this.#lean?.lastReceivedAt ?? 0;
  }
  get established(): boolean {
    return this.#established;
  }
  /** The session's keepalive, in milliseconds (the ECMA-419 client's unit). */
  get keepaliveMs(): number {
    return this.#o.keepalive;
  }
  get opened(): boolean {
    return this.#lean !== undefined;
  }
  get closed(): boolean {
    return this.#closed;
  }

  /**
   * Opens the TLS connection and sends CONNECT. The owner calls this when its connection pacing allows;
   * false when there was nothing to open (already open, or closed by the session meanwhile).
   */
  open(): boolean {
    if (this.#closed || this.#lean) return false;
    const o = this.#o;
    this.#lean = new LeanMqttClient(
      {
        host: o.host,
        port: o.port,
        secureContext: secureContextFor(o.tls!),
        clientId: o.id,
        clean: o.clean,
        keepaliveS: Math.round(o.keepalive / 1000),
        will: {
          topic: o.will.topic,
          payload: Buffer.from(o.will.message),
          qos: o.will.QoS,
          retain: o.will.retain,
        },
        sharedReadBuffer: this.#n.readBuffer,
        checkServer: this,
      },
      this,
    );
    return true;
  }

  /** The broker check, run once TLS is up: against the pins of the identity this connection uses (its slot's). */
  refusal(socket: TLSSocket): string | undefined {
    return this.#n.brokerCheck.refusal(socket, this.#o.tls!);
  }

  /** The connection could not even start (the board's network is down): reported like a failed connect. */
  fail(): void {
    if (this.#closed || this.#lean) return;
    this.#closed = true;
    this.#o.onError();
  }

  write(data: ArrayBuffer | undefined, options: MqttPublishOptions | MqttSubscribeOptions): number {
    const lean = this.#lean;
    if (this.#closed || !lean || !this.#established) throw new Error("not connected");
    if ("items" in options) {
      lean.subscribe(
        options.id,
        options.items.map((i) => ({ topic: i.topic, qos: i.QoS })),
      );
      return NODE_WRITABLE_BYTES;
    }
    if (!data) throw new TypeError("PUBLISH needs a payload");
    if (options.topic !== this.#topic) {
      this.#topic = options.topic;
      this.#topicBytes = ownBuffer(options.topic);
    }
    const id = options.id ?? 0;
    const duplicate = options.duplicate ?? false;
    const retain = options.retain ?? false;
    lean.publish(this.#topicBytes, new Uint8Array(data), options.QoS, retain, id, duplicate);
    this.#n.probe.onPublish(id, duplicate, retain);
    return NODE_WRITABLE_BYTES;
  }

  /** The announced message's payload, copied (the receive buffer is shared by every board of the thread). */
  read(count: number): ArrayBuffer | undefined {
    const data = this.#incoming;
    if (!data) return undefined;
    const n = Math.min(count, data.length);
    this.#incoming = n < data.length ? data.subarray(n) : undefined;
    const out = new ArrayBuffer(n);
    new Uint8Array(out).set(data.subarray(0, n));
    return out;
  }

  // LeanClientHandlers: what the connection reports, passed on as the ECMA-419 client reports it.
  onPuback(id: number): void {
    if (this.#closed) return;
    this.#o.onControl({ operation: MqttOperation.PUBACK, id });
    this.#n.probe.onPuback(id);
  }

  onSuback(id: number, granted: number[]): void {
    if (!this.#closed) this.#o.onControl({ operation: MqttOperation.SUBACK, id, payload: granted });
  }

  /**
   * A PUBLISH from the broker (the board's downlink): announced whole, as the ECMA-419 client announces a message
   * that arrived in one segment, and answered with PUBACK after the session read it, as that client does.
   */
  onPublish(topic: string, payload: Buffer, qos: number, packetId: number): void {
    if (this.#closed) return;
    this.#incoming = payload;
    this.#o.onReadable(payload.length, { topic, QoS: qos, byteLength: payload.length, more: false });
    this.#incoming = undefined;
    if (qos === 1 && !this.#closed) this.#lean?.puback(packetId);
  }

  ping(): void {
    this.#lean?.ping();
  }

  /** Ends the connection without DISCONNECT (the broker publishes the will); no callbacks follow. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#lean?.destroy();
  }

  /** A network failure injected by the fleet: the socket vanishes and the session is told, as on a board. */
  drop(reason: string): void {
    this.#lean?.destroy(new Error(reason));
  }

  onConnack(rc: number): void {
    if (this.#closed) return;
    this.#established = rc === 0;
    this.#n.probe.onConnack(this, rc === 0);
    this.#o.onControl({ operation: MqttOperation.CONNACK, returnCode: rc });
    if (rc === 0 && !this.#closed) this.#o.onWritable(NODE_WRITABLE_BYTES);
  }

  onClose(err: Error | undefined, handshake: boolean): void {
    const wasClosed = this.#closed;
    this.#closed = true;
    const refused = err instanceof BrokerRefusedError;
    this.#n.probe.onClosed(this, this.#established, handshake, refused);
    this.#established = false;
    if (!wasClosed) this.#o.onError(handshake ? tlsFailure(err) : undefined);
  }
}

/**
 * A string's bytes in a buffer of their own. Buffer.from(string) takes a slice of Node's shared 8 KB pool, and a
 * slice kept for the connection's life (the topic) keeps the whole slab alive with whatever short-lived packets
 * shared it: measured, about 2.8 KB per board at 2,000 boards.
 */
function ownBuffer(text: string): Buffer {
  const buf = Buffer.allocUnsafeSlow(Buffer.byteLength(text));
  buf.write(text);
  return buf;
}

/**
 * The reason a connection that never completed TLS failed in the handshake itself (what the firmware reports
 * as a TLS failure), or undefined for a socket-level failure (refused, reset, timed out: codes like ECONNREFUSED).
 */
function tlsFailure(err: Error | undefined): string | undefined {
  if (!err) return undefined;
  if (err instanceof BrokerRefusedError) return err.message;
  const code = (err as NodeJS.ErrnoException).code;
  return typeof code === "string" && !/^E[A-Z]+$/.test(code) ? err.message : undefined;
}
