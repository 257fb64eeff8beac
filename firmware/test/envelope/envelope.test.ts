import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { readFileSync } from "node:fs";
import { webcrypto } from "node:crypto";
import { ENVELOPE_OVERHEAD_BYTES, openEnvelope, sealEnvelope } from "../../src/envelope/envelope";
import { encodeReading } from "../../src/payload/codec";
import { openReading } from "../../src/payload/telemetry-message";
import { telemetryTopic } from "../../src/telemetry/topics";
import { nodeAead } from "../../../host/src/crypto/node-aead";
import { deriveDeviceKey, PAYLOAD_KEY_SALT } from "../../../host/src/crypto/device-keys";
import { sampleReading } from "../payload/sample-reading";

interface Vector {
  sensorId: string;
  topic: string;
  keyId: number;
  boot: number;
  counter: string;
  deviceKey: string;
  nonce: string;
  plaintext: string;
  envelope: string;
}
const file = JSON.parse(
  readFileSync(new URL("../vectors/envelope-vectors.json", import.meta.url), "utf8"),
) as {
  payloadMaster: string;
  vectors: Vector[];
};
const h = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, "hex"));
const subtle = webcrypto.subtle;

// An implementation written from the README's wire description alone, on WebCrypto:
// independent of envelope.ts and of node:crypto's cipher API.
async function webcryptoSeal(v: Vector): Promise<Uint8Array> {
  const header = new Uint8Array(14);
  header[0] = 1;
  header[1] = v.keyId;
  new DataView(header.buffer).setUint32(2, v.boot);
  new DataView(header.buffer).setBigUint64(6, BigInt(v.counter));
  const aad = Buffer.concat([header, Buffer.from(v.sensorId), Buffer.from([0]), Buffer.from(v.topic)]);
  const key = await subtle.importKey("raw", h(v.deviceKey), "AES-GCM", false, ["encrypt"]);
  const ct = new Uint8Array(
    await subtle.encrypt(
      { name: "AES-GCM", iv: header.subarray(2), additionalData: aad, tagLength: 128 },
      key,
      h(v.plaintext),
    ),
  );
  return new Uint8Array(Buffer.concat([header, ct]));
}

async function webcryptoHkdf(master: Uint8Array, sensorId: string): Promise<Uint8Array> {
  const ikm = await subtle.importKey("raw", master, "HKDF", false, ["deriveBits"]);
  const bits = await subtle.deriveBits(
    { name: "HKDF", hash: "SHA-256", salt: Buffer.from(PAYLOAD_KEY_SALT), info: Buffer.from(sensorId) },
    ikm,
    256,
  );
  return new Uint8Array(bits);
}

describe("envelope known-answer vectors", () => {
  it("has vectors", () => expect(file.vectors.length).toBeGreaterThanOrEqual(4));

  it.each(file.vectors.map((v, i) => [i, v] as const))(
    "vector %i matches node:crypto and WebCrypto",
    async (_i, v) => {
      const master = h(file.payloadMaster);
      expect(Buffer.from(deriveDeviceKey(master, v.sensorId)).toString("hex")).toBe(v.deviceKey);
      expect(Buffer.from(await webcryptoHkdf(master, v.sensorId)).toString("hex")).toBe(v.deviceKey);

      const sealed = sealEnvelope(nodeAead, h(v.deviceKey), {
        keyId: v.keyId,
        boot: v.boot,
        counter: Number(v.counter),
        topic: v.topic,
        sensorId: v.sensorId,
        plaintext: h(v.plaintext),
      });
      expect(Buffer.from(sealed).toString("hex")).toBe(v.envelope);
      expect(Buffer.from(await webcryptoSeal(v)).toString("hex")).toBe(v.envelope);
      expect(Buffer.from(sealed.subarray(2, 14)).toString("hex")).toBe(v.nonce);

      const opened = openEnvelope(nodeAead, (id) => (id === v.keyId ? h(v.deviceKey) : undefined), {
        topic: v.topic,
        sensorId: v.sensorId,
        bytes: h(v.envelope),
      });
      expect(opened.ok && Buffer.from(opened.value.plaintext).toString("hex")).toBe(v.plaintext);
    },
  );
});

describe("envelope security properties", () => {
  const key = deriveDeviceKey(new Uint8Array(32).fill(7), "elx-site1-0001");
  const r = sampleReading();
  const topic = telemetryTopic(r.sensorId);
  const sealed = sealEnvelope(nodeAead, key, {
    keyId: 1,
    boot: r.boot,
    counter: r.seq,
    topic,
    sensorId: r.sensorId,
    plaintext: encodeReading(r),
  });
  const keyFor = (id: number): Uint8Array | undefined => (id === 1 ? key : undefined);

  it("costs a fixed 30 bytes over the plain JSON", () => {
    expect(ENVELOPE_OVERHEAD_BYTES).toBe(30);
    expect(sealed.length - encodeReading(r).length).toBe(30);
  });

  it("opens to the same reading", () => {
    const out = openReading(nodeAead, keyFor, { topic, sensorId: r.sensorId, bytes: sealed });
    expect(out.ok && out.value.values).toEqual(r.values);
  });

  it("rejects any single-bit change", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: sealed.length * 8 - 1 }), (bit) => {
        const bad = sealed.slice();
        bad[bit >> 3] = bad[bit >> 3]! ^ (1 << (bit & 7));
        const out = openReading(nodeAead, keyFor, { topic, sensorId: r.sensorId, bytes: bad });
        expect(out.ok).toBe(false);
        if (!out.ok)
          expect(["tag_mismatch", "unknown_version", "unknown_key_id", "out_of_range"]).toContain(
            out.error.code,
          );
      }),
      { numRuns: sealed.length * 8 },
    );
  });

  it("rejects a wrong key, another device's topic, truncation and an unknown key id", () => {
    const other = deriveDeviceKey(new Uint8Array(32).fill(8), "elx-site1-0001");
    const wrongKey = openEnvelope(nodeAead, () => other, { topic, sensorId: r.sensorId, bytes: sealed });
    expect(!wrongKey.ok && wrongKey.error.code).toBe("tag_mismatch");
    const moved = openEnvelope(nodeAead, keyFor, {
      topic: telemetryTopic("elx-site1-0002"),
      sensorId: "elx-site1-0002",
      bytes: sealed,
    });
    expect(!moved.ok && moved.error.code).toBe("tag_mismatch");
    const short = openEnvelope(nodeAead, keyFor, {
      topic,
      sensorId: r.sensorId,
      bytes: sealed.subarray(0, 29),
    });
    expect(!short.ok && short.error.code).toBe("truncated");
    const unknown = openEnvelope(nodeAead, () => undefined, { topic, sensorId: r.sensorId, bytes: sealed });
    expect(!unknown.ok && unknown.error.code).toBe("unknown_key_id");
  });

  it("binds the reading's boot and seq to the nonce", () => {
    const lying = sealEnvelope(nodeAead, key, {
      keyId: 1,
      boot: r.boot,
      counter: r.seq + 1,
      topic,
      sensorId: r.sensorId,
      plaintext: encodeReading(r),
    });
    const out = openReading(nodeAead, keyFor, { topic, sensorId: r.sensorId, bytes: lying });
    expect(!out.ok && out.error.code).toBe("device_mismatch");
  });

  it("never throws on arbitrary bytes", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 1200 }), (bytes) => {
        const out = openReading(nodeAead, keyFor, { topic, sensorId: r.sensorId, bytes });
        expect(out.ok).toBe(false);
      }),
      { numRuns: 2000 },
    );
  });
});
