// One telemetry message as it crosses MQTT: the topic names the device, the payload is the
// JSON reading, sealed in the envelope when the fleet encrypts. Whether a fleet encrypts is
// configuration, never guessed from the bytes, so a plain message cannot downgrade an
// encrypted fleet.
import type { Aead } from "../envelope/aead";
import { openEnvelope, sealEnvelope } from "../envelope/envelope";
import type { KeyLookup } from "../envelope/envelope";
import type { Reading } from "../telemetry/reading";
import { parseTopic, telemetryTopic } from "../telemetry/topics";
import { decodeReading, encodeReading } from "./codec";
import { fail, ok } from "../telemetry/decode-result";
import type { DecodeResult } from "../telemetry/decode-result";

export type PayloadMode =
  { kind: "plain" } | { kind: "encrypted"; aead: Aead; keyId: number; key: Uint8Array };

/** A payload mode that can change (field rotation moves the board to a new payload key): asked per reading. */
export interface PayloadModeSource {
  payloadMode(): PayloadMode;
}

/** `topic` is the reading's telemetry topic, for a caller that sends many readings of one device (the sampler). */
export function encodeTelemetryMessage(
  reading: Reading,
  mode: PayloadMode,
  topic: string = telemetryTopic(reading.sensorId),
): { topic: string; payload: Uint8Array } {
  const plaintext = encodeReading(reading);
  if (mode.kind === "plain") return { topic, payload: plaintext };
  return {
    topic,
    payload: sealEnvelope(mode.aead, mode.key, {
      keyId: mode.keyId,
      boot: reading.boot,
      counter: reading.seq,
      topic,
      sensorId: reading.sensorId,
      plaintext,
    }),
  };
}

/**
 * Opens and decodes in one step and binds the two layers: the reading inside must name
 * the same device, boot and sequence number as the envelope that authenticated it.
 * It lives here, above both, so the envelope knows nothing of what it seals.
 */
export function openReading(
  aead: Aead,
  keyFor: (keyId: number) => KeyLookup,
  p: { topic: string; sensorId: string; bytes: Uint8Array },
): DecodeResult<Reading & { keyId: number }> {
  const opened = openEnvelope(aead, keyFor, p);
  if (!opened.ok) return opened;
  const decoded = decodeReading(opened.value.plaintext);
  if (!decoded.ok) return decoded;
  const r = decoded.value;
  if (r.sensorId !== p.sensorId)
    return fail("device_mismatch", `payload names "${r.sensorId}" but was sealed for "${p.sensorId}"`);
  if (r.boot !== opened.value.boot || r.seq !== opened.value.counter)
    return fail("device_mismatch", "payload boot/seq differ from the envelope's nonce");
  return ok({ ...r, keyId: opened.value.keyId });
}

export type DecodeMode =
  | { kind: "plain" }
  | { kind: "encrypted"; aead: Aead; keyFor: (keyId: number, sensorId: string) => KeyLookup };

export function decodeTelemetryMessage(
  topic: string,
  payload: Uint8Array,
  mode: DecodeMode,
): DecodeResult<Reading> {
  const parsed = parseTopic(topic);
  if (!parsed || parsed.kind !== "telemetry")
    return fail("invalid_device_id", `"${topic}" is not a telemetry topic with a valid device id`);
  const sensorId = parsed.sensorId;
  if (mode.kind === "encrypted") {
    const r = openReading(mode.aead, (keyId) => mode.keyFor(keyId, sensorId), {
      topic,
      sensorId,
      bytes: payload,
    });
    if (!r.ok) return r;
    const { keyId: _keyId, ...reading } = r.value;
    return ok(reading);
  }
  const r = decodeReading(payload);
  if (!r.ok) return r;
  if (r.value.sensorId !== sensorId)
    return fail(
      "device_mismatch",
      `payload names "${r.value.sensorId}" but arrived on the topic of "${sensorId}"`,
    );
  return r;
}
