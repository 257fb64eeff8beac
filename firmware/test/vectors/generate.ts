// Regenerates envelope-vectors.json (`npx tsx firmware/test/vectors/generate.ts`).
// The file is the contract: the tests check it against node:crypto and WebCrypto, and the
// firmware's Moddable AES-GCM adapter is checked against the same file on XS.
import { writeFileSync } from "node:fs";
import { createHash } from "node:crypto";
import { sealEnvelope } from "../../src/envelope/envelope";
import { encodeReading } from "../../src/payload/codec";
import { telemetryTopic } from "../../src/telemetry/topics";
import { nodeAead } from "../../../host/src/crypto/node-aead";
import { deriveDeviceKey } from "../../../host/src/crypto/device-keys";

const hex = (b: Uint8Array): string => Buffer.from(b).toString("hex");
// Deterministic, obviously-test key material: SHA-256 of a label.
const testBytes = (label: string): Uint8Array => new Uint8Array(createHash("sha256").update(label).digest());

const master = testBytes("est test vector payload master 0");
const cases = [
  { sensorId: "elx-site1-0001", keyId: 0, boot: 1, counter: 0, plaintext: "{}" },
  { sensorId: "elx-site1-0001", keyId: 0, boot: 7, counter: 41, plaintext: "" },
  { sensorId: "stack_B.12", keyId: 3, boot: 0x7fffffff, counter: Number.MAX_SAFE_INTEGER, plaintext: "x" },
  { sensorId: "a", keyId: 255, boot: 0, counter: 0x1_0000_0001, plaintext: "" },
];
const reading = encodeReading({
  sensorId: "elx-site1-0001",
  seq: 41,
  ts: 1_764_000_000_123,
  boot: 7,
  fw: "0.1.0",
  values: {
    temperature_c: 64.25,
    pressure_bar: 29.875,
    h2_flow_sccm: 41230.5,
    purity_pct: 99.9912,
    voltage_v: 182.402,
    current_a: 512.125,
  },
  faults: [],
});
cases[1]!.plaintext = Buffer.from(reading).toString("utf8");
cases[3]!.plaintext = "purity alarm ☢ non-ASCII ü";

const vectors = cases.map((c) => {
  const key = deriveDeviceKey(master, c.sensorId);
  const topic = telemetryTopic(c.sensorId);
  const plaintext = new Uint8Array(Buffer.from(c.plaintext, "utf8"));
  const envelope = sealEnvelope(nodeAead, key, { ...c, topic, plaintext });
  return {
    sensorId: c.sensorId,
    topic,
    keyId: c.keyId,
    boot: c.boot,
    counter: String(c.counter),
    deviceKey: hex(key),
    nonce: hex(envelope.subarray(2, 14)),
    plaintext: hex(plaintext),
    envelope: hex(envelope),
  };
});

writeFileSync(
  new URL("./envelope-vectors.json", import.meta.url),
  JSON.stringify(
    {
      description:
        "AES-256-GCM envelope known answers. deviceKey = HKDF-SHA256(ikm=payloadMaster, salt='electrolyser-telemetry/payload-key/v1', info=sensorId, L=32). " +
        "envelope = 01 | keyId u8 | boot u32be | counter u64be | AES-256-GCM(key=deviceKey, nonce=envelope[2..14], aad=envelope[0..14] || sensorId || 00 || topic, plaintext) || tag16. " +
        "All byte strings are hex; counter is a decimal string (it may exceed 2^32).",
      payloadMaster: hex(master),
      vectors,
    },
    null,
    2,
  ) + "\n",
);
console.log(`wrote ${vectors.length} vectors`);
