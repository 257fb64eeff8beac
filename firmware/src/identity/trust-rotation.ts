/**
 * The board's handler for `electrolyser/<id>/down/trust`: a new client certificate, its key, the broker
 * pins and a new payload key, sealed by the fleet's provisioning host (trust-message.ts) and written by the `fleet-admin` identity.
 * It opens and checks the message, writes it into the spare NVS identity slot (trust-slots.ts) and says what
 * the MQTT session must do next. It never touches the slot in use, never throws, and never logs a secret.
 * Platform-neutral: the same class runs on the board and in the emulator.
 *
 * Intended wiring in the MQTT session (a few lines; the session owns the connection, this class the slots):
 *
 *   const trust = new TrustRotationHandler({ store, aead, clock, log, deviceId, payload, base: identity.tls });
 *   // connecting:        const { tls } = trust.connection();           (the slot being tried, else the one in use)
 *   // CONNACK accepted:  trust.connected();                             (a tried slot becomes the one in use)
 *   // TLS/CONNACK refused with a tried slot: trust.failed();            (falls back after `maxTries`)
 *   // sealing readings:   trust.payloadMode()                          (the slot in use's payload key)
 *   // message on downlinkTopic(id, "trust"):
 *   //   const out = trust.handle(payload);
 *   //   if (out.ok && out.action === "reconnect") session.reconnect();  (readings wait in the outbox)
 *
 * What the board checks before writing anything: the seal (key id, host nonce, AES-GCM tag over the topic and
 * the device id, so neither the broker nor another board can forge or redirect one), the rotation number
 * (strictly above the last one staged: replays and retained copies are refused or ignored), the certificate
 * (well formed, not a CA, no unknown critical extension, the same subject as the certificate in use, within
 * its dates), and that the key is the certificate's. The chain is not checked here: the board holds only the
 * root, not the issuing CA, and the broker checks the chain at the next handshake; a certificate it refuses
 * is a failed try, and the board falls back to the untouched old slot.
 *
 * Payload keys: a rotation carries the key the board seals with once the new slot is in use. Until the CONNACK
 * that commits it, the old key keeps sealing (readings already in the outbox were sealed under it anyway, and
 * the ingest accepts both while the rotation is pending); after a fallback the new key was never used. Trust
 * messages are opened under the key of the slot in use; one under the key the last rotation replaced is only
 * recognised as that rotation redelivered (its retained copy), never staged.
 *
 * Keys made on the board: a key request (trust-message.ts, body 3) asks the board to make a key pair itself
 * (`keys`, a KeyMaker: mbedTLS on the board) and answer with its CSR. The key goes into NVS (`req_key`) before
 * the answer is sealed and published (key-request-message.ts); the certificate then comes alone (body 4, same
 * rotation) and is staged with that key like any rotation, after the same checks, `key_mismatch` included: a
 * certificate for another key (a CSR swapped on its way) is refused. A request asked again (its retained copy
 * at each subscription until the certificate replaces it) gets the same sealed answer, never a new key.
 */
import type { Aead } from "../envelope/aead";
import type { Clock } from "../util/clock";
import type { Log } from "../util/log";
import type { PreferenceStore } from "./preference-store";
import { parseCertificate } from "../tls/certificate";
import { DerError, sameBytes } from "../tls/der";
import { keyMatchesCertificate } from "../tls/key-match";
import { downlinkTopic } from "../telemetry/topics";
import type { PayloadMode, PayloadModeSource } from "../payload/telemetry-message";
import type { PayloadKeyIdentity, TlsIdentity } from "./nvs-layout";
import type { KeyMaker } from "./key-maker";
import { sealKeyAnswer } from "./key-request-message";
import { keyAnswerTopic } from "../telemetry/topics";
import {
  openTrustMessage,
  type KeyRequest,
  type TrustMessageError,
  type TrustRotation,
} from "./trust-message";
import { TrustSlots, type Slot } from "./trust-slots";

/**
 * How far the board's clock may lag the provisioning host's when a certificate has just been issued: SNTP
 * keeps it within seconds, but a board that synced hours ago drifts (an ESP32's RTC: tens of ppm).
 */
export const NOT_BEFORE_SLACK_MS = 10 * 60_000;

export type TrustRefusal =
  | TrustMessageError
  | "stale_rotation"
  | "rotation_in_progress"
  | "certificate_malformed"
  | "certificate_is_ca"
  | "wrong_subject"
  | "not_yet_valid"
  | "expired"
  | "key_mismatch"
  | "payload_key_id_in_use"
  | "write_failed"
  | "key_request_unsupported"
  | "key_generation_failed"
  | "no_key_for_rotation";

export type TrustOutcome =
  /** Staged in `slot`: reconnect, and the session's next connection tries it. */
  | { ok: true; action: "reconnect"; rotation: number; slot: Slot }
  /** Answer a key request: publish `payload` on `topic` (QoS 1, retained), nothing else changes. */
  | { ok: true; action: "publish"; topic: string; payload: Uint8Array; rotation: number }
  /** Nothing to do: the retained message cleared (empty), or a redelivered copy of a rotation already staged. */
  | { ok: true; action: "none"; why: "cleared" | "already_staged" }
  | { ok: false; error: TrustRefusal; detail: string };

export interface TrustRotationOptions {
  store: PreferenceStore;
  aead: Aead;
  clock: Clock;
  log: Pick<Log, "info" | "warn">;
  deviceId: string;
  /** The provisioned payload key (slot 0's as read at boot): trust messages are sealed under the one in use. */
  payload: PayloadKeyIdentity;
  /** The TLS identity read from NVS at boot (slot 0's keys and the fleet root). */
  base: TlsIdentity;
  /** Failed connections with a new slot before falling back (default 3). */
  maxTries?: number;
  /** Makes a key pair and CSR on the board, for key requests; without it they are refused. */
  keys?: KeyMaker;
}

export class TrustRotationHandler implements PayloadModeSource {
  readonly #o: TrustRotationOptions;
  readonly #slots: TrustSlots;
  readonly #topic: string;
  readonly #counts = new Map<TrustRefusal | "staged", number>();
  /** Kept, not read from NVS per reading: it changes only when a slot is committed. */
  #sealing: PayloadMode;

  constructor(o: TrustRotationOptions) {
    this.#o = o;
    this.#slots = new TrustSlots({ store: o.store, maxTries: o.maxTries });
    this.#topic = downlinkTopic(o.deviceId, "trust");
    this.#sealing = this.#modeFor(this.#slots.active());
  }

  /** What readings are sealed with now: the payload key of the slot in use (a tried slot's once committed). */
  payloadMode(): PayloadMode {
    return this.#sealing;
  }

  #keyOf(slot: Slot): PayloadKeyIdentity {
    return this.#slots.payloadKey(slot, this.#o.payload);
  }

  #modeFor(slot: Slot): PayloadMode {
    const k = this.#keyOf(slot);
    return { kind: "encrypted", aead: this.#o.aead, keyId: k.keyId, key: k.key };
  }

  /** What to connect with: the slot being tried if any, else the one in use. */
  connection(): { slot: Slot; tls: TlsIdentity; trying: boolean } {
    return this.#slots.current(this.#o.base);
  }

  /** CONNACK accepted with `connection()`. */
  connected(): { committed: Slot | null } {
    const r = this.#slots.connected();
    if (r.committed !== null) {
      this.#sealing = this.#modeFor(r.committed);
      const keyId = (this.#sealing as { keyId: number }).keyId;
      this.#o.log.info(
        `trust: rotation ${this.#slots.lastRotation()} connected; slot ${r.committed} in use, sealing under payload key ${keyId}`,
      );
    }
    return r;
  }

  /** TLS handshake or CONNACK refused with `connection()`. */
  failed(): { fellBack: boolean } {
    const r = this.#slots.failed();
    if (r.fellBack)
      this.#o.log.warn(
        `trust: rotation ${this.#slots.lastRotation()} never connected; back to slot ${this.#slots.active()}`,
      );
    return r;
  }

  /** How many messages were staged and refused, by reason (for the stats line). */
  counts(): ReadonlyMap<TrustRefusal | "staged", number> {
    return this.#counts;
  }

  /** One message from `electrolyser/<id>/down/trust`. */
  handle(payload: Uint8Array): TrustOutcome {
    // Clearing a retained message delivers an empty payload to subscribers (MQTT 3.1.1 §3.3.1.3).
    if (payload.length === 0) return { ok: true, action: "none", why: "cleared" };
    const out = this.#handle(payload);
    if (out.ok && out.action === "reconnect") {
      this.#count("staged");
      this.#o.log.info(`trust: rotation ${out.rotation} staged in slot ${out.slot}; reconnecting with it`);
    } else if (out.ok && out.action === "publish") {
      this.#o.log.info(`trust: rotation ${out.rotation}: key made on the board, CSR on ${out.topic}`);
    } else if (!out.ok) {
      this.#count(out.error);
      this.#o.log.warn(`trust: message refused (${out.error}): ${out.detail}`);
    }
    return out;
  }

  #handle(payload: Uint8Array): TrustOutcome {
    const { aead, deviceId } = this.#o;
    const active = this.#slots.active();
    const inUse = this.#keyOf(active);
    const replaced = this.#keyOf(active === 0 ? 1 : 0);
    // Byte 1 names the key: the one in use, or the one the last rotation replaced (its retained copy).
    const underReplaced = payload[1] !== inUse.keyId && payload[1] === replaced.keyId;
    const key = underReplaced ? replaced : inUse;
    const opened = openTrustMessage(aead, {
      key: key.key,
      keyId: key.keyId,
      sensorId: deviceId,
      topic: this.#topic,
      bytes: payload,
    });
    if (!opened.ok) return refuse(opened.error, "not a trust message for this board under its payload key");
    const m = opened.value;
    const last = this.#slots.lastRotation();
    if (m.kind === "key_request") {
      if (underReplaced)
        return refuse(
          "wrong_key_id",
          "a key request under the payload key this board's last rotation replaced",
        );
      return this.#answerKeyRequest(m, inUse, last);
    }
    if (underReplaced) {
      if (m.rotation === last && this.#isStaged(m))
        return { ok: true, action: "none", why: "already_staged" };
      return refuse("wrong_key_id", "sealed under the payload key this board's last rotation replaced");
    }
    if (m.rotation <= last) {
      // A retained message, or QoS 1 redelivery, of the rotation already staged: expected, not an attack.
      if (m.rotation === last && this.#isStaged(m))
        return { ok: true, action: "none", why: "already_staged" };
      return refuse("stale_rotation", `rotation ${m.rotation}, the board is at ${last}`);
    }
    if (m.kind === "certificate") {
      const made = this.#slots.request(m.rotation);
      if (!made)
        return refuse("no_key_for_rotation", `no key was made on this board for rotation ${m.rotation}`);
      return this.#stage({ ...m, keyDer: made.keyDer }, inUse, true);
    }
    return this.#stage(m, inUse, false);
  }

  /** Checks a rotation's identity and writes it into the spare slot. */
  #stage(r: TrustRotation, inUse: PayloadKeyIdentity, madeHere: boolean): TrustOutcome {
    const problem = this.#checkIdentity(r);
    if (problem) return problem;
    if (r.payloadKey && r.payloadKey.keyId === inUse.keyId)
      return refuse("payload_key_id_in_use", `the new payload key has the key id in use (${inUse.keyId})`);
    const staged = this.#slots.stage(r, inUse);
    if (staged.ok && madeHere) this.#slots.forgetRequest();
    if (!staged.ok)
      return refuse(
        staged.reason,
        staged.reason === "rotation_in_progress"
          ? "another rotation is being tried; send this one after it connected or fell back"
          : `rotation ${r.rotation}`,
      );
    return { ok: true, action: "reconnect", rotation: r.rotation, slot: staged.slot };
  }

  #checkIdentity(r: TrustRotation): TrustOutcome | null {
    try {
      const cert = parseCertificate(r.certDer);
      const inUse = parseCertificate(this.#slots.current(this.#o.base).tls.certDer);
      if (cert.isCa) return refuse("certificate_is_ca", "a board's certificate may not be a CA");
      if (cert.unknownCritical.length)
        return refuse(
          "certificate_malformed",
          `unknown critical extension ${cert.unknownCritical.join(", ")}`,
        );
      if (!sameBytes(cert.subject, inUse.subject))
        return refuse("wrong_subject", "the certificate names another subject than the one in use");
      const now = this.#o.clock.now();
      if (now + NOT_BEFORE_SLACK_MS < cert.notBefore)
        return refuse("not_yet_valid", `valid from ${new Date(cert.notBefore).toISOString()}`);
      if (now > cert.notAfter) return refuse("expired", `expired ${new Date(cert.notAfter).toISOString()}`);
      const match = keyMatchesCertificate(cert.spki, r.keyDer);
      if (match !== "match")
        return refuse(
          "key_mismatch",
          match === "unsupported" ? "a key type the board cannot check" : "not the certificate's key",
        );
    } catch (e) {
      return refuse(
        "certificate_malformed",
        e instanceof DerError ? e.message : "unparseable certificate or key",
      );
    }
    return null;
  }

  /**
   * Makes the key and seals the answer once per rotation, written to NVS before it is published: a reset in
   * between makes a new key next time, but nothing under the old one was ever sent. Asked again, the same bytes.
   */
  #answerKeyRequest(req: KeyRequest, inUse: PayloadKeyIdentity, last: number): TrustOutcome {
    const topic = keyAnswerTopic(this.#o.deviceId);
    if (req.rotation <= last)
      return refuse("stale_rotation", `rotation ${req.rotation}, the board is at ${last}`);
    const kept = this.#slots.request(req.rotation);
    if (kept) return { ok: true, action: "publish", topic, payload: kept.answer, rotation: req.rotation };
    if (!this.#o.keys) return refuse("key_request_unsupported", "this board cannot make keys (no KeyMaker)");
    if (this.#slots.trying() !== null)
      return refuse(
        "rotation_in_progress",
        "another rotation is being tried; ask again after it connected or fell back",
      );
    let made: { keyDer: ArrayBuffer; csrDer: ArrayBuffer };
    try {
      made = this.#o.keys.generate({ subject: req.subject, bits: req.bits });
    } catch (e) {
      return refuse("key_generation_failed", e instanceof Error ? e.message : "the key maker failed");
    }
    const payload = sealKeyAnswer(this.#o.aead, {
      key: inUse.key,
      keyId: inUse.keyId,
      sensorId: this.#o.deviceId,
      topic,
      answer: { rotation: req.rotation, csrDer: new Uint8Array(made.csrDer) },
    });
    try {
      this.#slots.recordRequest(req.rotation, made.keyDer, payload);
    } catch {
      return refuse("write_failed", `the key for rotation ${req.rotation} could not be stored`);
    } finally {
      new Uint8Array(made.keyDer).fill(0);
    }
    return { ok: true, action: "publish", topic, payload, rotation: req.rotation };
  }

  /** The slot being tried, or in use, already holds exactly this certificate. */
  #isStaged(r: { certDer: Uint8Array }): boolean {
    return sameBytes(this.#slots.current(this.#o.base).tls.certDer, r.certDer);
  }

  #count(k: TrustRefusal | "staged"): void {
    this.#counts.set(k, (this.#counts.get(k) ?? 0) + 1);
  }
}

function refuse(error: TrustRefusal, detail: string): TrustOutcome {
  return { ok: false, error, detail };
}
