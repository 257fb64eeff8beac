// Moddable's `Preference` behind the app's PreferenceStore. On ESP32 a domain is an NVS namespace and
// a key an NVS key; on the Linux simulator Preference keeps one JSON file (config.file.root +
// "modpreferences.json", blobs as {"buffer": "1,2,3"}).
import type { PreferenceStore, PreferenceValue } from "../app/services";

export interface ModdablePreferenceModule {
  get(domain: string, key: string): PreferenceValue | undefined;
  set(domain: string, key: string, value: PreferenceValue): void;
  delete(domain: string, key: string): void;
}

export default class ModdablePreferenceStore implements PreferenceStore {
  readonly #Preference: ModdablePreferenceModule;

  constructor(options: { Preference: ModdablePreferenceModule }) {
    this.#Preference = options.Preference;
  }

  get(domain: string, key: string): PreferenceValue | undefined {
    try {
      return this.#Preference.get(domain, key);
    } catch {
      // ESP32's Preference throws for a namespace that was never written: same as absent.
      return undefined;
    }
  }

  set(domain: string, key: string, value: PreferenceValue): void {
    this.#Preference.set(domain, key, value);
  }

  delete(domain: string, key: string): void {
    try {
      this.#Preference.delete(domain, key);
    } catch {
      // ESP32: nvs_erase_key of a key that is not there (ESP_ERR_NVS_NOT_FOUND) is the same as deleted.
    }
  }
}
