// ECMA-419 network classes as $MODDABLE/typings declares them (only what is passed around here).
declare module "embedded:io/socket/tcp" {
  export default class TCP {
    constructor(options: Record<string, unknown>);
    close(): undefined;
    read(count: number | ArrayBufferLike): undefined | ArrayBufferLike;
    write(buffer: ArrayBufferLike): number;
  }
}

declare module "embedded:io/socket/udp" {
  export default class UDP {
    constructor(options: Record<string, unknown>);
    close(): undefined;
  }
}

declare module "embedded:network/dns/resolver/udp" {
  export default class Resolver {
    constructor(options: Record<string, unknown>);
    close(): void;
    resolve(options: Record<string, unknown>): void;
  }
}

declare module "embedded:network/mqtt/client" {
  type ByteBuffer = ArrayBufferLike | ArrayBufferView;
  interface onControlMessage {
    operation: number;
    id: number;
    payload?: ByteBuffer;
  }
  interface Options {
    host: string;
    port?: number;
    id?: string;
    clean?: boolean;
    will?: unknown;
    keepAlive?: number;
    // The SDK declares (opcode, message); the implementation calls onControl(message).
    onControl?: (opcode: number, message: onControlMessage) => void;
    onWritable?: (count: number) => void;
    onError?: (error: unknown) => void;
    dns: Record<string, unknown>;
    socket: Record<string, unknown>;
  }
  interface WriteOptions {
    operation?: number;
    id?: number;
    topic: string;
    QoS?: number;
    retain?: boolean;
    duplicate?: boolean;
    byteLength?: number;
  }
  export default class MQTTClient {
    constructor(options: Options);
    read(count: number): ArrayBuffer;
    write(data: ByteBuffer, options: WriteOptions): number;
    close(): void;
    static CONNACK: 2;
    static PUBLISH: 3;
    static PUBACK: 4;
  }
}

declare module "embedded:network/interface/wifi" {
  export interface WiFiConstructorOptions {
    onChanged?: (property: "connection" | "address") => void;
  }
  class WiFi {
    constructor(options: WiFiConstructorOptions);
    close(): void;
    connect(options: { SSID: string; password?: string }): void;
    disconnect(): void;
    readonly connection: number;
    readonly address: string | undefined;
    readonly SSID: string | undefined;
  }
  export default WiFi;
}
