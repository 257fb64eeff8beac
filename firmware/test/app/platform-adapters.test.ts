// The Moddable adapters with stand-ins for the SDK classes they are handed: what reaches the SDK.
import { describe, expect, it } from "vitest";
import type { MqttConnectOptions } from "../../src/app/mqtt-client";
import ModdableMqttFactory from "../../src/platform/moddable-mqtt-factory";
import ModdablePreferenceStore from "../../src/platform/moddable-preference-store";
import SntpTimeSync, { PLAUSIBLE_CLOCK_MS } from "../../src/platform/sntp-time-sync";
import type { SntpConstructor } from "../../src/platform/sntp-time-sync";
import WifiNetwork from "../../src/platform/wifi-network";
import type { Ecma419WiFi, Ecma419WiFiConstructor } from "../../src/platform/wifi-network";
import { CapturingLog } from "./harness";
import { VirtualTimers } from "./shims/virtual-timers";

class TCP {}
class TLSSocket {}
class UDP {}
class Resolver {}

function connectOptions(tls: MqttConnectOptions["tls"]): MqttConnectOptions {
  return {
    host: "broker.lan",
    port: 8883,
    id: "elx-1",
    clean: false,
    keepalive: 60_000,
    will: { topic: "electrolyser/elx-1/status", message: new ArrayBuffer(3), QoS: 1, retain: true },
    tls,
    onControl: () => {},
    onWritable: () => {},
    onReadable: () => {},
    onError: () => {},
  };
}

describe("ModdableMqttFactory", () => {
  const captured: Record<string, unknown>[] = [];
  class MQTTClient {
    constructor(options: object) {
      captured.push(options as Record<string, unknown>);
    }
    write(): number {
      return 0;
    }
    read(): undefined {
      return undefined;
    }
    close(): void {}
  }
  const factory = new ModdableMqttFactory({
    MQTTClient,
    TCP,
    TLSSocket,
    UDP,
    Resolver,
    dnsServers: ["192.0.2.53"],
  });

  it("asks for TLS 1.2 with the CA, the client certificate, its PKCS#8 key and the broker pins over the TLS socket", () => {
    const pins = [new ArrayBuffer(32), new ArrayBuffer(32)];
    const tls = {
      caDer: new ArrayBuffer(10),
      certDer: new ArrayBuffer(20),
      keyDer: new ArrayBuffer(30),
      brokerPins: pins,
    };
    factory.create(connectOptions(tls));
    const o = captured.at(-1)!;
    expect(o).toMatchObject({ host: "broker.lan", port: 8883, id: "elx-1", clean: false, keepalive: 60_000 });
    expect(o.will).toMatchObject({ topic: "electrolyser/elx-1/status", QoS: 1, retain: true });
    const socket = o.socket as Record<string, unknown>;
    expect(socket.io).toBe(TLSSocket);
    // The TLS socket gets a guarded TCP class, not the SDK's own (see the next test).
    expect((socket.TCP as { io: unknown }).io).not.toBe(TCP);
    expect(socket.secure).toEqual({
      protocolVersion: 0x303,
      certificate: tls.caDer,
      clientCertificates: [tls.certDer],
      clientKey: tls.keyDer,
      brokerPins: pins,
    });
    expect(o.dns).toEqual({ io: Resolver, servers: ["192.0.2.53"], socket: { io: UDP } });
  });

  it("uses plain TCP when the board is provisioned without TLS", () => {
    factory.create(connectOptions(null));
    expect(captured.at(-1)!.socket).toEqual({ io: TCP });
  });

  it("relays the client's callbacks (onControl gets the message itself)", () => {
    const seen: unknown[] = [];
    factory.create({
      ...connectOptions(null),
      onControl: (m) => seen.push(m),
      onError: () => seen.push("error"),
    });
    const o = captured.at(-1)! as { onControl(m: object): void; onError(): void };
    o.onControl({ operation: 4, id: 7 });
    o.onError();
    expect(seen).toEqual([{ operation: 4, id: 7 }, "error"]);
  });
});

describe("ModdableMqttFactory over a TLS socket whose handshake throws", () => {
  // Stand-ins shaped like the SDK's: the TLS socket runs its handshake inside the TCP socket's callbacks
  // and lets its errors escape (examples/io/tcp/tlssocket), the MQTT client reports a socket error through
  // its own onError with no argument (examples/io/tcp/mqttclient).
  let tcpOptions: { onReadable(n: number): void; onWritable(n: number): void; onError(): void } | undefined;
  let tcpClosed = 0;
  class RecordingTCP {
    constructor(options: typeof tcpOptions) {
      tcpOptions = options;
    }
    read(): undefined {
      return undefined;
    }
    write(): number {
      return 0;
    }
    close(): void {
      tcpClosed++;
    }
  }
  class ThrowingTLSSocket {
    readonly #tcp: RecordingTCP;
    constructor(options: { TCP: { io: new (o: object) => RecordingTCP }; onError(): void }) {
      this.#tcp = new options.TCP.io({
        onReadable: () => {
          throw new Error("TLS: certificate: auth err");
        },
        onWritable: () => {},
        onError: () => options.onError(),
      });
    }
    close(): void {
      this.#tcp.close();
    }
  }
  class SdkLikeMqttClient {
    readonly #socket: ThrowingTLSSocket;
    constructor(options: {
      socket: Record<string, unknown> & { io: typeof ThrowingTLSSocket };
      onError(): void;
    }) {
      this.#socket = new options.socket.io({
        ...(options.socket as unknown as { TCP: { io: new (o: object) => RecordingTCP } }),
        onError: () => {
          options.onError();
          this.#socket.close();
        },
      });
    }
    write(): number {
      return 0;
    }
    read(): undefined {
      return undefined;
    }
    close(): void {}
  }

  it("turns the escaping TLS error into one onError with its reason, and closes the socket", () => {
    const factory = new ModdableMqttFactory({
      MQTTClient: SdkLikeMqttClient as unknown as ConstructorParameters<
        typeof ModdableMqttFactory
      >[0]["MQTTClient"],
      TCP: RecordingTCP,
      TLSSocket: ThrowingTLSSocket,
      UDP,
      Resolver,
      dnsServers: [],
    });
    const errors: (string | undefined)[] = [];
    const tls = {
      caDer: new ArrayBuffer(1),
      certDer: new ArrayBuffer(1),
      keyDer: new ArrayBuffer(1),
      brokerPins: [new ArrayBuffer(32)],
    };
    factory.create({ ...connectOptions(tls), onError: (reason) => errors.push(reason) });
    expect(() => tcpOptions!.onReadable(200)).not.toThrow();
    expect(errors).toEqual(["TLS: certificate: auth err"]);
    expect(tcpClosed).toBe(1);
    // Whatever the dead socket reports afterwards is not a second failure.
    tcpOptions!.onReadable(10);
    tcpOptions!.onError();
    expect(errors).toHaveLength(1);
  });
});

describe("ModdablePreferenceStore", () => {
  it("reads a namespace the ESP32 never wrote as absent instead of throwing", () => {
    const store = new ModdablePreferenceStore({
      Preference: {
        get: () => {
          throw new Error("ESP_ERR_NVS_NOT_FOUND");
        },
        set: () => {},
        delete: () => {},
      },
    });
    expect(store.get("prov", "device_id")).toBeUndefined();
  });
});

describe("SntpTimeSync", () => {
  function fakeSntp(answer: "time" | "error", log: string[]): SntpConstructor {
    class SNTP {
      static readonly time = 1;
      static readonly error = -1;
      constructor(options: { host: string }, cb: (message: number, value?: number) => void) {
        log.push(options.host);
        if (answer === "time") cb(SNTP.time, 1_800_000_000);
        else {
          cb(2); // retry: not an answer yet
          cb(SNTP.error);
        }
      }
    }
    return SNTP;
  }

  it("sets the clock from SNTP before reporting success", () => {
    const hosts: string[] = [];
    const set: number[] = [];
    const sync = new SntpTimeSync({
      host: "pool.ntp.org",
      SNTP: fakeSntp("time", hosts),
      Time: { set: (s) => set.push(s) },
      clock: { now: () => 0 },
    });
    const done: unknown[] = [];
    sync.sync((ok, detail) => done.push([ok, detail]));
    expect(hosts).toEqual(["pool.ntp.org"]);
    expect(set).toEqual([1_800_000_000]);
    expect(done).toEqual([[true, undefined]]);
  });

  it("reports an unanswered SNTP server once", () => {
    const sync = new SntpTimeSync({
      host: "ntp.lan",
      SNTP: fakeSntp("error", []),
      Time: { set: () => {} },
      clock: { now: () => 0 },
    });
    const done: unknown[] = [];
    sync.sync((ok, detail) => done.push([ok, detail]));
    expect(done).toEqual([[false, "SNTP ntp.lan did not answer"]]);
  });

  it("without a server, trusts only a clock that is already plausibly set", () => {
    const results: boolean[] = [];
    new SntpTimeSync({ host: "", SNTP: null, Time: null, clock: { now: () => PLAUSIBLE_CLOCK_MS + 1 } }).sync(
      (ok) => results.push(ok),
    );
    new SntpTimeSync({ host: "", SNTP: null, Time: null, clock: { now: () => 1000 } }).sync((ok) =>
      results.push(ok),
    );
    expect(results).toEqual([true, false]);
  });
});

describe("WifiNetwork", () => {
  function fakeWifi(
    script: number[],
    joins: unknown[],
  ): { WiFi: Ecma419WiFiConstructor; instances: Ecma419WiFi[] } {
    const instances: Ecma419WiFi[] = [];
    class WiFi implements Ecma419WiFi {
      connection = 0;
      address: string | undefined;
      readonly #onChanged: ((this: Ecma419WiFi) => void) | undefined;
      constructor(o: { onChanged?: (this: Ecma419WiFi) => void }) {
        this.#onChanged = o.onChanged;
        instances.push(this);
      }
      connect(options: { SSID: string; password?: string }): void {
        joins.push(options);
        const next = script.shift();
        if (next === undefined) return;
        this.connection = next;
        this.address = next >= 500 ? "10.0.0.7" : undefined;
        this.#onChanged?.call(this);
      }
      change(connection: number): void {
        this.connection = connection;
        this.#onChanged?.call(this);
      }
      close(): void {}
    }
    return { WiFi, instances };
  }

  it("joins the provisioned network, never logs the passphrase, and rejoins after a drop", async () => {
    const joins: unknown[] = [];
    const { WiFi, instances } = fakeWifi([500, 500], joins);
    const timers = new VirtualTimers();
    const log = new CapturingLog();
    const net = new WifiNetwork({ WiFi, log, timers });
    const done: boolean[] = [];
    net.connect({ ssid: "plant", psk: "s3cret-passphrase" }, (ok) => done.push(ok));
    expect(done).toEqual([true]);
    expect(joins).toEqual([{ SSID: "plant", password: "s3cret-passphrase" }]);
    (instances[0] as unknown as { change(c: number): void }).change(100);
    await timers.advance(6_000);
    expect(joins).toHaveLength(2);
    expect(done).toEqual([true]);
    expect(log.text()).not.toContain("s3cret");
  });

  it("fails without an SSID and when the first join fails", () => {
    const joins: unknown[] = [];
    const { WiFi } = fakeWifi([100], joins);
    const net = new WifiNetwork({ WiFi, log: new CapturingLog(), timers: new VirtualTimers() });
    const results: unknown[] = [];
    net.connect(null, (ok, detail) => results.push([ok, detail]));
    net.connect({ ssid: "plant" }, (ok, detail) => results.push([ok, detail]));
    expect(results).toEqual([
      [false, "no Wi-Fi SSID provisioned (wifi_ssid)"],
      [false, 'could not join "plant"'],
    ]);
    expect(joins).toEqual([{ SSID: "plant" }]);
  });
});
