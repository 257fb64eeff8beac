/**
 * A board's answer to a key request (trust-message.ts, body 3): the CSR for the key it made, published QoS 1
 * and retained on `electrolyser/<id>/csr`, where only that board may write (the broker's ACL) and only
 * `fleet-admin` reads. Sealed under the board's payload key in use, so a compromised broker cannot swap in a
 * CSR for a key of its own: the host would otherwise certify an attacker's key under the board's name.
 *
 * Wire format: the trust message's header (version 1, key id, nonce (0x80000000 | rotation, 2^63)), then
 * ciphertext || tag with AAD = header || device id || 0x00 || topic. Plaintext: u8 1 | u32 rotation | CSR DER.
 * Nonce: readings use boot < 2^31; the host's trust messages (0x80000000 | rotation, step < 2^32); this one sets
 * the top bit of the second field, so under one key no nonce is shared with either. The board seals at most one
 * plaintext per rotation: it keeps the sealed bytes (NVS `req_csr`) and sends those again when asked again.
 */
import type { Aead } from "../envelope/aead";
import { aadFor } from "../envelope/envelope";
import { MAX_ROTATION, TRUST_HEADER_BYTES, TRUST_MESSAGE_VERSION, trustHeader } from "./trust-message";

const ANSWER_VERSION = 1;
const ANSWER_STEP_HIGH = 0x8000_0000;
const MAX_CSR_BYTES = 4096;

export type KeyAnswerError =
  "truncated" | "wrong_key_id" | "not_an_answer_nonce" | "tag_mismatch" | "malformed";

export interface KeyAnswer {
  rotation: number;
  csrDer: Uint8Array;
}

interface AnswerParams {
  key: Uint8Array;
  keyId: number;
  sensorId: string;
  topic: string;
}

/** The board's side. */
export function sealKeyAnswer(aead: Aead, p: AnswerParams & { answer: KeyAnswer }): Uint8Array {
  const { rotation, csrDer } = p.answer;
  if (!Number.isInteger(rotation) || rotation < 1 || rotation > MAX_ROTATION)
    throw new RangeError(`rotation must be 1..${MAX_ROTATION}`);
  if (csrDer.length < 2 || csrDer.length > MAX_CSR_BYTES) throw new RangeError("CSR of a wrong size");
  const plain = new Uint8Array(5 + csrDer.length);
  plain[0] = ANSWER_VERSION;
  new DataView(plain.buffer).setUint32(1, rotation);
  plain.set(csrDer, 5);
  const h = trustHeader(p.keyId, rotation, 0, ANSWER_STEP_HIGH);
  const sealed = aead.seal(p.key, h.subarray(2, 14), aadFor(h, p.sensorId, p.topic), plain);
  const out = new Uint8Array(TRUST_HEADER_BYTES + sealed.length);
  out.set(h, 0);
  out.set(sealed, TRUST_HEADER_BYTES);
  return out;
}

/** The host's side. Never throws. */
export function openKeyAnswer(
  aead: Aead,
  p: AnswerParams & { bytes: Uint8Array },
): { ok: true; value: KeyAnswer } | { ok: false; error: KeyAnswerError } {
  const b = p.bytes;
  if (b.length < TRUST_HEADER_BYTES + 16 + 6) return { ok: false, error: "truncated" };
  if (b[0] !== TRUST_MESSAGE_VERSION) return { ok: false, error: "malformed" };
  if (b[1] !== p.keyId) return { ok: false, error: "wrong_key_id" };
  const view = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const high = view.getUint32(2);
  if ((high & 0x8000_0000) === 0 || view.getUint32(6) !== ANSWER_STEP_HIGH || view.getUint32(10) !== 0)
    return { ok: false, error: "not_an_answer_nonce" };
  const h = b.subarray(0, TRUST_HEADER_BYTES);
  const plain = aead.open(
    p.key,
    h.subarray(2, 14),
    aadFor(h, p.sensorId, p.topic),
    b.subarray(TRUST_HEADER_BYTES),
  );
  if (!plain) return { ok: false, error: "tag_mismatch" };
  if (plain.length < 7 || plain[0] !== ANSWER_VERSION) return { ok: false, error: "malformed" };
  const rotation = new DataView(plain.buffer, plain.byteOffset, plain.byteLength).getUint32(1);
  if (rotation !== (high & MAX_ROTATION)) return { ok: false, error: "malformed" };
  return { ok: true, value: { rotation, csrDer: plain.slice(5) } };
}
