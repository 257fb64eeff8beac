/**
 * The certificate-rotation messages a board receives on `electrolyser/<id>/down/trust` (written only by the
 * `fleet-admin` identity), sealed under the board's current payload key so that neither a compromised broker
 * nor a wrong ACL can hand a board a new identity. Pure and platform-neutral (runs under XS).
 *
 * Wire format (big-endian), the payload envelope's header layout:
 *   0      version  u8   = 1
 *   1      key id   u8   the board's payload key id it is sealed under
 *   2..5   0x80000000 | rotation   \  the GCM nonce. Boards seal readings with boot <= 2^31-1, so the high bit
 *   6..13  step (u64)               /  keeps the host's nonces apart from every nonce a board uses for readings
 *   14..   ciphertext || tag, AAD = header || device id || 0x00 || topic
 * Step 0 carries an identity (bodies 1 and 2) or a key request (body 3); step 1 the certificate for the key a
 * board made on request (body 4). A board's answer to a key request (key-request-message.ts) uses step 2^63.
 * Plaintext:
 *   1  u8 1 | u32 rotation | u16 n, certificate DER | u16 n, PKCS#8 key DER | u8 count, pins (32 B)
 *   2  body 1 | u8 new payload key id | 32 B new payload key (the board cannot derive it: it is an HKDF output
 *      of a fleet secret only the host holds, so it travels here, sealed under the key it replaces)
 *   3  u8 3 | u32 rotation | u16 RSA bits | u8 n, subject (mbedTLS DN string, ASCII): "make a key, send a CSR"
 *   4  u8 4 | u32 rotation | u16 n, certificate DER | u8 count, pins | u8 new payload key id | 32 B key: the
 *      certificate for the key the board made for that rotation (the key never travels)
 * The host never seals two different messages under one (key, rotation, step): rotation numbers only grow.
 */
import type { Aead } from "../envelope/aead";
import { AES_256_KEY_BYTES } from "../envelope/aead";
import { aadFor } from "../envelope/envelope";
import { MAX_PINS, PIN_BYTES } from "../tls/broker-trust";
import { PAYLOAD_KEY_BYTES, type PayloadKeyIdentity } from "./nvs-layout";

export const TRUST_MESSAGE_VERSION = 1;
/** The body's version when it carries a new payload key. */
const BODY_WITH_PAYLOAD_KEY = 2;
const BODY_KEY_REQUEST = 3;
const BODY_CERTIFICATE_FOR_KEY = 4;
/** Nonce steps (bytes 6..13) of the host's messages: one rotation may need two messages under one key. */
export const STEP_ROTATION = 0;
export const STEP_CERTIFICATE = 1;
export const KEY_REQUEST_BITS = [2048, 3072, 4096] as const;
const MAX_SUBJECT_BYTES = 128;
const HEADER_BYTES = 14;
const NONCE_HIGH_BIT = 0x8000_0000;
export const MAX_ROTATION = 0x7fff_ffff;
const MAX_DER_BYTES = 8192;

export interface TrustRotation {
  /** Strictly increasing per device; the board refuses one it has not moved past. */
  rotation: number;
  certDer: Uint8Array;
  /** PKCS#8 DER. Secret. */
  keyDer: Uint8Array;
  brokerPins: Uint8Array[];
  /**
   * The payload key the board seals with once this identity has connected (a new generation; secret).
   * Absent: the board keeps the key it uses now.
   */
  payloadKey?: PayloadKeyIdentity;
}

/** "Make a key pair for this rotation and publish its CSR" (the key stays on the board). */
export interface KeyRequest {
  rotation: number;
  bits: number;
  /** The DN the CSR names, as mbedTLS takes it (first pair first). */
  subject: string;
}

/** The certificate for the key the board made on a key request of the same rotation. */
export interface CertificateForKey {
  rotation: number;
  certDer: Uint8Array;
  brokerPins: Uint8Array[];
  /** The payload key the board seals with once the new identity has connected (secret). */
  payloadKey: PayloadKeyIdentity;
}

export type TrustMessage =
  | ({ kind: "identity" } & TrustRotation)
  | ({ kind: "key_request" } & KeyRequest)
  | ({ kind: "certificate" } & CertificateForKey);

export type TrustMessageError =
  "truncated" | "unknown_version" | "wrong_key_id" | "not_a_trust_nonce" | "tag_mismatch" | "malformed";

export type TrustOpenResult = { ok: true; value: TrustMessage } | { ok: false; error: TrustMessageError };

function encodeBody(r: TrustRotation): Uint8Array {
  checkRotation(r.rotation);
  if (r.brokerPins.length < 1 || r.brokerPins.length > MAX_PINS) throw new RangeError(`1..${MAX_PINS} pins`);
  for (const der of [r.certDer, r.keyDer])
    if (der.length < 2 || der.length > MAX_DER_BYTES) throw new RangeError("DER object of a wrong size");
  const pk = r.payloadKey;
  if (pk) checkPayloadKey(pk);
  const size =
    5 +
    2 +
    r.certDer.length +
    2 +
    r.keyDer.length +
    1 +
    r.brokerPins.length * PIN_BYTES +
    (pk ? 1 + PAYLOAD_KEY_BYTES : 0);
  const out = new Uint8Array(size);
  const view = new DataView(out.buffer);
  let at = 0;
  out[at++] = pk ? BODY_WITH_PAYLOAD_KEY : TRUST_MESSAGE_VERSION;
  view.setUint32(at, r.rotation);
  at += 4;
  for (const der of [r.certDer, r.keyDer]) {
    view.setUint16(at, der.length);
    out.set(der, at + 2);
    at += 2 + der.length;
  }
  out[at++] = r.brokerPins.length;
  for (const pin of r.brokerPins) {
    if (pin.length !== PIN_BYTES) throw new RangeError(`a pin is ${PIN_BYTES} bytes`);
    out.set(pin, at);
    at += PIN_BYTES;
  }
  if (pk) {
    out[at++] = pk.keyId;
    out.set(pk.key, at);
  }
  return out;
}

function decodeIdentity(b: Uint8Array): TrustRotation | null {
  const view = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const withKey = b[0] === BODY_WITH_PAYLOAD_KEY;
  if (b.length < 5 || (b[0] !== TRUST_MESSAGE_VERSION && !withKey)) return null;
  const rotation = view.getUint32(1);
  let at = 5;
  const ders: Uint8Array[] = [];
  for (let i = 0; i < 2; i++) {
    if (at + 2 > b.length) return null;
    const n = view.getUint16(at);
    if (n < 2 || at + 2 + n > b.length) return null;
    ders.push(b.slice(at + 2, at + 2 + n));
    at += 2 + n;
  }
  if (at + 1 > b.length) return null;
  const count = b[at++]!;
  const pinsEnd = at + count * PIN_BYTES;
  if (count < 1 || count > MAX_PINS || pinsEnd + (withKey ? 1 + PAYLOAD_KEY_BYTES : 0) !== b.length)
    return null;
  const brokerPins: Uint8Array[] = [];
  for (let i = 0; i < count; i++) brokerPins.push(b.slice(at + i * PIN_BYTES, at + (i + 1) * PIN_BYTES));
  if (rotation < 1 || rotation > MAX_ROTATION) return null;
  const body: TrustRotation = { rotation, certDer: ders[0]!, keyDer: ders[1]!, brokerPins };
  if (withKey) body.payloadKey = { keyId: b[pinsEnd]!, key: b.slice(pinsEnd + 1) };
  return body;
}

function checkRotation(rotation: number): void {
  if (!Number.isInteger(rotation) || rotation < 1 || rotation > MAX_ROTATION)
    throw new RangeError(`rotation must be 1..${MAX_ROTATION}`);
}

function checkPayloadKey(pk: PayloadKeyIdentity): void {
  if (pk.key.length !== PAYLOAD_KEY_BYTES || !Number.isInteger(pk.keyId) || pk.keyId < 0 || pk.keyId > 255)
    throw new RangeError(`a payload key is ${PAYLOAD_KEY_BYTES} bytes with a key id 0..255`);
}

function encodeKeyRequest(r: KeyRequest): Uint8Array {
  checkRotation(r.rotation);
  if (!(KEY_REQUEST_BITS as readonly number[]).includes(r.bits))
    throw new RangeError(`bits must be one of ${KEY_REQUEST_BITS.join(", ")}`);
  const subject = asciiBytes(r.subject);
  if (!subject || subject.length < 1 || subject.length > MAX_SUBJECT_BYTES)
    throw new RangeError(`the subject must be 1..${MAX_SUBJECT_BYTES} printable ASCII characters`);
  const out = new Uint8Array(5 + 2 + 1 + subject.length);
  const view = new DataView(out.buffer);
  out[0] = BODY_KEY_REQUEST;
  view.setUint32(1, r.rotation);
  view.setUint16(5, r.bits);
  out[7] = subject.length;
  out.set(subject, 8);
  return out;
}

function decodeKeyRequest(b: Uint8Array): KeyRequest | null {
  if (b.length < 9) return null;
  const view = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const rotation = view.getUint32(1);
  const bits = view.getUint16(5);
  const n = b[7]!;
  if (n < 1 || 8 + n !== b.length || rotation < 1 || rotation > MAX_ROTATION) return null;
  if (!(KEY_REQUEST_BITS as readonly number[]).includes(bits)) return null;
  let subject = "";
  for (let i = 8; i < b.length; i++) {
    const c = b[i]!;
    if (c < 0x20 || c > 0x7e) return null;
    subject += String.fromCharCode(c);
  }
  return { rotation, bits, subject };
}

function encodeCertificate(r: CertificateForKey): Uint8Array {
  checkRotation(r.rotation);
  if (r.brokerPins.length < 1 || r.brokerPins.length > MAX_PINS) throw new RangeError(`1..${MAX_PINS} pins`);
  if (r.certDer.length < 2 || r.certDer.length > MAX_DER_BYTES)
    throw new RangeError("DER object of a wrong size");
  checkPayloadKey(r.payloadKey);
  const out = new Uint8Array(
    5 + 2 + r.certDer.length + 1 + r.brokerPins.length * PIN_BYTES + 1 + PAYLOAD_KEY_BYTES,
  );
  const view = new DataView(out.buffer);
  out[0] = BODY_CERTIFICATE_FOR_KEY;
  view.setUint32(1, r.rotation);
  view.setUint16(5, r.certDer.length);
  out.set(r.certDer, 7);
  let at = 7 + r.certDer.length;
  out[at++] = r.brokerPins.length;
  for (const pin of r.brokerPins) {
    if (pin.length !== PIN_BYTES) throw new RangeError(`a pin is ${PIN_BYTES} bytes`);
    out.set(pin, at);
    at += PIN_BYTES;
  }
  out[at++] = r.payloadKey.keyId;
  out.set(r.payloadKey.key, at);
  return out;
}

function decodeCertificate(b: Uint8Array): CertificateForKey | null {
  if (b.length < 7) return null;
  const view = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const rotation = view.getUint32(1);
  const n = view.getUint16(5);
  let at = 7 + n;
  if (n < 2 || at + 1 > b.length || rotation < 1 || rotation > MAX_ROTATION) return null;
  const certDer = b.slice(7, at);
  const count = b[at++]!;
  const pinsEnd = at + count * PIN_BYTES;
  if (count < 1 || count > MAX_PINS || pinsEnd + 1 + PAYLOAD_KEY_BYTES !== b.length) return null;
  const brokerPins: Uint8Array[] = [];
  for (let i = 0; i < count; i++) brokerPins.push(b.slice(at + i * PIN_BYTES, at + (i + 1) * PIN_BYTES));
  return {
    rotation,
    certDer,
    brokerPins,
    payloadKey: { keyId: b[pinsEnd]!, key: b.slice(pinsEnd + 1) },
  };
}

function decodeBody(b: Uint8Array, step: number): TrustMessage | null {
  if (b.length < 5) return null;
  if (step === STEP_CERTIFICATE) {
    const c = b[0] === BODY_CERTIFICATE_FOR_KEY ? decodeCertificate(b) : null;
    return c && { kind: "certificate", ...c };
  }
  if (b[0] === BODY_KEY_REQUEST) {
    const r = decodeKeyRequest(b);
    return r && { kind: "key_request", ...r };
  }
  const r = decodeIdentity(b);
  return r && { kind: "identity", ...r };
}

/** Printable ASCII as bytes, or null (XS has no TextEncoder guarantee, and a DN needs no more). */
function asciiBytes(s: string): Uint8Array | null {
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x20 || c > 0x7e) return null;
    out[i] = c;
  }
  return out;
}

/** The 14-byte header of a host-sealed message: nonce (0x80000000 | rotation, step). */
export function trustHeader(keyId: number, rotation: number, step: number, stepHigh = 0): Uint8Array {
  const h = new Uint8Array(HEADER_BYTES);
  const view = new DataView(h.buffer);
  h[0] = TRUST_MESSAGE_VERSION;
  h[1] = keyId;
  view.setUint32(2, (NONCE_HIGH_BIT | rotation) >>> 0);
  view.setUint32(6, stepHigh >>> 0);
  view.setUint32(10, step >>> 0);
  return h;
}

export const TRUST_HEADER_BYTES = HEADER_BYTES;

interface SealParams {
  key: Uint8Array;
  keyId: number;
  sensorId: string;
  topic: string;
}

function seal(aead: Aead, p: SealParams, rotation: number, step: number, body: Uint8Array): Uint8Array {
  if (p.key.length !== AES_256_KEY_BYTES) throw new RangeError("AES-256 key must be 32 bytes");
  if (!Number.isInteger(p.keyId) || p.keyId < 0 || p.keyId > 255)
    throw new RangeError("key id must be 0..255");
  const h = trustHeader(p.keyId, rotation, step);
  const sealed = aead.seal(p.key, h.subarray(2, 14), aadFor(h, p.sensorId, p.topic), body);
  const out = new Uint8Array(HEADER_BYTES + sealed.length);
  out.set(h, 0);
  out.set(sealed, HEADER_BYTES);
  return out;
}

/** The host's side: seals a rotation (certificate and key made by the host) under the board's payload key. */
export function sealTrustMessage(aead: Aead, p: SealParams & { rotation: TrustRotation }): Uint8Array {
  return seal(aead, p, p.rotation.rotation, STEP_ROTATION, encodeBody(p.rotation));
}

/** The host's side: asks the board to make a key pair for a rotation and publish its CSR. */
export function sealKeyRequest(aead: Aead, p: SealParams & { request: KeyRequest }): Uint8Array {
  return seal(aead, p, p.request.rotation, STEP_ROTATION, encodeKeyRequest(p.request));
}

/** The host's side: the certificate for the key the board made (step 1 of the same rotation: its own nonce). */
export function sealCertificateForKey(
  aead: Aead,
  p: SealParams & { certificate: CertificateForKey },
): Uint8Array {
  return seal(aead, p, p.certificate.rotation, STEP_CERTIFICATE, encodeCertificate(p.certificate));
}

/** The board's side. Never throws: a bad message is a reason, and the board keeps its identity. */
export function openTrustMessage(aead: Aead, p: SealParams & { bytes: Uint8Array }): TrustOpenResult {
  const b = p.bytes;
  if (b.length < HEADER_BYTES + 16 + 1) return { ok: false, error: "truncated" };
  if (b[0] !== TRUST_MESSAGE_VERSION) return { ok: false, error: "unknown_version" };
  if (b[1] !== p.keyId) return { ok: false, error: "wrong_key_id" };
  const view = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const high = view.getUint32(2);
  const step = view.getUint32(10);
  if (
    (high & NONCE_HIGH_BIT) === 0 ||
    view.getUint32(6) !== 0 ||
    (step !== STEP_ROTATION && step !== STEP_CERTIFICATE)
  )
    return { ok: false, error: "not_a_trust_nonce" };
  const h = b.subarray(0, HEADER_BYTES);
  const plain = aead.open(p.key, h.subarray(2, 14), aadFor(h, p.sensorId, p.topic), b.subarray(HEADER_BYTES));
  if (!plain) return { ok: false, error: "tag_mismatch" };
  const body = decodeBody(plain, step);
  // The rotation number is in the nonce and in the body: they must agree.
  if (!body || body.rotation !== (high & MAX_ROTATION)) return { ok: false, error: "malformed" };
  return { ok: true, value: body };
}
