/**
 * The certificate-rotation message a board receives on `electrolyser/<id>/down/trust` (written only by the
 * `fleet-admin` identity), sealed under the board's current payload key so that neither a compromised broker
 * nor a wrong ACL can hand a board a new identity. Pure and platform-neutral (runs under XS).
 *
 * Wire format (big-endian), the payload envelope's header layout:
 *   0      version  u8   = 1
 *   1      key id   u8   the board's payload key id it is sealed under
 *   2..5   0x80000000 | rotation   \  the GCM nonce. Boards seal with boot <= 2^31-1, so the high bit keeps
 *   6..13  0 (u64)                  /  the host's nonces apart from every nonce a board uses under that key
 *   14..   ciphertext || tag, AAD = header || device id || 0x00 || topic
 * Plaintext:
 *   0 version u8 = 1 | 1 rotation u32 | u16 n, certificate DER | u16 n, PKCS#8 key DER | u8 count, pins (32 B)
 *   version 2 adds: u8 new payload key id | 32 B new payload key (the board cannot derive it: it is an HKDF
 *   output of a fleet secret only the host holds, so it travels here, sealed under the key it replaces)
 * The host never seals two different messages under one (key, rotation): rotation numbers only grow.
 */
import type { Aead } from "../envelope/aead";
import { AES_256_KEY_BYTES } from "../envelope/aead";
import { aadFor } from "../envelope/envelope";
import { MAX_PINS, PIN_BYTES } from "../tls/broker-trust";
import { PAYLOAD_KEY_BYTES, type PayloadKeyIdentity } from "./nvs-layout";

export const TRUST_MESSAGE_VERSION = 1;
/** The body's version when it carries a new payload key. */
const BODY_WITH_PAYLOAD_KEY = 2;
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

export type TrustMessageError =
  "truncated" | "unknown_version" | "wrong_key_id" | "not_a_trust_nonce" | "tag_mismatch" | "malformed";

export type TrustOpenResult = { ok: true; value: TrustRotation } | { ok: false; error: TrustMessageError };

function encodeBody(r: TrustRotation): Uint8Array {
  if (!Number.isInteger(r.rotation) || r.rotation < 1 || r.rotation > MAX_ROTATION)
    throw new RangeError(`rotation must be 1..${MAX_ROTATION}`);
  if (r.brokerPins.length < 1 || r.brokerPins.length > MAX_PINS) throw new RangeError(`1..${MAX_PINS} pins`);
  for (const der of [r.certDer, r.keyDer])
    if (der.length < 2 || der.length > MAX_DER_BYTES) throw new RangeError("DER object of a wrong size");
  const pk = r.payloadKey;
  if (
    pk &&
    (pk.key.length !== PAYLOAD_KEY_BYTES || !Number.isInteger(pk.keyId) || pk.keyId < 0 || pk.keyId > 255)
  )
    throw new RangeError(`a payload key is ${PAYLOAD_KEY_BYTES} bytes with a key id 0..255`);
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

function decodeBody(b: Uint8Array): TrustRotation | null {
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

function header(keyId: number, rotation: number): Uint8Array {
  const h = new Uint8Array(HEADER_BYTES);
  const view = new DataView(h.buffer);
  h[0] = TRUST_MESSAGE_VERSION;
  h[1] = keyId;
  view.setUint32(2, (NONCE_HIGH_BIT | rotation) >>> 0);
  return h;
}

/** The host's side: seals a rotation for one board under its current payload key. */
export function sealTrustMessage(
  aead: Aead,
  p: { key: Uint8Array; keyId: number; sensorId: string; topic: string; rotation: TrustRotation },
): Uint8Array {
  if (p.key.length !== AES_256_KEY_BYTES) throw new RangeError("AES-256 key must be 32 bytes");
  if (!Number.isInteger(p.keyId) || p.keyId < 0 || p.keyId > 255)
    throw new RangeError("key id must be 0..255");
  const h = header(p.keyId, p.rotation.rotation);
  const sealed = aead.seal(p.key, h.subarray(2, 14), aadFor(h, p.sensorId, p.topic), encodeBody(p.rotation));
  const out = new Uint8Array(HEADER_BYTES + sealed.length);
  out.set(h, 0);
  out.set(sealed, HEADER_BYTES);
  return out;
}

/** The board's side. Never throws: a bad message is a reason, and the board keeps its identity. */
export function openTrustMessage(
  aead: Aead,
  p: { key: Uint8Array; keyId: number; sensorId: string; topic: string; bytes: Uint8Array },
): TrustOpenResult {
  const b = p.bytes;
  if (b.length < HEADER_BYTES + 16 + 1) return { ok: false, error: "truncated" };
  if (b[0] !== TRUST_MESSAGE_VERSION) return { ok: false, error: "unknown_version" };
  if (b[1] !== p.keyId) return { ok: false, error: "wrong_key_id" };
  const view = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const high = view.getUint32(2);
  if ((high & NONCE_HIGH_BIT) === 0 || view.getUint32(6) !== 0 || view.getUint32(10) !== 0)
    return { ok: false, error: "not_a_trust_nonce" };
  const h = b.subarray(0, HEADER_BYTES);
  const plain = aead.open(p.key, h.subarray(2, 14), aadFor(h, p.sensorId, p.topic), b.subarray(HEADER_BYTES));
  if (!plain) return { ok: false, error: "tag_mismatch" };
  const body = decodeBody(plain);
  // The rotation number is in the nonce and in the body: they must agree.
  if (!body || body.rotation !== (high & MAX_ROTATION)) return { ok: false, error: "malformed" };
  return { ok: true, value: body };
}
