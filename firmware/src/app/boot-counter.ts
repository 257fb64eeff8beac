// The boot counter is the high half of every envelope nonce. It must move forward, and be stored,
// before the first envelope of this boot is sealed: a board that sealed with a counter it had not yet
// persisted and then reset would seal again under the same (boot, seq) and reuse a GCM nonce.
import { PROV_KEYS, PROV_NAMESPACE, nextBootCounter, readBootCounter } from "../identity/nvs-layout";
import type { PreferenceStore } from "./services";

export default class BootCounter {
  readonly #store: PreferenceStore;

  constructor(options: { store: PreferenceStore }) {
    this.#store = options.store;
  }

  /** The counter as stored (0 if never written). */
  current(): number {
    return readBootCounter((key) => this.#store.get(PROV_NAMESPACE, key));
  }

  /**
   * Advances and persists the counter, then reads it back: a store that silently failed to write
   * (full NVS, wrong type) must stop the board rather than let it seal with a reused nonce.
   */
  advance(): number {
    const next = nextBootCounter(this.current());
    this.#store.set(PROV_NAMESPACE, PROV_KEYS.boot.key, next);
    const stored = this.current();
    if (stored !== next) throw new Error(`boot counter did not persist (wrote ${next}, read ${stored})`);
    return next;
  }
}
