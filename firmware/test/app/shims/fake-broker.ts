// Host shim of the ECMA-419 MQTT client (as Moddable's examples/io/tcp/mqttclient behaves) and of a
// broker behind it, on virtual time: CONNACK then writable space after a connect latency; write()
// throws when the client is not connected or the packet exceeds the writable space; PUBACK arrives
// later through onControl; a dead connection calls onError once and the client closes itself.
import { MqttOperation, publishPacketBytes } from "../../../src/app/mqtt-client";
import type {
  MqttClient,
  MqttConnectOptions,
  MqttPublishOptions,
  MqttSubscribeOptions,
} from "../../../src/app/mqtt-client";
import type { VirtualTimers } from "./virtual-timers";

export interface BrokerMessage {
  clientId: string;
  topic: string;
  payload: Uint8Array;
  id: number | undefined;
  qos: 0 | 1;
  retain: boolean;
  duplicate: boolean;
  /** Virtual ms since boot when the broker got it. */
  at: number;
  /** Published by the broker itself as the client's last will. */
  will: boolean;
}

/** What the client reserves from the socket's space, like the ECMA-419 client's 8-byte overhead. */
const OVERHEAD = 8;

export class FakeBroker {
  up = true;
  connectLatencyMs = 20;
  pubackLatencyMs = 5;
  /** The socket's writable space after each drain. */
  socketBytes = 1400;
  /** When false, connections are accepted but never answered (a stalled TLS handshake). */
  answersConnects = true;
  /**
   * While set, the TLS handshake refuses the server with this reason (what the guarded TLS socket reports
   * for a broker pin or chain refusal): the connection fails before anything is sent.
   */
  tlsRefusal: string | undefined;
  /** Refuses the handshake of a client whose certificate this returns a reason for (a revoked or unknown one). */
  refuseCertificate: ((certDer: ArrayBuffer) => string | undefined) | undefined;
  /** PUBACKs are not sent while set (they are "lost" with the connection that carried them). */
  holdPubacks = false;
  readonly received: BrokerMessage[] = [];
  readonly retained = new Map<string, Uint8Array>();
  readonly connects: MqttConnectOptions[] = [];
  /** Virtual time of every connection attempt, accepted or not. */
  readonly attempts: number[] = [];
  /** SUBSCRIBE filters, per client id, as the broker's persistent session would keep them. */
  readonly subscriptions = new Map<string, Set<string>>();
  /** SUBACK answers this instead of the granted QoS while set (0x80: refused). */
  subackCode: number | undefined;
  readonly #attached = new Set<ShimMqttClient>();
  readonly #heldAcks: { client: ShimMqttClient; id: number }[] = [];

  constructor(readonly timers: VirtualTimers) {}

  /** The factory the app gets: one shim client per connection attempt. */
  readonly factory = (options: MqttConnectOptions): MqttClient => new ShimMqttClient(options, this);

  get connected(): number {
    return this.#attached.size;
  }

  /** Broker goes away: every connection dies (their wills are published) and new ones are refused. */
  stop(): void {
    this.up = false;
    for (const c of [...this.#attached]) {
      this.#publishWill(c);
      c.fail();
    }
  }

  start(): void {
    this.up = true;
  }

  /**
   * The broker as a cluster: the nodes named `host:port` here are down (their connections died, new ones
   * fail) while the others serve the same sessions and messages.
   */
  readonly downNodes = new Set<string>();

  stopNode(hostPort: string): void {
    this.downNodes.add(hostPort);
    for (const c of [...this.#attached])
      if (`${c.options.host}:${c.options.port}` === hostPort) {
        this.#publishWill(c);
        c.fail();
      }
  }

  startNode(hostPort: string): void {
    this.downNodes.delete(hostPort);
  }

  /** Held PUBACKs go out now (to clients still connected). */
  releasePubacks(): void {
    this.holdPubacks = false;
    for (const { client, id } of this.#heldAcks.splice(0))
      client.control({ operation: MqttOperation.PUBACK, id });
  }

  /**
   * Sends a QoS 1 message to the connected client `clientId` if it subscribed to a matching filter, in
   * `fragments` pieces (as the ECMA-419 client announces a message that arrives in several TCP segments).
   * False when nothing was delivered.
   */
  deliver(clientId: string, topic: string, payload: Uint8Array, fragments = 1): boolean {
    const client = [...this.#attached].find((c) => c.options.id === clientId);
    const filters = this.subscriptions.get(clientId);
    if (!client || !filters || ![...filters].some((f) => topicMatches(f, topic))) return false;
    client.deliver(topic, payload, fragments);
    return true;
  }

  subscribe(c: ShimMqttClient, o: MqttSubscribeOptions): void {
    let set = this.subscriptions.get(c.options.id);
    if (!set) this.subscriptions.set(c.options.id, (set = new Set()));
    for (const item of o.items) set.add(item.topic);
    const code = this.subackCode;
    this.timers.set(() => {
      if (this.#attached.has(c))
        c.control({
          operation: MqttOperation.SUBACK,
          id: o.id,
          payload: o.items.map((i) => code ?? i.QoS),
        });
    }, this.pubackLatencyMs);
  }

  /** Messages the app published (no wills), optionally on one topic. */
  published(topic?: string): BrokerMessage[] {
    return this.received.filter((m) => !m.will && (topic === undefined || m.topic === topic));
  }

  attach(c: ShimMqttClient): boolean {
    if (!this.up) return false;
    this.connects.push(c.options);
    this.#attached.add(c);
    return true;
  }

  detach(c: ShimMqttClient): void {
    this.#attached.delete(c);
  }

  receive(c: ShimMqttClient, payload: Uint8Array, o: MqttPublishOptions): void {
    this.received.push({
      clientId: c.options.id,
      topic: o.topic,
      payload,
      id: o.id,
      qos: o.QoS,
      retain: o.retain === true,
      duplicate: o.duplicate === true,
      at: this.timers.elapsed,
      will: false,
    });
    if (o.retain) this.retained.set(o.topic, payload);
    if (o.QoS === 1 && o.id !== undefined) {
      const id = o.id;
      this.timers.set(() => {
        if (!this.#attached.has(c)) return;
        if (this.holdPubacks) this.#heldAcks.push({ client: c, id });
        else c.control({ operation: MqttOperation.PUBACK, id });
      }, this.pubackLatencyMs);
    }
  }

  #publishWill(c: ShimMqttClient): void {
    const w = c.options.will;
    const payload = new Uint8Array(w.message.slice(0));
    this.received.push({
      clientId: c.options.id,
      topic: w.topic,
      payload,
      id: undefined,
      qos: w.QoS,
      retain: w.retain,
      duplicate: false,
      at: this.timers.elapsed,
      will: true,
    });
    if (w.retain) this.retained.set(w.topic, payload);
  }
}

export class ShimMqttClient implements MqttClient {
  #state: "connecting" | "connected" | "closed" = "connecting";
  #writable = 0;
  #drain: object | undefined;

  constructor(
    readonly options: MqttConnectOptions,
    readonly broker: FakeBroker,
  ) {
    broker.attempts.push(broker.timers.elapsed);
    broker.timers.set(() => {
      if (this.#state !== "connecting") return;
      if (!broker.up || broker.downNodes.has(`${options.host}:${options.port}`)) {
        this.fail();
        return;
      }
      if (broker.tlsRefusal !== undefined) {
        this.fail(broker.tlsRefusal);
        return;
      }
      const refused = options.tls && broker.refuseCertificate?.(options.tls.certDer);
      if (refused) {
        this.fail(refused);
        return;
      }
      if (!broker.answersConnects) return;
      broker.attach(this);
      this.#state = "connected";
      this.#writable = broker.socketBytes;
      options.onControl({ operation: MqttOperation.CONNACK, id: 0, returnCode: 0 });
      if (this.#state === "connected") options.onWritable(this.#writable - OVERHEAD);
    }, broker.connectLatencyMs);
  }

  write(data: ArrayBuffer | undefined, options: MqttPublishOptions | MqttSubscribeOptions): number {
    if (this.#state !== "connected") throw new Error("not connected");
    if ("items" in options) {
      this.broker.subscribe(this, options);
      return Math.max(0, this.#writable - OVERHEAD);
    }
    const o = options;
    if (!(data instanceof ArrayBuffer)) throw new TypeError("write expects an ArrayBuffer");
    if (o.QoS === 1 && (o.id === undefined || o.id < 1 || o.id > 65535))
      throw new RangeError("QoS 1 needs a packet id 1..65535");
    const size = publishPacketBytes(Buffer.byteLength(o.topic), data.byteLength, o.QoS);
    if (size > this.#writable) throw new Error("overflow");
    this.#writable -= size;
    this.broker.receive(this, new Uint8Array(data.slice(0)), o);
    // The socket drains a moment later and reports its space again.
    this.#drain ??= this.broker.timers.set(() => {
      this.#drain = undefined;
      if (this.#state !== "connected") return;
      this.#writable = this.broker.socketBytes;
      this.options.onWritable(this.#writable - OVERHEAD);
    }, 1);
    return Math.max(0, this.#writable - OVERHEAD);
  }

  #incoming: Uint8Array | undefined;

  read(count: number): unknown {
    const data = this.#incoming;
    if (!data) return undefined;
    const n = Math.min(count, data.length);
    this.#incoming = n < data.length ? data.subarray(n) : undefined;
    return data.slice(0, n).buffer;
  }

  deliver(topic: string, payload: Uint8Array, fragments: number): void {
    const size = Math.ceil(payload.length / fragments) || 1;
    for (let o = 0, first = true; first || o < payload.length; o += size, first = false) {
      if (this.#state !== "connected") return;
      const piece = payload.subarray(o, Math.min(payload.length, o + size));
      this.#incoming = piece;
      const more = o + size < payload.length;
      this.options.onReadable(
        piece.length,
        first ? { topic, QoS: 1, byteLength: payload.length, more } : { more },
      );
    }
  }

  close(): void {
    this.#state = "closed";
    this.broker.timers.clear(this.#drain);
    this.broker.detach(this);
  }

  control(message: { operation: number; id: number; payload?: number[] }): void {
    if (this.#state === "connected") this.options.onControl(message);
  }

  /** The connection died: onError once, then the client closes itself. */
  fail(tlsFailure?: string): void {
    if (this.#state === "closed") return;
    this.#state = "closed";
    this.broker.detach(this);
    this.options.onError(tlsFailure);
    this.close();
  }
}

/** MQTT topic filter matching (+ one level, # the rest). */
export function topicMatches(filter: string, topic: string): boolean {
  const f = filter.split("/");
  const t = topic.split("/");
  for (let i = 0; i < f.length; i++) {
    if (f[i] === "#") return true;
    if (i >= t.length) return false;
    if (f[i] !== "+" && f[i] !== t[i]) return false;
  }
  return f.length === t.length;
}
