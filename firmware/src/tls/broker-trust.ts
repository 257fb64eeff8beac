/**
 * Decides whether the server a board reached is its broker, before the board sends it anything.
 *
 * Two independent checks, both required:
 * 1. The pin: SHA-256 of the leaf's SubjectPublicKeyInfo (RFC 7469's pin-sha256) must be one the board
 *    was provisioned with (the broker's current key and the next one). Nobody without the broker's private
 *    key can pass it, whatever a CA signed: the TLS handshake separately proves the server holds that key.
 * 2. The chain, checked strictly (RFC 5280 §6.1 in the small): every link signed by the next, every issuer
 *    a CA allowed to sign certificates and within its pathLenConstraint, names chained, all certificates
 *    within their validity, the last one issued by (or being) the board's trust anchor, the leaf a TLS
 *    server certificate and not a CA. Moddable's own verifier (8.2.3, `ssl_cert.js`) skips links whose
 *    signature fails and checks none of the CA flags, so a leaf signed by a device key passed it.
 *
 * Same code on the board (under Moddable's TLS, through firmware/ssl/) and in every emulated board (node:tls).
 * Signature checks and SHA-256 are the platform's: they come in as functions.
 */
import { DerError, sameBytes } from "./der";
import { mayCertify, mayServeTls, parseCertificate } from "./certificate";
import type { Certificate } from "./certificate";

export const PIN_BYTES = 32;
/** Leaf, issuing CA and perhaps the root: a longer chain is not this fleet's. */
export const MAX_CHAIN = 4;

export type BrokerRefusal =
  | "no_certificate"
  | "chain_too_long"
  | "malformed"
  | "pin_mismatch"
  | "not_yet_valid"
  | "expired"
  | "leaf_not_server"
  | "issuer_mismatch"
  | "issuer_not_ca"
  | "path_length"
  | "bad_signature"
  | "untrusted_root"
  | "unknown_critical_extension";

export type BrokerVerdict =
  { ok: true; pinIndex: number } | { ok: false; reason: BrokerRefusal; detail: string };

export interface BrokerTrustOptions {
  /** pin-sha256 values, 32 bytes each: the broker's current key first, then the next. */
  pins: readonly Uint8Array[];
  /** The fleet root certificate (DER) the chain must end at. */
  anchor: Uint8Array;
  sha256(data: Uint8Array): Uint8Array;
  /** True when `cert`'s signature verifies under `issuer`'s public key (both DER certificates). */
  verifySignature(issuer: Uint8Array, cert: Uint8Array): boolean;
}

export default class BrokerTrust {
  readonly #pins: readonly Uint8Array[];
  readonly #anchorDer: Uint8Array;
  readonly #anchor: Certificate;
  readonly #sha256: (data: Uint8Array) => Uint8Array;
  readonly #verifySignature: (issuer: Uint8Array, cert: Uint8Array) => boolean;

  constructor(options: BrokerTrustOptions) {
    if (options.pins.length === 0) throw new RangeError("at least one broker pin is required");
    for (const pin of options.pins)
      if (pin.length !== PIN_BYTES) throw new RangeError(`a broker pin is ${PIN_BYTES} bytes`);
    this.#pins = options.pins.slice();
    this.#anchorDer = options.anchor;
    this.#anchor = parseCertificate(options.anchor);
    this.#sha256 = options.sha256;
    this.#verifySignature = options.verifySignature;
  }

  /** `chain` as the server sent it, leaf first; `now` in ms since the epoch (the board's SNTP clock). */
  check(chain: readonly Uint8Array[], now: number): BrokerVerdict {
    if (chain.length === 0) return refuse("no_certificate", "the server sent no certificate");
    if (chain.length > MAX_CHAIN) return refuse("chain_too_long", `${chain.length} certificates`);
    let certs: Certificate[];
    try {
      certs = chain.map((der) => parseCertificate(der));
    } catch (e) {
      return refuse("malformed", e instanceof DerError ? e.message : "unparseable certificate");
    }
    const leaf = certs[0]!;
    const pin = this.#sha256(leaf.spki);
    const pinIndex = this.#pins.findIndex((p) => sameBytes(p, pin));
    if (pinIndex < 0)
      return refuse("pin_mismatch", "the server's key is not the broker's (pin-sha256 not provisioned)");
    if (leaf.isCa || !mayServeTls(leaf))
      return refuse("leaf_not_server", "the leaf is a CA or not for TLS servers");

    // A server may append the root itself; the anchor is what the board holds, not what it was sent.
    if (certs.length > 1 && sameBytes(chain[chain.length - 1]!, this.#anchorDer)) certs = certs.slice(0, -1);
    const path = [...certs, this.#anchor];
    for (let i = 0; i < path.length; i++) {
      const cert = path[i]!;
      if (now < cert.notBefore)
        return refuse("not_yet_valid", `certificate ${i} is valid from ${iso(cert.notBefore)}`);
      if (now > cert.notAfter) return refuse("expired", `certificate ${i} expired ${iso(cert.notAfter)}`);
      if (cert.unknownCritical.length)
        return refuse("unknown_critical_extension", `certificate ${i}: ${cert.unknownCritical.join(", ")}`);
    }
    for (let i = 0; i + 1 < path.length; i++) {
      const subject = path[i]!;
      const issuer = path[i + 1]!;
      const last = i + 1 === path.length - 1;
      if (!sameBytes(subject.issuer, issuer.subject)) {
        return last
          ? refuse("untrusted_root", `certificate ${i} is not issued by the fleet root`)
          : refuse("issuer_mismatch", `certificate ${i} names another issuer than certificate ${i + 1}`);
      }
      if (!issuer.isCa || !mayCertify(issuer))
        return refuse("issuer_not_ca", `certificate ${i + 1} may not issue certificates`);
      // Intermediates below this issuer, the leaf not counted (RFC 5280 §4.2.1.9).
      if (issuer.pathLength !== undefined && i > issuer.pathLength) {
        return refuse(
          "path_length",
          `certificate ${i + 1} allows ${issuer.pathLength} intermediate(s) below it`,
        );
      }
      if (!this.#verify(issuer.der, subject.der)) {
        return last
          ? refuse("untrusted_root", `certificate ${i} does not verify under the fleet root`)
          : refuse("bad_signature", `certificate ${i} is not signed by certificate ${i + 1}`);
      }
    }
    return { ok: true, pinIndex };
  }

  #verify(issuer: Uint8Array, cert: Uint8Array): boolean {
    try {
      return this.#verifySignature(issuer, cert);
    } catch {
      // An unsupported algorithm or a malformed key is a refusal, not a crash.
      return false;
    }
  }
}

/** Splits the NVS value (pins concatenated) into 32-byte pins; null when its length is wrong. */
export function splitPins(blob: Uint8Array): Uint8Array[] | null {
  if (blob.length === 0 || blob.length % PIN_BYTES !== 0 || blob.length / PIN_BYTES > MAX_PINS) return null;
  const out: Uint8Array[] = [];
  for (let i = 0; i < blob.length; i += PIN_BYTES) out.push(blob.slice(i, i + PIN_BYTES));
  return out;
}

/** Current, next, and room for one overlap during a rotation. */
export const MAX_PINS = 4;

export function describeVerdict(v: BrokerVerdict): string {
  return v.ok ? `broker key pin ${v.pinIndex} matched` : `broker refused (${v.reason}): ${v.detail}`;
}

function refuse(reason: BrokerRefusal, detail: string): BrokerVerdict {
  return { ok: false, reason, detail };
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}
