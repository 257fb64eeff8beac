// Host shim of Moddable's `Preference` with ESP32 NVS semantics: booleans come back as booleans (u8),
// integers must fit i32, strings at most 4000 bytes, ArrayBuffers (blobs) are copied in and out.
import type { PreferenceStore, PreferenceValue } from "../../../src/app/services";
import type { ProvEntry } from "../../../src/identity/nvs-layout";

export class MemoryPreference implements PreferenceStore {
  readonly #domains = new Map<string, Map<string, PreferenceValue>>();
  /** Every set(), for asserting what was written and when. */
  readonly writes: { domain: string; key: string; value: PreferenceValue }[] = [];
  /** Makes the next set() throw (a full NVS partition). */
  failWrites = false;

  get(domain: string, key: string): PreferenceValue | undefined {
    const v = this.#domains.get(domain)?.get(key);
    return v instanceof ArrayBuffer ? v.slice(0) : v;
  }

  set(domain: string, key: string, value: PreferenceValue): void {
    if (key.length > 15) throw new Error(`NVS key "${key}" longer than 15 characters`);
    if (this.failWrites) throw new Error("nvs_set failed: ESP_ERR_NVS_NOT_ENOUGH_SPACE");
    if (typeof value === "number" && (!Number.isInteger(value) || value < -0x80000000 || value > 0x7fffffff))
      throw new RangeError("Preference stores integers as i32");
    if (typeof value === "string" && value.length > 4000)
      throw new RangeError("NVS string longer than 4000 bytes");
    let d = this.#domains.get(domain);
    if (!d) this.#domains.set(domain, (d = new Map()));
    const stored = value instanceof ArrayBuffer ? value.slice(0) : value;
    d.set(key, stored);
    this.writes.push({ domain, key, value: stored });
  }

  delete(domain: string, key: string): void {
    this.#domains.get(domain)?.delete(key);
  }

  /** What the provisioning image holds, as Preference.get returns it on the board (u8 → boolean). */
  load(domain: string, entries: readonly ProvEntry[]): void {
    for (const e of entries) {
      const value: PreferenceValue =
        e.type === "u8"
          ? e.value !== 0
          : e.type === "blob"
            ? (e.value.slice().buffer as ArrayBuffer)
            : e.value;
      this.set(domain, e.key, value);
    }
    this.writes.length = 0;
  }
}
