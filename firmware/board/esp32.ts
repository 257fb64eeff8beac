// The ESP32 board: the four instruments on their buses (pins from the global `device` and the
// manifest's config.board), Wi-Fi from the provisioned SSID. Calibration lives in config.board so a
// site can rebuild with its own shunts and transmitter spans (`mcconfig ... ` or a manifest override).
import Timer from "timer";
import WiFi from "embedded:network/interface/wifi";
import Flash from "flash";
import type { FlashArea } from "../src/outbox/flash-area";
import ModdableFlashArea from "../src/platform/moddable-flash-area";
import InstrumentPanel from "../src/app/instrument-panel";
import type { Clock, Instruments, Log, Network, Timers } from "../src/app/services";
import ADS1115 from "../src/drivers/ads1115";
import type { Ads1115InputName } from "../src/drivers/ads1115";
import INA228 from "../src/drivers/ina228";
import MassFlowMeter from "../src/drivers/mass-flow-meter";
import MAX31865 from "../src/drivers/max31865";
import type { ReadFunction, WordOrder } from "../src/drivers/modbus/rtu";
import type { SMBusConstructor, SPIConstructor, SerialConstructor } from "../src/drivers/io";
import type { Ecma419WiFiConstructor } from "../src/platform/wifi-network";
import WifiNetwork from "../src/platform/wifi-network";

export interface BoardOptions {
  log: Log;
  timers: Timers;
  clock: Clock;
  config: Readonly<Record<string, unknown>>;
}

interface LoopSettings {
  input: Ads1115InputName;
  shuntOhms: number;
  rangeLow: number;
  rangeHigh: number;
}

/** Defaults for the reference wiring; every field can be overridden in the manifest's config.board. */
interface BoardSettings {
  rtdSelect: number;
  rtdReferenceOhms: number;
  rtdWires: 2 | 3 | 4;
  adsAddress: number;
  pressure: LoopSettings;
  purity: LoopSettings;
  inaAddress: number;
  inaShuntOhms: number;
  inaMaxCurrentA: number;
  inaDividerRatio: number;
  rs485Port: number;
  rs485Transmit: number;
  rs485Receive: number;
  rs485Baud: number;
  flowUnit: number;
  flowFunction: ReadFunction;
  flowAddress: number;
  flowWordOrder: WordOrder;
  flowScale: number;
}

const DEFAULTS: BoardSettings = {
  rtdSelect: 5,
  rtdReferenceOhms: 430,
  rtdWires: 4,
  adsAddress: 0x48,
  pressure: { input: "AIN0", shuntOhms: 100, rangeLow: 0, rangeHigh: 40 },
  purity: { input: "AIN1", shuntOhms: 100, rangeLow: 99, rangeHigh: 100 },
  inaAddress: 0x40,
  inaShuntOhms: 0.0002,
  inaMaxCurrentA: 200,
  inaDividerRatio: 40,
  rs485Port: 2,
  rs485Transmit: 17,
  rs485Receive: 16,
  rs485Baud: 9600,
  flowUnit: 1,
  flowFunction: 0x04,
  flowAddress: 0,
  flowWordOrder: "ABCD",
  flowScale: 1000,
};

function settings(raw: unknown): BoardSettings {
  const o = (typeof raw === "object" && raw !== null ? raw : {}) as Partial<BoardSettings>;
  return {
    ...DEFAULTS,
    ...o,
    pressure: { ...DEFAULTS.pressure, ...o.pressure },
    purity: { ...DEFAULTS.purity, ...o.purity },
  };
}

export default class Board {
  readonly name = "ESP32 (MAX31865, ADS1115, INA228, Modbus flow meter)";
  readonly instruments: Instruments;
  readonly network: Network;
  /** The resolver asks these for broker names. */
  readonly dnsServers: readonly string[];

  constructor(options: BoardOptions) {
    const s = settings(options.config.board);
    // The SDK declares the bus pins as required constructor options; the drivers take them optional
    // because they arrive spread from device.I2C/SPI.default. Same classes, checked at this one seam.
    const SPI = device.io.SPI as unknown as SPIConstructor;
    const SMBus = device.io.SMBus as unknown as SMBusConstructor;
    const Serial = device.io.Serial as unknown as SerialConstructor;
    const log = options.log;
    const onError = (message: string): void => log.warn(message);
    const rtd = new MAX31865({
      sensor: { ...device.SPI.default, select: s.rtdSelect, io: SPI },
      referenceOhms: s.rtdReferenceOhms,
      wires: s.rtdWires,
      delay: Timer.delay,
      onError,
    });
    const loops = new ADS1115({
      sensor: { ...device.I2C.default, address: s.adsAddress, io: SMBus },
      delay: Timer.delay,
      channels: [
        { name: "pressure_bar", ...s.pressure },
        { name: "purity_pct", ...s.purity },
      ],
      onError,
    });
    const power = new INA228({
      sensor: { ...device.I2C.default, address: s.inaAddress, io: SMBus },
      shuntOhms: s.inaShuntOhms,
      maxCurrentA: s.inaMaxCurrentA,
      dividerRatio: s.inaDividerRatio,
      onError,
    });
    const flow = new MassFlowMeter({
      sensor: {
        port: s.rs485Port,
        transmit: s.rs485Transmit,
        receive: s.rs485Receive,
        baud: s.rs485Baud,
        io: Serial,
      },
      timer: Timer,
      unit: s.flowUnit,
      points: {
        h2_flow_sccm: {
          function: s.flowFunction,
          address: s.flowAddress,
          wordOrder: s.flowWordOrder,
          scale: s.flowScale,
        },
      },
    });
    this.instruments = new InstrumentPanel({ rtd, loops, power, flow, log });
    this.network = new WifiNetwork({
      WiFi: WiFi as unknown as Ecma419WiFiConstructor,
      log,
      timers: options.timers,
    });
    const dns = options.config.dns;
    this.dnsServers = typeof dns === "string" && dns.length > 0 ? dns.split(",") : ["1.1.1.1"];
  }

  /**
   * The outbox ring's data partition (board/esp32-partitions.csv: "outbox"), through Moddable's flash module;
   * throws if the partition table has no partition of that label.
   */
  openFlash(label: string): FlashArea {
    return new ModdableFlashArea({ flash: new Flash(label) });
  }
}
