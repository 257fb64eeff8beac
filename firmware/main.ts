// Firmware entry: the only module that imports the SDK's services, and hands them to the
// platform-neutral application (firmware/src/app). `board/platform` is the board's instruments and
// network: firmware/board/esp32.ts on the ESP32, firmware/board/lin.ts on the Linux simulator.
import config from "mc/config";
import Timer from "timer";
import Preference from "preference";
import { BlockCipher } from "crypt";
import GCM from "gcm";
import MQTTClient from "embedded:network/mqtt/client";
import TCP from "embedded:io/socket/tcp";
import UDP from "embedded:io/socket/udp";
import TLSSocket from "embedded:io/socket/tcp/tls";
import Resolver from "embedded:network/dns/resolver/udp";
import SNTP from "sntp";
import Time from "time";
import Board from "board/platform";
import { parseAppConfig } from "./src/app/app-config";
import type { Clock, Log } from "./src/app/services";
import type { FlashArea } from "./src/outbox/flash-area";
import TelemetryApp from "./src/app/telemetry-app";
import ModdableAead from "./src/crypto/moddable-aead";
import ModdableMqttFactory from "./src/platform/moddable-mqtt-factory";
import type { Ecma419MqttClientConstructor } from "./src/platform/moddable-mqtt-factory";
import ModdablePreferenceStore from "./src/platform/moddable-preference-store";
import KeyRequest from "./native/key-request/key-request";
import ModdableTimers from "./src/platform/moddable-timers";
import SntpTimeSync from "./src/platform/sntp-time-sync";
import type { SntpConstructor } from "./src/platform/sntp-time-sync";

const log: Log = {
  info: (line) => trace(`${line}\n`),
  warn: (line) => trace(`warning: ${line}\n`),
  error: (line) => trace(`error: ${line}\n`),
};
const clock: Clock = { now: () => Date.now() };
const timers = new ModdableTimers<Timer>({ Timer });
const { config: appConfig, problems } = parseAppConfig(config);
const board = new Board({ log, timers, clock, config });
log.info(`electrolyser telemetry ${appConfig.fw} on ${board.name}`);

const factory = new ModdableMqttFactory({
  // The SDK's typings declare onControl(opcode, message); the client calls onControl(message).
  MQTTClient: MQTTClient as unknown as Ecma419MqttClientConstructor,
  TCP,
  TLSSocket,
  UDP,
  Resolver,
  dnsServers: board.dnsServers,
});

// The outbox ring's partition, when the build names one (config outboxPartition; the esp32 build does).
let outboxFlash: FlashArea | undefined;
if (appConfig.outboxPartition) {
  try {
    outboxFlash = board.openFlash(appConfig.outboxPartition);
  } catch (e) {
    log.error(
      `outbox: no flash partition "${appConfig.outboxPartition}" (${e instanceof Error ? e.message : String(e)}); RAM only`,
    );
  }
}

const app = new TelemetryApp({
  config: appConfig,
  configProblems: problems,
  store: new ModdablePreferenceStore({ Preference }),
  timers,
  clock,
  log,
  random: Math.random,
  instruments: board.instruments,
  network: board.network,
  timeSync: new SntpTimeSync({ host: appConfig.sntp, SNTP: SNTP as unknown as SntpConstructor, Time, clock }),
  mqtt: (options) => factory.create(options),
  aead: new ModdableAead({ BlockCipher, GCM }),
  // Key requests over the downlink: the key is made here by mbedTLS and never leaves the board.
  keys: { generate: (request) => new KeyRequest(request).generate() },
  ...(outboxFlash ? { outboxFlash } : {}),
});
app.start();
