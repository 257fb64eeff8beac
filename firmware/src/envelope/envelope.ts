// Wire format (all integers big-endian):
//   0      version  u8   = 1
//   1      key id   u8   which of the device's payload keys sealed it (a new one at every
//                        provisioning; the ingest maps (device, key id) to the key)
//   2..5   boot     u32  boot counter persisted in NVS   \ together the 12-byte GCM nonce:
//   6..13  counter  u64  message counter within the boot / unique per key as long as the
//   14..   ciphertext || 16-byte tag                         device never reuses a boot
// AAD = header (bytes 0..13) || sensor id || 0x00 || topic, so a sealed message cannot be
// moved to another device's topic or have its header edited.
import { fail, ok } from "../telemetry/decode-result";
import type { DecodeResult } from "../telemetry/decode-result";
import { MAX_BOOT, MAX_PAYLOAD_BYTES } from "../telemetry/reading";
import { encodeUtf8 } from "../util/utf8";
import type { Aead } from "./aead";
import { AES_256_KEY_BYTES, GCM_TAG_BYTES } from "./aead";

export const ENVELOPE_VERSION = 1;
export const ENVELOPE_HEADER_BYTES = 14;
export const ENVELOPE_OVERHEAD_BYTES = ENVELOPE_HEADER_BYTES + GCM_TAG_BYTES;
export const MAX_ENVELOPE_BYTES = MAX_PAYLOAD_BYTES + ENVELOPE_OVERHEAD_BYTES;
const TWO_32 = 0x1_0000_0000;

export interface EnvelopeHeader {
  keyId: number;
  boot: number;
  counter: number;
}

export interface SealParams extends EnvelopeHeader {
  topic: string;
  sensorId: string;
  plaintext: Uint8Array;
}

export interface OpenedEnvelope extends EnvelopeHeader {
  plaintext: Uint8Array;
}

/** A key id the device was once given and may no longer use (replaced by a re-provisioning or a rotation). */
export interface RetiredKey {
  retired: string;
}

/** What a key lookup finds: the key, nothing (never given), or a retired key id. */
export type KeyLookup = Uint8Array | undefined | RetiredKey;

function writeHeader(h: EnvelopeHeader): Uint8Array {
  if (!Number.isInteger(h.keyId) || h.keyId < 0 || h.keyId > 255)
    throw new RangeError("key id must be 0..255");
  if (!Number.isInteger(h.boot) || h.boot < 0 || h.boot > MAX_BOOT) throw new RangeError("boot out of range");
  if (!Number.isSafeInteger(h.counter) || h.counter < 0) throw new RangeError("counter out of range");
  const out = new Uint8Array(ENVELOPE_HEADER_BYTES);
  const view = new DataView(out.buffer);
  out[0] = ENVELOPE_VERSION;
  out[1] = h.keyId;
  view.setUint32(2, h.boot);
  view.setUint32(6, Math.floor(h.counter / TWO_32));
  view.setUint32(10, h.counter % TWO_32);
  return out;
}

/** AAD = header || sensor id || 0x00 || topic; also used by the downlink's sealed trust message. */
export function aadFor(header: Uint8Array, sensorId: string, topic: string): Uint8Array {
  const id = encodeUtf8(sensorId);
  const t = encodeUtf8(topic);
  const aad = new Uint8Array(header.length + id.length + 1 + t.length);
  aad.set(header, 0);
  aad.set(id, header.length);
  aad[header.length + id.length] = 0;
  aad.set(t, header.length + id.length + 1);
  return aad;
}

export function sealEnvelope(aead: Aead, key: Uint8Array, p: SealParams): Uint8Array {
  if (key.length !== AES_256_KEY_BYTES) throw new RangeError("AES-256 key must be 32 bytes");
  if (p.plaintext.length > MAX_PAYLOAD_BYTES) throw new RangeError("plaintext larger than the payload limit");
  const header = writeHeader(p);
  const sealed = aead.seal(key, header.subarray(2, 14), aadFor(header, p.sensorId, p.topic), p.plaintext);
  const out = new Uint8Array(header.length + sealed.length);
  out.set(header, 0);
  out.set(sealed, header.length);
  return out;
}

export function readEnvelopeHeader(bytes: Uint8Array): DecodeResult<EnvelopeHeader> {
  if (bytes.length < ENVELOPE_OVERHEAD_BYTES + 1)
    return fail("truncated", `envelope is ${bytes.length} bytes, shorter than header + tag + 1`);
  if (bytes.length > MAX_ENVELOPE_BYTES)
    return fail("oversized", `envelope is ${bytes.length} bytes, limit ${MAX_ENVELOPE_BYTES}`);
  if (bytes[0] !== ENVELOPE_VERSION)
    return fail("unknown_version", `envelope version ${bytes[0]} is not supported`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const hi = view.getUint32(6);
  if (hi >= 0x20_0000) return fail("out_of_range", "envelope counter exceeds 2^53");
  const boot = view.getUint32(2);
  if (boot > MAX_BOOT) return fail("out_of_range", "envelope boot counter exceeds 2^31-1");
  return ok({ keyId: bytes[1]!, boot, counter: hi * TWO_32 + view.getUint32(10) });
}

export function openEnvelope(
  aead: Aead,
  keyFor: (keyId: number) => KeyLookup,
  p: { topic: string; sensorId: string; bytes: Uint8Array },
): DecodeResult<OpenedEnvelope> {
  const head = readEnvelopeHeader(p.bytes);
  if (!head.ok) return head;
  const key = keyFor(head.value.keyId);
  if (!key) return fail("unknown_key_id", `no payload key with id ${head.value.keyId}`);
  if (!(key instanceof Uint8Array))
    return fail("retired_key", `payload key id ${head.value.keyId} is retired: ${key.retired}`);
  const header = p.bytes.subarray(0, ENVELOPE_HEADER_BYTES);
  const plaintext = aead.open(
    key,
    header.subarray(2, 14),
    aadFor(header, p.sensorId, p.topic),
    p.bytes.subarray(ENVELOPE_HEADER_BYTES),
  );
  if (!plaintext)
    return fail("tag_mismatch", "authentication tag does not verify (tampered, wrong key or wrong topic)");
  return ok({ ...head.value, plaintext });
}
