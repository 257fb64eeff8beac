// The pieces of certificate rotation over the downlink (README, Trust): the sealed trust message (with the new
// payload key it may carry) and the two NVS identity slots with fallback.
import { describe, expect, it } from "vitest";
import { nodeAead } from "../../../host/src/crypto/node-aead";
import { sealEnvelope } from "../../src/envelope/envelope";
import { identityToEntries, PROV_NAMESPACE, type DeviceIdentity } from "../../src/identity/nvs-layout";
import { openTrustMessage, sealTrustMessage, type TrustRotation } from "../../src/identity/trust-message";
import { TrustSlots } from "../../src/identity/trust-slots";
import { MemoryPreference } from "../app/shims/memory-preference";

const ID = "elx-0042";
const TOPIC = `electrolyser/${ID}/down/trust`;
const KEY = new Uint8Array(32).fill(0x42);
const der = (tag: number, n: number) => Uint8Array.from({ length: n }, (_, i) => (i === 0 ? 0x30 : tag));
const pin = (b: number) => new Uint8Array(32).fill(b);

const provisioned: DeviceIdentity = {
  deviceId: ID,
  broker: "mqtts://broker.example.net:8883",
  brokerHost: "broker.example.net",
  port: 8883,
  intervalMs: 1000,
  tls: { caDer: der(1, 40), certDer: der(2, 50), keyDer: der(3, 60), brokerPins: [pin(0xa0), pin(0xa1)] },
  payload: { keyId: 3, key: KEY },
  wifi: null,
};

const rotation = (n: number, fill: number): TrustRotation => ({
  rotation: n,
  certDer: der(fill, 70),
  keyDer: der(fill + 1, 80),
  brokerPins: [pin(fill), pin(fill + 1)],
});

const seal = (r: TrustRotation, o: { keyId?: number; topic?: string } = {}) =>
  sealTrustMessage(nodeAead, {
    key: KEY,
    keyId: o.keyId ?? 3,
    sensorId: ID,
    topic: o.topic ?? TOPIC,
    rotation: r,
  });
const open = (bytes: Uint8Array) =>
  openTrustMessage(nodeAead, { key: KEY, keyId: 3, sensorId: ID, topic: TOPIC, bytes });

describe("the sealed trust message", () => {
  it("round-trips, and refuses anything tampered, misaddressed or not from the host", () => {
    const r = rotation(7, 0x10);
    expect(open(seal(r))).toEqual({ ok: true, value: { kind: "identity", ...r } });
    const tampered = seal(r);
    tampered[40] = tampered[40]! ^ 1;
    expect(open(tampered)).toEqual({ ok: false, error: "tag_mismatch" });
    expect(open(seal(r, { topic: "electrolyser/elx-0043/down/trust" }))).toEqual({
      ok: false,
      error: "tag_mismatch",
    });
    expect(open(seal(r, { keyId: 4 }))).toEqual({ ok: false, error: "wrong_key_id" });
    expect(open(seal(r).subarray(0, 20))).toEqual({ ok: false, error: "truncated" });
    // A board's own envelope under the same key: its nonce space (boot < 2^31) is never the host's.
    const boardEnvelope = sealEnvelope(nodeAead, KEY, {
      keyId: 3,
      boot: 7,
      counter: 0,
      topic: TOPIC,
      sensorId: ID,
      plaintext: new Uint8Array(40),
    });
    expect(open(boardEnvelope)).toEqual({ ok: false, error: "not_a_trust_nonce" });
  });

  it("carries a new payload key (body version 2), and version 1 bodies still open without one", () => {
    const r = { ...rotation(8, 0x10), payloadKey: { keyId: 200, key: new Uint8Array(32).fill(0x99) } };
    const opened = open(seal(r));
    expect(opened).toEqual({ ok: true, value: { kind: "identity", ...r } });
    expect(open(seal(rotation(8, 0x10)))).toEqual({
      ok: true,
      value: { kind: "identity", ...rotation(8, 0x10) },
    });
    expect(() => seal({ ...r, payloadKey: { keyId: 1, key: new Uint8Array(16) } })).toThrow(RangeError);
  });
});

describe("two identity slots", () => {
  const board = () => {
    const store = new MemoryPreference();
    store.load(PROV_NAMESPACE, identityToEntries(provisioned));
    return { store, slots: new TrustSlots({ store, maxTries: 3 }) };
  };

  it("tries the new slot, makes it the one in use only once it has connected, and refuses a replay", () => {
    const { slots } = board();
    expect(slots.current(provisioned.tls!)).toMatchObject({ slot: 0, trying: false, tls: provisioned.tls });
    expect(slots.stage(rotation(1, 0x20), provisioned.payload!)).toEqual({ ok: true, slot: 1 });
    const tried = slots.current(provisioned.tls!);
    expect(tried).toMatchObject({ slot: 1, trying: true });
    expect(tried.tls.certDer).toEqual(rotation(1, 0x20).certDer);
    expect(tried.tls.brokerPins).toEqual(rotation(1, 0x20).brokerPins);
    expect(tried.tls.caDer).toEqual(provisioned.tls!.caDer);
    expect(slots.stage(rotation(2, 0x30), provisioned.payload!)).toEqual({
      ok: false,
      reason: "rotation_in_progress",
    });
    expect(slots.connected()).toEqual({ committed: 1 });
    expect(slots.current(provisioned.tls!)).toMatchObject({ slot: 1, trying: false });
    expect(slots.stage(rotation(1, 0x20), provisioned.payload!)).toEqual({
      ok: false,
      reason: "stale_rotation",
    });
    // The next rotation goes into slot 0 (the provisioned keys), leaving slot 1 in use until it connects.
    expect(slots.stage(rotation(2, 0x30), provisioned.payload!)).toEqual({ ok: true, slot: 0 });
    expect(slots.current(provisioned.tls!).tls.certDer).toEqual(rotation(2, 0x30).certDer);
  });

  it("falls back to the untouched old slot after failed connections with the new one", () => {
    const { slots } = board();
    slots.stage(rotation(1, 0x20), provisioned.payload!);
    expect(slots.failed()).toEqual({ fellBack: false });
    expect(slots.failed()).toEqual({ fellBack: false });
    expect(slots.current(provisioned.tls!).trying).toBe(true);
    expect(slots.failed()).toEqual({ fellBack: true });
    expect(slots.current(provisioned.tls!)).toMatchObject({ slot: 0, trying: false, tls: provisioned.tls });
    expect(slots.connected()).toEqual({ committed: null });
  });

  it("a failed write (full NVS) or a board reset before the slot is marked leaves the old identity in use", () => {
    const { store, slots } = board();
    store.failWrites = true;
    expect(slots.stage(rotation(1, 0x20), provisioned.payload!)).toEqual({
      ok: false,
      reason: "write_failed",
    });
    store.failWrites = false;
    expect(slots.current(provisioned.tls!)).toMatchObject({ slot: 0, trying: false });
    // A reset after the slot was marked but with its key missing (torn write): back to the slot in use.
    slots.stage(rotation(2, 0x30), provisioned.payload!);
    store.delete(PROV_NAMESPACE, "key_der_b");
    expect(slots.current(provisioned.tls!)).toMatchObject({ slot: 0, trying: false, tls: provisioned.tls });
    expect(new TrustSlots({ store }).trying()).toBeNull();
  });
});
