/**
 * Two identity slots in NVS, so a certificate rotation over the downlink can never strand a board: the new
 * certificate, key, broker pins and payload key go into the slot not in use and are tried; the slot in use is changed only
 * once the new one has connected (CONNACK accepted), and after `maxTries` failed connections, or a rotation
 * that does not hold up, the board falls back to the old slot, which was never touched. A reset at any point
 * leaves either the old slot active or the new one being tried (and tried again at the next boot).
 * The payload key that seals readings is the slot in use's (`payloadKey(active())`), never the tried one's:
 * a board switches keys exactly when it commits the slot, and one that falls back never sealed under the new key.
 * Pure over the PreferenceStore: runs on the board and in the emulator.
 */
import type { PreferenceStore } from "./preference-store";
import { splitPins, PIN_BYTES } from "../tls/broker-trust";
import type { PayloadKeyIdentity, TlsIdentity } from "./nvs-layout";
import { PAYLOAD_KEY_BYTES, PROV_KEYS, PROV_NAMESPACE, TRUST_SLOT_KEYS } from "./nvs-layout";
import type { TrustRotation } from "./trust-message";

export type Slot = 0 | 1;

export type StageResult =
  | { ok: true; slot: Slot }
  | { ok: false; reason: "stale_rotation" | "rotation_in_progress" | "write_failed" };
// A rotation is staged only into the slot not in use, so the slot in use is never written while it is.

export class TrustSlots {
  readonly #store: PreferenceStore;
  readonly #maxTries: number;

  constructor(o: { store: PreferenceStore; maxTries?: number }) {
    this.#store = o.store;
    this.#maxTries = o.maxTries ?? 3;
  }

  #i32(key: string, fallback: number): number {
    const v = this.#store.get(PROV_NAMESPACE, key);
    return typeof v === "number" && Number.isInteger(v) ? v : fallback;
  }

  #blob(key: string): Uint8Array | undefined {
    const v = this.#store.get(PROV_NAMESPACE, key);
    return v instanceof ArrayBuffer ? new Uint8Array(v) : undefined;
  }

  active(): Slot {
    return this.#i32(TRUST_SLOT_KEYS.active.key, 0) === 1 ? 1 : 0;
  }

  trying(): Slot | null {
    const t = this.#i32(TRUST_SLOT_KEYS.trying.key, -1);
    return t === 0 || t === 1 ? t : null;
  }

  lastRotation(): number {
    return this.#i32(TRUST_SLOT_KEYS.rotation.key, 0);
  }

  /** The credentials of a slot over the provisioned identity (the CA stays: rotations keep the root). */
  #slotTls(base: TlsIdentity, slot: Slot): TlsIdentity | null {
    const keys = slotKeys(slot);
    const certDer = this.#blob(keys.cert);
    const keyDer = this.#blob(keys.key);
    const pinBlob = this.#blob(keys.pins);
    const brokerPins = pinBlob ? splitPins(pinBlob) : null;
    if (!certDer || !keyDer || !brokerPins) return null;
    return { caDer: base.caDer, certDer, keyDer, brokerPins };
  }

  /**
   * A slot's payload key; `base` (the provisioned one) when the slot holds none (slot 0 as provisioned is
   * read at boot into `base`; an emulated board's NVS starts empty).
   */
  payloadKey(slot: Slot, base: PayloadKeyIdentity): PayloadKeyIdentity {
    const keys = slotKeys(slot);
    const key = this.#blob(keys.payloadKey);
    const keyId = this.#i32(keys.keyId, -1);
    if (!key || key.length !== PAYLOAD_KEY_BYTES || keyId < 0 || keyId > 255) return base;
    return { keyId, key };
  }

  /** What to connect with now: the slot being tried if any (and readable), else the active one. */
  current(base: TlsIdentity): { slot: Slot; tls: TlsIdentity; trying: boolean } {
    const t = this.trying();
    if (t !== null) {
      const tls = this.#slotTls(base, t);
      if (tls) return { slot: t, tls, trying: true };
      this.#clearTry(); // a half-written slot (reset mid-write): back to the one in use
    }
    const a = this.active();
    const tls = this.#slotTls(base, a) ?? base;
    return { slot: a, tls, trying: false };
  }

  /**
   * Writes a rotation into the slot not in use and marks it to be tried. The rotation number is recorded
   * first, so a replayed (older or equal) rotation is refused even if this one then fails. `inUse` is the
   * payload key sealing now: a rotation without a new payload key carries it over, so each slot always holds
   * a whole identity.
   */
  stage(r: TrustRotation, inUse: PayloadKeyIdentity): StageResult {
    if (r.rotation <= this.lastRotation()) return { ok: false, reason: "stale_rotation" };
    if (this.trying() !== null) return { ok: false, reason: "rotation_in_progress" };
    const slot: Slot = this.active() === 0 ? 1 : 0;
    const keys = slotKeys(slot);
    const pins = new Uint8Array(r.brokerPins.length * PIN_BYTES);
    r.brokerPins.forEach((p, i) => pins.set(p, i * PIN_BYTES));
    try {
      this.#store.set(PROV_NAMESPACE, TRUST_SLOT_KEYS.rotation.key, r.rotation);
      this.#store.set(PROV_NAMESPACE, keys.cert, copy(r.certDer));
      this.#store.set(PROV_NAMESPACE, keys.key, copy(r.keyDer));
      this.#store.set(PROV_NAMESPACE, keys.pins, copy(pins));
      const payload = r.payloadKey ?? inUse;
      this.#store.set(PROV_NAMESPACE, keys.payloadKey, copy(payload.key));
      this.#store.set(PROV_NAMESPACE, keys.keyId, payload.keyId);
      this.#store.set(PROV_NAMESPACE, TRUST_SLOT_KEYS.fails.key, 0);
      // Last: until this is written a reset leaves the board on the slot in use.
      this.#store.set(PROV_NAMESPACE, TRUST_SLOT_KEYS.trying.key, slot);
    } catch {
      return { ok: false, reason: "write_failed" };
    }
    return { ok: true, slot };
  }

  /** A CONNACK accepted with `current()`: a slot being tried becomes the one in use. */
  connected(): { committed: Slot | null } {
    const t = this.trying();
    if (t === null) return { committed: null };
    this.#store.set(PROV_NAMESPACE, TRUST_SLOT_KEYS.active.key, t);
    this.#clearTry();
    return { committed: t };
  }

  /** A failed connection (TLS refused, CONNACK refused) with `current()`. */
  failed(): { fellBack: boolean } {
    if (this.trying() === null) return { fellBack: false };
    const fails = this.#i32(TRUST_SLOT_KEYS.fails.key, 0) + 1;
    if (fails < this.#maxTries) {
      this.#store.set(PROV_NAMESPACE, TRUST_SLOT_KEYS.fails.key, fails);
      return { fellBack: false };
    }
    this.#clearTry();
    return { fellBack: true };
  }

  /**
   * A key request answered: the key made for `rotation` and the sealed answer, the rotation number written
   * last, so only a complete pair is ever named as that rotation's. Throws when NVS refuses a write.
   */
  recordRequest(rotation: number, keyDer: ArrayBuffer, answer: Uint8Array): void {
    this.#store.set(PROV_NAMESPACE, TRUST_SLOT_KEYS.requestRotation.key, 0);
    this.#store.set(PROV_NAMESPACE, TRUST_SLOT_KEYS.requestKey.key, keyDer);
    this.#store.set(PROV_NAMESPACE, TRUST_SLOT_KEYS.requestCsr.key, copy(answer));
    this.#store.set(PROV_NAMESPACE, TRUST_SLOT_KEYS.requestRotation.key, rotation);
  }

  /** The key made and the answer sealed for `rotation`, or undefined if the board made none for it. */
  request(rotation: number): { keyDer: Uint8Array; answer: Uint8Array } | undefined {
    if (this.#i32(TRUST_SLOT_KEYS.requestRotation.key, 0) !== rotation) return undefined;
    const keyDer = this.#blob(TRUST_SLOT_KEYS.requestKey.key);
    const answer = this.#blob(TRUST_SLOT_KEYS.requestCsr.key);
    return keyDer && answer ? { keyDer, answer } : undefined;
  }

  /** Once staged the key lives in the slot: no second copy stays in NVS. */
  forgetRequest(): void {
    try {
      this.#store.set(PROV_NAMESPACE, TRUST_SLOT_KEYS.requestRotation.key, 0);
      this.#store.delete(PROV_NAMESPACE, TRUST_SLOT_KEYS.requestKey.key);
      this.#store.delete(PROV_NAMESPACE, TRUST_SLOT_KEYS.requestCsr.key);
    } catch {
      // The slot is staged either way; a leftover copy is overwritten by the next request.
    }
  }

  #clearTry(): void {
    this.#store.set(PROV_NAMESPACE, TRUST_SLOT_KEYS.trying.key, -1);
    this.#store.set(PROV_NAMESPACE, TRUST_SLOT_KEYS.fails.key, 0);
  }
}

/** Slot 0 is the provisioned identity's own keys; slot 1 the `_b` keys. */
function slotKeys(slot: Slot): {
  cert: string;
  key: string;
  pins: string;
  payloadKey: string;
  keyId: string;
} {
  const k = slot === 0 ? PROV_KEYS : TRUST_SLOT_KEYS;
  return {
    cert: k.certDer.key,
    key: k.keyDer.key,
    pins: k.brokerPins.key,
    payloadKey: k.payloadKey.key,
    keyId: k.keyId.key,
  };
}

function copy(u: Uint8Array): ArrayBuffer {
  return u.slice().buffer;
}
