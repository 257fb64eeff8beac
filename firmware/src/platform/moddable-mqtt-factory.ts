// Builds ECMA-419 MQTT clients (Moddable's embedded:network/mqtt/client) over TCP, or over Moddable's
// TLS socket for mutual TLS: TLS 1.2, the broker CA and our certificate and PKCS#8 RSA key, all DER, and
// the broker's key pins, which reach firmware/tls/certificate-manager through the TLS session's options.
// The I/O classes are handed in by main.ts so this module imports nothing from the SDK.
import type {
  MqttClient,
  MqttConnectOptions,
  MqttControlMessage,
  MqttReadableInfo,
} from "../app/mqtt-client";
import { guardedTcp } from "./guarded-tcp";

export interface Ecma419MqttClient {
  write(data: ArrayBuffer | undefined, options: object): number;
  read(count: number): unknown;
  close(): void;
}

export type Ecma419MqttClientConstructor = new (options: object) => Ecma419MqttClient;
/** A socket or resolver class as ECMA-419 I/O option objects carry it (`{io: Class, ...}`). */
export type Ecma419IoClass = abstract new (...args: never[]) => unknown;

export interface ModdableMqttFactoryOptions {
  MQTTClient: Ecma419MqttClientConstructor;
  TCP: Ecma419IoClass;
  TLSSocket: Ecma419IoClass;
  UDP: Ecma419IoClass;
  Resolver: Ecma419IoClass;
  /** DNS servers for broker names; an IP address or "localhost" needs none. */
  dnsServers: readonly string[];
}

/** TLS 1.2: the highest Moddable's ssl speaks. */
const TLS_1_2 = 0x303;

export default class ModdableMqttFactory {
  readonly #o: ModdableMqttFactoryOptions;

  constructor(options: ModdableMqttFactoryOptions) {
    this.#o = options;
  }

  create(c: MqttConnectOptions): MqttClient {
    const o = this.#o;
    // The first reason the TLS handshake threw, if it did: reported with the client's onError.
    let tlsFailure: string | undefined;
    const socket = c.tls
      ? {
          io: o.TLSSocket,
          TCP: { io: guardedTcp(o.TCP, (reason) => (tlsFailure ??= reason)) },
          secure: {
            protocolVersion: TLS_1_2,
            certificate: c.tls.caDer,
            clientCertificates: [c.tls.certDer],
            clientKey: c.tls.keyDer,
            brokerPins: c.tls.brokerPins,
          },
        }
      : { io: o.TCP };
    return new o.MQTTClient({
      host: c.host,
      port: c.port,
      id: c.id,
      clean: c.clean,
      keepalive: c.keepalive,
      will: { topic: c.will.topic, message: c.will.message, QoS: c.will.QoS, retain: c.will.retain },
      dns: { io: o.Resolver, servers: o.dnsServers.slice(), socket: { io: o.UDP } },
      socket,
      onControl: (message: MqttControlMessage) => c.onControl(message),
      onWritable: (count: number) => c.onWritable(count),
      onReadable: (count: number, info?: MqttReadableInfo) => c.onReadable(count, info),
      onError: () => c.onError(tlsFailure),
    });
  }
}
