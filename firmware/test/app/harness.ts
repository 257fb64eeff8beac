// Builds the firmware application exactly as firmware/main.ts does, but on host shims: virtual timers
// and clock, an in-memory Preference with NVS semantics, and the ECMA-419 MQTT client shim + broker.
import type { KeyMaker } from "../../src/identity/key-maker";
import { parseAppConfig } from "../../src/app/app-config";
import type { AppConfig } from "../../src/app/app-config";
import InstrumentPanel from "../../src/app/instrument-panel";
import type { Instruments, Log, Network, TimeSync } from "../../src/app/services";
import TelemetryApp from "../../src/app/telemetry-app";
import { identityToEntries, PROV_NAMESPACE } from "../../src/identity/nvs-layout";
import type { DeviceIdentity } from "../../src/identity/nvs-layout";
import SimulatedInstruments from "../../src/sim/simulated-instruments";
import { nodeAead } from "../../../host/src/crypto/node-aead";
import type { FakeBroker } from "./shims/fake-broker";
import type { MemoryPreference } from "./shims/memory-preference";
import type { VirtualTimers } from "./shims/virtual-timers";
import type { FlashArea } from "../../src/outbox/flash-area";

export const DEVICE_ID = "elx-test-0001";
export const PAYLOAD_KEY = Uint8Array.from({ length: 32 }, (_, i) => (i * 7 + 3) & 0xff);

/** DER-shaped placeholders: the app hands them to TLS untouched, the shim broker never parses them. */
const der = (tag: number, n: number): Uint8Array =>
  Uint8Array.from({ length: n }, (_, i) => (i === 0 ? 0x30 : (i * tag) & 0xff));

export function testIdentity(overrides: Partial<DeviceIdentity> = {}): DeviceIdentity {
  return {
    deviceId: DEVICE_ID,
    broker: "mqtts://broker.test:8883",
    brokerHost: "broker.test",
    port: 8883,
    intervalMs: 1000,
    tls: {
      caDer: der(3, 40),
      certDer: der(5, 50),
      keyDer: der(11, 60),
      brokerPins: [new Uint8Array(32).fill(7)],
    },
    payload: { keyId: 2, key: PAYLOAD_KEY },
    wifi: { ssid: "plant-floor", psk: "correct horse battery" },
    ...overrides,
  };
}

export function provision(
  store: MemoryPreference,
  identity: DeviceIdentity = testIdentity(),
  boot?: number,
): void {
  store.load(PROV_NAMESPACE, identityToEntries(identity, boot));
}

export class CapturingLog implements Log {
  readonly lines: string[] = [];
  info(line: string): void {
    this.lines.push(`I ${line}`);
  }
  warn(line: string): void {
    this.lines.push(`W ${line}`);
  }
  error(line: string): void {
    this.lines.push(`E ${line}`);
  }
  text(): string {
    return this.lines.join("\n");
  }
}

export interface Device {
  app: TelemetryApp;
  log: CapturingLog;
  config: AppConfig;
}

export interface DeviceOptions {
  store: MemoryPreference;
  timers: VirtualTimers;
  broker: FakeBroker;
  config?: Record<string, unknown>;
  instruments?: Instruments;
  network?: Network;
  timeSync?: TimeSync;
  random?: () => number;
  /** The outbox ring's flash (it outlives the device when a test boots it again over the same one). */
  outboxFlash?: FlashArea;
  /** Answers key requests on down/trust (the board's mbedTLS module in the firmware). */
  keys?: KeyMaker;
}

const upNow: Network = { connect: (_wifi, done) => done(true) };
const clockSet: TimeSync = { sync: (done) => done(true) };

export function bootDevice(o: DeviceOptions): Device {
  const log = new CapturingLog();
  // PUBACK semantics unless a test asks for confirmations: the fake broker has no ingest to confirm anything.
  const { config, problems } = parseAppConfig({
    fw: "0.1.0-test",
    sntp: "",
    confirmations: "off",
    ...o.config,
  });
  const sim = new SimulatedInstruments({ clock: o.timers });
  const app = new TelemetryApp({
    config,
    configProblems: problems,
    store: o.store,
    timers: o.timers,
    clock: o.timers,
    log,
    random: o.random ?? (() => 0.5),
    instruments:
      o.instruments ??
      new InstrumentPanel({ rtd: sim.rtd, loops: sim.loops, power: sim.power, flow: sim.flow, log }),
    network: o.network ?? upNow,
    timeSync: o.timeSync ?? clockSet,
    mqtt: o.broker.factory,
    aead: nodeAead,
    ...(o.outboxFlash ? { outboxFlash: o.outboxFlash } : {}),
    ...(o.keys ? { keys: o.keys } : {}),
  });
  app.start();
  return { app, log, config };
}
