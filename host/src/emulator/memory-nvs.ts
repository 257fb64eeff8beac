/**
 * An emulated board's NVS: the firmware's PreferenceStore in memory, with Moddable's copy-in, copy-out of
 * blobs (a caller never holds the stored bytes). It lives as long as the board's run; what the firmware keeps
 * here across a reboot (the trust slots) an emulated board only needs within one run.
 */
import type { PreferenceStore, PreferenceValue } from "../../../firmware/src/app/services";

export class MemoryNvs implements PreferenceStore {
  readonly #domains = new Map<string, Map<string, PreferenceValue>>();

  get(domain: string, key: string): PreferenceValue | undefined {
    const v = this.#domains.get(domain)?.get(key);
    return v instanceof ArrayBuffer ? v.slice(0) : v;
  }

  set(domain: string, key: string, value: PreferenceValue): void {
    let d = this.#domains.get(domain);
    if (!d) this.#domains.set(domain, (d = new Map()));
    d.set(key, value instanceof ArrayBuffer ? value.slice(0) : value);
  }

  delete(domain: string, key: string): void {
    this.#domains.get(domain)?.delete(key);
  }
}
