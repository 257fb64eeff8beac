/**
 * A deliberately small MQTT 3.1.1 client over TLS for the emulator: one socket, one splitter, no streams,
 * timers or stores of its own. Thousands of these live in one process, so per-connection memory and CPU
 * per message matter more than features. Retransmission, packet ids and keepalive scheduling belong to the
 * caller (the board and the fleet), which already keep that state.
 */
import { connect as tlsConnect } from "node:tls";
import type { SecureContext, TLSSocket } from "node:tls";
import { isIP } from "node:net";
import mqttPacket from "mqtt-packet";
import { DISCONNECT, FrameSplitter, PINGREQ, PacketType, encodePuback, encodePublish } from "./frames";

export interface LeanClientOptions {
  host: string;
  port: number;
  secureContext: SecureContext;
  clientId: string;
  clean: boolean;
  keepaliveS: number;
  will?: { topic: string; payload: Buffer; qos: 0 | 1; retain: boolean };
  /** Abort a connection attempt (TCP + TLS + CONNACK) after this long. */
  connectTimeoutMs?: number;
  /**
   * Decrypted bytes land in this buffer, shared by every client of a thread, instead of a new Buffer per
   * read pushed through a stream: a PUBLISH body passed to onPublish is then valid only during the call.
   */
  sharedReadBuffer?: Buffer;
  /**
   * Runs once TLS is up and before anything is sent: a returned reason refuses the server (the board's
   * broker check), and the client closes as a failed handshake with that reason. With a check, it is the only
   * judge of the server's chain, as on the board (firmware/src/tls/broker-trust.ts checks pins, chain, validity
   * and CA flags); without one, OpenSSL verifies the chain against the context's CA (rejectUnauthorized).
   * The handshake itself still proves the server holds the leaf's key either way.
   */
  checkServer?: { refusal(socket: TLSSocket): string | undefined };
}

export interface LeanClientHandlers {
  onConnack(returnCode: number, sessionPresent: boolean): void;
  onPuback(packetId: number): void;
  onPublish?(topic: string, payload: Buffer, qos: number, packetId: number): void;
  onSuback?(packetId: number, granted: number[]): void;
  /** Once per client, whatever ended it (error, broker close, destroy). `handshake` is true if TLS never completed. */
  onClose(error: Error | undefined, handshake: boolean): void;
}

/** The server completed TLS but is not the broker the board was provisioned for. */
export class BrokerRefusedError extends Error {
  constructor(reason: string) {
    super(reason);
    this.name = "BrokerRefusedError";
  }
}

/**
 * Clients that wrote in the current tick. A board that reconnects sends its backlog in one go; corked until
 * the tick ends, those PUBLISHes leave as one TLS record and one syscall (Node's TLS joins a writev) instead
 * of one each, which is most of the emulator's and much of the broker's cost per message in a backlog.
 */
const corkedThisTick: LeanMqttClient[] = [];

function uncorkAll(): void {
  for (const c of corkedThisTick) c.uncork();
  corkedThisTick.length = 0;
}

export class LeanMqttClient {
  readonly #h: LeanClientHandlers;
  readonly #socket: TLSSocket;
  readonly #splitter = new FrameSplitter();
  #secure = false;
  #closed = false;
  #corked = false;
  #error: Error | undefined;
  #timer: NodeJS.Timeout | undefined;
  /** Milliseconds (performance.now) of the last byte written / read: the fleet's keepalive sweep reads them. */
  lastSentAt = 0;
  lastReceivedAt = 0;

  constructor(o: LeanClientOptions, h: LeanClientHandlers) {
    this.#h = h;
    // eslint-disable-next-line @typescript-eslint/no-this-alias
    const client = this;
    const socket = tlsConnect({
      host: o.host,
      port: o.port,
      secureContext: o.secureContext,
      servername: isIP(o.host) ? undefined : o.host,
      // Node renders the whole peer chain into JS objects (getPeerCertificate(true), ~1 ms a handshake) for its
      // hostname check whenever OpenSSL's verification passed; with the board's own check that is wasted work.
      rejectUnauthorized: o.checkServer === undefined,
      ...(o.sharedReadBuffer
        ? {
            onread: {
              buffer: o.sharedReadBuffer,
              // A method over `client`, not an arrow: see #onPacket.
              callback(n: number, buf: Uint8Array): boolean {
                client.#onData(Buffer.from(buf.buffer, buf.byteOffset, n));
                return true;
              },
            },
          }
        : {}),
    });
    this.#socket = socket;
    socket.setNoDelay(true);
    if (o.connectTimeoutMs) {
      this.#timer = setTimeout(() => this.#fail(new Error("connect timed out")), o.connectTimeoutMs);
    }
    socket.once("secureConnect", () => {
      const refusal = o.checkServer?.refusal(socket);
      if (refusal !== undefined) {
        this.#fail(new BrokerRefusedError(refusal));
        return;
      }
      this.#secure = true;
      const connectPacket = mqttPacket.generate({
        cmd: "connect",
        protocolId: "MQTT",
        protocolVersion: 4,
        clientId: o.clientId,
        clean: o.clean,
        keepalive: o.keepaliveS,
        ...(o.will
          ? { will: { topic: o.will.topic, payload: o.will.payload, qos: o.will.qos, retain: o.will.retain } }
          : {}),
      });
      this.#write(connectPacket);
    });
    if (!o.sharedReadBuffer) socket.on("data", (chunk: Buffer) => this.#onData(chunk));
    socket.on("error", (err) => {
      this.#error ??= err;
    });
    socket.on("close", () => this.#finish());
  }

  get connected(): boolean {
    return this.#secure && !this.#closed;
  }

  publish(
    topic: Buffer,
    payload: Uint8Array,
    qos: 0 | 1,
    retain: boolean,
    packetId: number,
    dup: boolean,
  ): void {
    this.#write(encodePublish(topic, payload, qos, retain, packetId, dup));
  }

  subscribe(packetId: number, subscriptions: { topic: string; qos: 0 | 1 }[]): void {
    this.#write(mqttPacket.generate({ cmd: "subscribe", messageId: packetId, subscriptions }));
  }

  puback(packetId: number): void {
    this.#write(encodePuback(packetId));
  }

  ping(): void {
    this.#write(PINGREQ);
  }

  /** Orderly goodbye: the broker discards the will. */
  disconnect(): void {
    if (this.#closed) return;
    if (this.#secure) this.#socket.end(DISCONNECT);
    else this.#socket.destroy();
  }

  /** A network failure as the broker sees it: the socket vanishes without DISCONNECT, so the will fires. */
  destroy(reason?: Error): void {
    if (reason) this.#error ??= reason;
    this.#socket.destroy();
  }

  #onData(chunk: Buffer): void {
    this.lastReceivedAt = performance.now();
    if (!this.#splitter.push(chunk, this.#onPacket))
      this.#fail(new Error("malformed MQTT packet from broker"));
  }

  #write(buf: Buffer): void {
    if (this.#closed) return;
    this.lastSentAt = performance.now();
    if (!this.#corked) {
      this.#corked = true;
      this.#socket.cork();
      if (corkedThisTick.length === 0) process.nextTick(uncorkAll);
      corkedThisTick.push(this);
    }
    this.#socket.write(buf);
  }

  /** End of the tick: what this client wrote in it leaves as one TLS record and one write. */
  uncork(): void {
    this.#corked = false;
    this.#socket.uncork();
  }

  /**
   * The splitter's callback, bound once per client. Not a class-field arrow: under tsx (esbuild keepNames) an
   * arrow named by its field gets a redefined `name` and a ~300 B property dictionary (a bound method ~50 B),
   * per board.
   */
  readonly #onPacket: (type: number, flags: number, body: Buffer) => void = this.#handlePacket.bind(this);

  #handlePacket(type: number, _flags: number, body: Buffer): void {
    switch (type) {
      case PacketType.PUBACK:
        this.#h.onPuback(body.readUInt16BE(0));
        return;
      case PacketType.CONNACK:
        if (this.#timer) clearTimeout(this.#timer);
        this.#timer = undefined;
        this.#h.onConnack(body[1] ?? 255, ((body[0] ?? 0) & 1) === 1);
        return;
      case PacketType.PUBLISH: {
        const qos = (_flags >> 1) & 3;
        const topicLen = body.readUInt16BE(0);
        const topic = body.toString("utf8", 2, 2 + topicLen);
        let o = 2 + topicLen;
        let packetId = 0;
        if (qos > 0) {
          packetId = body.readUInt16BE(o);
          o += 2;
        }
        this.#h.onPublish?.(topic, body.subarray(o), qos, packetId);
        return;
      }
      case PacketType.SUBACK:
        this.#h.onSuback?.(body.readUInt16BE(0), [...body.subarray(2)]);
        return;
      default:
        return; // PINGRESP and anything else: lastReceivedAt is all that matters
    }
  }

  #fail(err: Error): void {
    this.#error ??= err;
    this.#socket.destroy();
  }

  #finish(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#timer) clearTimeout(this.#timer);
    this.#h.onClose(this.#error, !this.#secure);
  }
}
