// Where the board keeps its identity: Moddable's `Preference` (on ESP32 the NVS partition). Declared here,
// below the app, so the identity modules (the NVS layout, the trust slots) depend on nothing above them;
// firmware/src/app/services re-exports it with the other platform services.

/** What Moddable's `Preference.set` can store (boolean→u8, integer→i32, string, ArrayBuffer→blob on ESP32). */
export type PreferenceValue = string | number | boolean | ArrayBuffer;

/** Moddable's `Preference`: on ESP32 domain = NVS namespace, key = NVS key. */
export interface PreferenceStore {
  get(domain: string, key: string): PreferenceValue | undefined;
  set(domain: string, key: string, value: PreferenceValue): void;
  /** Removes the key (absent afterwards; no error when it was). Moddable's `Preference.delete`. */
  delete(domain: string, key: string): void;
}
