// Ingest workers on the NATS cluster: each worker pulls from the same JetStream durable consumers on the
// MQTT layer's message stream (`$MQTT_msgs`, see host/src/broker/nats/message-stream.ts), so several
// `npm run ingest -- --jetstream …` processes share the load: JetStream hands each message to one of them,
// and one that is not acknowledged within the consumer's AckWait (a worker killed, say) goes to another.
// A message is acknowledged only after the store wrote it (the service's commit path), as over MQTT.
//
// What a worker cannot see here: the MQTT RETAIN flag (2.9.10 stores a QoS 1 publish in `$MQTT_msgs` with
// its QoS header only), so retained telemetry is not refused as `retained` on this path.
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { jetstream, type ConsumerMessages, type JsMsg } from "@nats-io/jetstream";
import type { HeldMessage } from "./held-acks";
import type { MessageSource } from "./message-source";

/** The MQTT layer's subject prefix in `$MQTT_msgs`: `$MQTT.msgs.` + the topic with `/` as `.`. */
const MQTT_SUBJECT_PREFIX = "$MQTT.msgs.";

export interface JetStreamSourceOptions {
  /** `tls://host:port` of the cluster's NATS ports (any node will do; the client fails over). */
  servers: string[];
  /** The worker's own route-CA client certificate (PEM files) and the route CA. */
  tls: { cert: string; key: string; ca: string };
  stream: string;
  /** The durable consumers to pull from (telemetry, status), created by the cluster launcher. */
  durables: readonly string[];
  /** Messages pulled and not yet acknowledged, at most (per durable, as a pull window). */
  maxHeld: number;
  /** The connection name the cluster's monitoring shows. */
  name: string;
  log: (line: string) => void;
}

/** `$MQTT.msgs.electrolyser.x.telemetry` → `electrolyser/x/telemetry` (2.9 writes a topic's `.` as `//`). */
export function topicOfSubject(subject: string): string | undefined {
  if (!subject.startsWith(MQTT_SUBJECT_PREFIX)) return undefined;
  return subject
    .slice(MQTT_SUBJECT_PREFIX.length)
    .split("//")
    .map((part) => part.replaceAll(".", "/"))
    .join(".");
}

/**
 * `electrolyser/x/down/stored` → `electrolyser.x.down.stored`, the subject an MQTT subscription of that topic
 * listens on (the inverse of topicOfSubject, without the stream's prefix).
 */
export function subjectOfTopic(topic: string): string {
  return topic
    .split(".")
    .map((part) => part.replaceAll("/", "."))
    .join("//");
}

export class JetStreamSource implements MessageSource {
  readonly #o: JetStreamSourceOptions;
  readonly #pulled = new Map<HeldMessage, JsMsg>();
  #nc: NatsConnection | undefined;
  readonly #consumers: ConsumerMessages[] = [];
  readonly #loops: Promise<void>[] = [];

  constructor(o: JetStreamSourceOptions) {
    this.#o = o;
  }

  get held(): number {
    return this.#pulled.size;
  }

  /** Acknowledgements are not bound to a connection on JetStream: one "connection" for the whole run. */
  get connection(): number {
    return 1;
  }

  get connected(): boolean {
    return this.#nc !== undefined && !this.#nc.isClosed();
  }

  /**
   * A plain NATS publish on the topic's subject: the boards subscribe their downlink at QoS 0, which on NATS is
   * a plain subscription, so it reaches the board on whatever node it is connected to. Lost with a connection,
   * it is made good by the board's resend and the next round, as over MQTT.
   */
  publishDownlink(topic: string, payload: Uint8Array): boolean {
    const nc = this.#nc;
    if (!nc || nc.isClosed()) return false;
    nc.publish(subjectOfTopic(topic), payload);
    return true;
  }

  async start(onMessage: (m: HeldMessage) => void): Promise<void> {
    const o = this.#o;
    const nc = await connect({
      servers: o.servers,
      tls: { certFile: o.tls.cert, keyFile: o.tls.key, caFile: o.tls.ca },
      name: o.name,
      maxReconnectAttempts: -1,
      reconnectTimeWait: 1000,
      timeout: 10_000,
    });
    this.#nc = nc;
    void (async () => {
      for await (const s of nc.status())
        if (s.type === "disconnect" || s.type === "reconnect") o.log(`ingest: NATS ${s.type}`);
        // A permission violation (a confirmation the cluster refuses, say) arrives only here.
        else if (s.type === "error") o.log(`ingest: NATS error: ${s.error.message}`);
    })();
    const js = jetstream(nc);
    for (const durable of o.durables) {
      const consumer = await js.consumers.get(o.stream, durable);
      const messages = await consumer.consume({
        max_messages: Math.max(1, Math.floor(o.maxHeld / o.durables.length)),
      });
      this.#consumers.push(messages);
      this.#loops.push(
        (async () => {
          for await (const jm of messages) {
            const topic = topicOfSubject(jm.subject);
            const m: HeldMessage = {
              topic: topic ?? jm.subject,
              payload: Buffer.from(jm.data.buffer, jm.data.byteOffset, jm.data.byteLength),
              qos: 1,
              retain: false,
              messageId: undefined,
              connection: 1,
              receivedAt: Date.now(),
            };
            this.#pulled.set(m, jm);
            onMessage(m);
          }
        })(),
      );
    }
  }

  batch(acks: () => void): void {
    acks();
  }

  ack(m: HeldMessage): boolean {
    const jm = this.#pulled.get(m);
    if (!jm) return false;
    this.#pulled.delete(m);
    jm.ack();
    return true;
  }

  /** Shutdown: handed back at once (NAK), so another worker takes it without waiting for AckWait. */
  abandon(m: HeldMessage): void {
    const jm = this.#pulled.get(m);
    if (!jm) return;
    this.#pulled.delete(m);
    jm.nak();
  }

  async stop(): Promise<void> {
    for (const c of this.#consumers) await c.close().catch(() => undefined);
    await Promise.allSettled(this.#loops);
    // Whatever is still pulled and unwritten goes back for the others.
    for (const m of [...this.#pulled.keys()]) this.abandon(m);
    await this.#nc?.drain().catch(() => undefined);
  }
}
