// Wi-Fi station from the provisioned SSID/passphrase, through the ECMA-419 Wi-Fi interface
// (embedded:network/interface/wifi, handed in by the ESP32 board module). The passphrase is never logged.
import type { WifiSettings } from "../identity/nvs-layout";
import type { Log, Network, TimerHandle, Timers } from "../app/services";

export interface Ecma419WiFi {
  readonly connection: number;
  readonly address: string | undefined;
  connect(options: { SSID: string; password?: string }): void;
  close(): void;
}
export type Ecma419WiFiConstructor = new (options: {
  onChanged?: (this: Ecma419WiFi) => void;
}) => Ecma419WiFi;

/** The interface's `connection` codes: < 500 not (yet) usable, >= 500 has an address. */
const HAS_ADDRESS = 500;
const DISCONNECTED_MAX = 200;
/** Rejoin delay after the link drops once it had been up. */
const REJOIN_MS = 5_000;

export default class WifiNetwork implements Network {
  readonly #WiFi: Ecma419WiFiConstructor;
  readonly #log: Log;
  readonly #timers: Timers;
  #wifi: Ecma419WiFi | undefined;
  #rejoin: TimerHandle | undefined;

  constructor(options: { WiFi: Ecma419WiFiConstructor; log: Log; timers: Timers }) {
    this.#WiFi = options.WiFi;
    this.#log = options.log;
    this.#timers = options.timers;
  }

  connect(settings: WifiSettings | null, done: (ok: boolean, detail?: string) => void): void {
    if (!settings) {
      done(false, "no Wi-Fi SSID provisioned (wifi_ssid)");
      return;
    }
    this.#wifi?.close();
    let reported = false;
    const log = this.#log;
    const ssid = settings.ssid;
    const join = settings.psk === undefined ? { SSID: ssid } : { SSID: ssid, password: settings.psk };
    const scheduleRejoin = (wifi: Ecma419WiFi): void => {
      this.#timers.clear(this.#rejoin);
      this.#rejoin = this.#timers.set(() => {
        this.#rejoin = undefined;
        if (wifi === this.#wifi && wifi.connection <= DISCONNECTED_MAX) wifi.connect(join);
      }, REJOIN_MS);
    };
    this.#wifi = new this.#WiFi({
      onChanged(this: Ecma419WiFi) {
        const connection = this.connection;
        if (connection >= HAS_ADDRESS) {
          log.info(`wifi: "${ssid}" up, address ${this.address ?? "?"}`);
          if (!reported) {
            reported = true;
            done(true);
          }
        } else if (connection <= DISCONNECTED_MAX) {
          // Before the first address this is a failed attempt (the app retries with backoff); later the
          // link is rejoined here while the MQTT session notices the dead connection by itself.
          log.warn(`wifi: "${ssid}" disconnected`);
          if (!reported) {
            reported = true;
            done(false, `could not join "${ssid}"`);
          } else scheduleRejoin(this);
        }
      },
    });
    this.#wifi.connect(join);
  }
}
