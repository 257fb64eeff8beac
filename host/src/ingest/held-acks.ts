// QoS 1 delivery with the PUBACK held back until the ingest says so.
//
// MQTT.js processes incoming packets one at a time: the next packet (another PUBLISH, a
// PINGRESP, a SUBACK) is handled only after `handleMessage`'s callback ran, and the PUBACK
// is sent right after that callback. Holding the callback until the store accepted a write
// would therefore stall the whole connection and allow no batching. Instead the callback is
// called at once with a marker error: MQTT.js then skips its own PUBACK and moves on to the
// next packet (handlers/publish.js, mqtt 5.x), and the PUBACK is sent later by ack().
//
// An acknowledgement belongs to the connection that received the message: after a reconnect
// the broker re-sends every unacknowledged message, so acks of an older connection are
// dropped, never sent on the new one (a packet id may by then name another message).
import type { IPublishPacket, MqttClient } from "mqtt";

export interface HeldMessage {
  topic: string;
  payload: Buffer;
  qos: 0 | 1 | 2;
  /** The publisher set RETAIN (the telemetry subscription asks for retain-as-published). */
  retain: boolean;
  messageId: number | undefined;
  /** Which connection delivered it. */
  connection: number;
  receivedAt: number;
}

/** The marker: tells MQTT.js not to acknowledge (the error itself goes nowhere). */
const DEFER_ACK = new Error("acknowledgement deferred by the ingest");

interface PrivateClient {
  _sendPacket(
    packet: { cmd: "puback"; messageId: number; reasonCode?: number },
    cb?: (err?: Error) => void,
    cbStorePut?: undefined,
    noStore?: boolean,
  ): void;
}

export class HeldAckReceiver {
  readonly #client: MqttClient;
  #connection = 0;
  #held = 0;
  readonly #waiting: (() => void)[] = [];

  /**
   * @param maxHeld safety valve: with this many messages unacknowledged, stop reading from the
   *   broker until some are acknowledged. Normally never reached: the MQTT 5 Receive Maximum
   *   (set to the same number) already stops the broker from sending more.
   */
  constructor(
    client: MqttClient,
    onMessage: (m: HeldMessage) => void,
    readonly maxHeld: number,
  ) {
    this.#client = client;
    client.on("connect", () => {
      this.#connection++;
      // Unacknowledged messages of the old connection come again; they no longer count as held.
      this.#held = 0;
      this.#release();
    });
    client.handleMessage = (packet: IPublishPacket, callback) => {
      const qos = packet.qos;
      const m: HeldMessage = {
        topic: packet.topic,
        payload: typeof packet.payload === "string" ? Buffer.from(packet.payload) : packet.payload,
        qos,
        retain: packet.retain,
        messageId: packet.messageId,
        connection: this.#connection,
        receivedAt: Date.now(),
      };
      if (qos > 0) this.#held++;
      onMessage(m);
      const next = () => callback(qos > 0 ? DEFER_ACK : undefined);
      // The broker honours Receive Maximum (= maxHeld), so a full window is normal during a store
      // outage and must not stall the connection: a stalled MQTT.js reads no PINGRESP and drops the
      // link after 1.5 × keepalive, and each reconnect re-delivers the whole window. Stall only
      // when a broker sends more than it may.
      if (this.#held > this.maxHeld) this.#waiting.push(next);
      else next();
    };
  }

  get connection(): number {
    return this.#connection;
  }

  get held(): number {
    return this.#held;
  }

  /**
   * Sends the PUBACK for a message. Returns false when it can no longer be sent (the
   * connection that delivered it is gone); the broker will deliver the message again.
   * Acks must be given in the order messages arrived (MQTT-4.6.0-2).
   */
  /**
   * Runs `acks` with the socket corked, so a batch's PUBACKs leave in a few TLS records
   * instead of one record and one syscall each.
   */
  batch(acks: () => void): void {
    const stream = (this.#client as unknown as { stream?: { cork?: () => void; uncork?: () => void } })
      .stream;
    stream?.cork?.();
    try {
      acks();
    } finally {
      if (stream?.uncork) process.nextTick(() => stream.uncork?.());
    }
  }

  ack(m: HeldMessage): boolean {
    if (m.qos === 0 || m.messageId === undefined) return true;
    if (m.connection !== this.#connection || !this.#client.connected) return false;
    this.#held--;
    (this.#client as unknown as PrivateClient)._sendPacket(
      { cmd: "puback", messageId: m.messageId, reasonCode: 0 },
      undefined,
      undefined,
      true,
    );
    this.#release();
    return true;
  }

  /** Forget a message without acknowledging it (shutdown): the broker keeps it for the next session. */
  abandon(m: HeldMessage): void {
    if (m.qos > 0 && m.connection === this.#connection) this.#held--;
    this.#release();
  }

  #release(): void {
    while (this.#held <= this.maxHeld && this.#waiting.length > 0) this.#waiting.shift()?.();
  }
}
