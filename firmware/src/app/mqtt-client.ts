// The subset of the ECMA-419 MQTT client (`embedded:network/mqtt/client`, Moddable's
// examples/io/tcp/mqttclient) that the session uses, as the implementation behaves:
// write() throws when the packet does not fit the socket's writable space or the client is not
// connected; PUBACK/CONNACK arrive through onControl(message); on any failure the client calls
// onError once and closes itself. It keeps no outbox and never reconnects. SUBSCRIBE is a write() with
// operation SUBSCRIBE and `items`; an incoming PUBLISH is announced by onReadable(count, {topic, QoS, byteLength,
// more}) and its payload taken with read(count); the client itself answers a QoS 1 PUBLISH with PUBACK once the
// last fragment is announced.

export const MqttOperation = Object.freeze({
  CONNACK: 2,
  PUBLISH: 3,
  PUBACK: 4,
  SUBSCRIBE: 8,
  SUBACK: 9,
  PINGRESP: 13,
  DISCONNECT: 14,
} as const);

export interface MqttControlMessage {
  operation: number;
  /** Packet identifier (PUBACK, SUBACK …). */
  id?: number;
  returnCode?: number;
  /** SUBACK: the granted QoS per topic (0x80: refused). */
  payload?: ArrayLike<number>;
}

/** What onReadable says about the message it announces (the first fragment carries the topic). */
export interface MqttReadableInfo {
  topic?: string;
  QoS?: number;
  /** The whole payload's length (first fragment only). */
  byteLength?: number;
  /** More fragments of this message follow. */
  more: boolean;
}

/** SUBSCRIBE, written with write(undefined, options). */
export interface MqttSubscribeOptions {
  operation: typeof MqttOperation.SUBSCRIBE;
  id: number;
  items: { topic: string; QoS: 0 | 1 }[];
}

export interface MqttWill {
  topic: string;
  message: ArrayBuffer;
  QoS: 0 | 1;
  retain: boolean;
}

export interface MqttPublishOptions {
  topic: string;
  QoS: 0 | 1;
  /** Packet identifier 1..65535, required for QoS 1. */
  id?: number;
  retain?: boolean;
  /** The DUP flag: set when this packet id was sent before on an earlier connection. */
  duplicate?: boolean;
  operation?: number;
}

/** TLS material for mutual TLS; DER, as Moddable's ssl takes it. */
export interface MqttTlsOptions {
  caDer: ArrayBuffer;
  certDer: ArrayBuffer;
  /** PKCS#8 RSA private key. Secret. */
  keyDer: ArrayBuffer;
  /** pin-sha256 of the broker keys this board accepts (32 bytes each); see src/tls/broker-trust. */
  brokerPins: ArrayBuffer[];
}

export interface MqttConnectOptions {
  host: string;
  port: number;
  /** Client id: fixed per device so that the broker keeps the session across reconnects. */
  id: string;
  clean: boolean;
  /** Milliseconds; the client sends PINGREQ and fails the connection when PINGRESP stops coming. */
  keepalive: number;
  will: MqttWill;
  tls: MqttTlsOptions | null;
  onControl(message: MqttControlMessage): void;
  /** Bytes that can be written now (overhead already subtracted). */
  onWritable(count: number): void;
  /** `count` bytes of an incoming message can be read now; `info` says which message (see MqttReadableInfo). */
  onReadable(count: number, info?: MqttReadableInfo): void;
  /**
   * The connection failed or ended. `tlsFailure` says why when the TLS handshake refused the server (a
   * broker pin or certificate check) or failed: a normal failed connection, retried like any other.
   */
  onError(tlsFailure?: string): void;
}

export interface MqttClient {
  /** Returns the bytes still writable after this packet. */
  write(data: ArrayBuffer, options: MqttPublishOptions): number;
  write(data: undefined, options: MqttSubscribeOptions): number;
  /** Up to `count` bytes of the incoming message onReadable announced, as an ArrayBuffer. */
  read(count: number): unknown;
  close(): void;
}

export type MqttClientFactory = (options: MqttConnectOptions) => MqttClient;

/** Bytes a PUBLISH occupies on the wire; the ECMA-419 client rejects one larger than its writable space. */
/** Bytes a SUBSCRIBE occupies on the wire (topics' UTF-8 lengths given). */
export function subscribePacketBytes(topicBytes: readonly number[]): number {
  let remaining = 2;
  for (const n of topicBytes) remaining += 2 + n + 1;
  const lengthBytes = remaining < 128 ? 1 : remaining < 16384 ? 2 : 3;
  return 1 + lengthBytes + remaining;
}

export function publishPacketBytes(topicBytes: number, payloadBytes: number, qos: 0 | 1): number {
  const remaining = 2 + topicBytes + (qos ? 2 : 0) + payloadBytes;
  const lengthBytes = remaining < 128 ? 1 : remaining < 16384 ? 2 : remaining < 2097152 ? 3 : 4;
  return 1 + lengthBytes + remaining;
}
