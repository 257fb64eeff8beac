// The board's down/trust handler (firmware/src/identity/trust-rotation.ts) with real certificates and keys:
// a good rotation is staged in the spare slot and asks for a reconnect; every bad, replayed or foreign
// message is refused with its own reason and writes nothing to NVS.
import { beforeAll, describe, expect, it } from "vitest";
import { nodeAead } from "../../../host/src/crypto/node-aead";
import { createCa, issue, type IssuedCert, type TestCa } from "../../../host/test/broker/helpers/test-pki";
import { sealEnvelope } from "../../src/envelope/envelope";
import { identityToEntries, PROV_NAMESPACE, type DeviceIdentity } from "../../src/identity/nvs-layout";
import { sealTrustMessage, type TrustRotation } from "../../src/identity/trust-message";
import { TrustRotationHandler } from "../../src/identity/trust-rotation";
import { keyMatchesCertificate } from "../../src/tls/key-match";
import { parseCertificate } from "../../src/tls/certificate";
import { MemoryPreference } from "../app/shims/memory-preference";
import { CapturingLog } from "../app/harness";

const ID = "elx-0042";
const TOPIC = `electrolyser/${ID}/down/trust`;
const KEY = new Uint8Array(32).fill(0x42);
const KEY_ID = 3;
const DAY = 86_400_000;
const pin = (b: number) => new Uint8Array(32).fill(b);
const der = (pem: string) =>
  new Uint8Array(Buffer.from(pem.replace(/-----[^-]+-----/g, "").replace(/\s+/g, ""), "base64"));

let ca: TestCa;
let current: IssuedCert;
let next: IssuedCert;
let nextRsa: IssuedCert;
let other: IssuedCert;
let caLeaf: Uint8Array;

beforeAll(async () => {
  ca = await createCa("Trust Test CA", "p256");
  [current, next, nextRsa, other] = await Promise.all([
    issue(ca, { cn: ID, kind: "p256", usage: "client" }),
    issue(ca, { cn: ID, kind: "p256", usage: "client" }),
    issue(ca, { cn: ID, kind: "rsa", usage: "client" }),
    issue(ca, { cn: "elx-0043", kind: "p256", usage: "client" }),
  ]);
  caLeaf = der(ca.certPem);
});

function board() {
  const identity: DeviceIdentity = {
    deviceId: ID,
    broker: "mqtts://broker.example.net:8883",
    brokerHost: "broker.example.net",
    port: 8883,
    intervalMs: 1000,
    tls: {
      caDer: caLeaf,
      certDer: der(current.certPem),
      keyDer: der(current.keyPem),
      brokerPins: [pin(0xa0)],
    },
    payload: { keyId: KEY_ID, key: KEY },
    wifi: null,
  };
  const store = new MemoryPreference();
  store.load(PROV_NAMESPACE, identityToEntries(identity));
  const log = new CapturingLog();
  const clock = { now: () => Date.now() };
  const handler = new TrustRotationHandler({
    store,
    aead: nodeAead,
    clock,
    log,
    deviceId: ID,
    payload: identity.payload!,
    base: identity.tls!,
  });
  return { store, log, handler, identity, writes: () => store.writes.length };
}

const rotationOf = (n: number, c: IssuedCert, o: Partial<TrustRotation> = {}): TrustRotation => ({
  rotation: n,
  certDer: der(c.certPem),
  keyDer: der(c.keyPem),
  brokerPins: [pin(0xb0), pin(0xb1)],
  ...o,
});

const seal = (
  r: TrustRotation,
  o: { key?: Uint8Array; keyId?: number; sensorId?: string; topic?: string } = {},
) =>
  sealTrustMessage(nodeAead, {
    key: o.key ?? KEY,
    keyId: o.keyId ?? KEY_ID,
    sensorId: o.sensorId ?? ID,
    topic: o.topic ?? TOPIC,
    rotation: r,
  });

describe("key and certificate belong together", () => {
  it("matches an RSA-2048 and a P-256 pair, and tells a foreign key apart", () => {
    for (const c of [nextRsa, next])
      expect(keyMatchesCertificate(parseCertificate(der(c.certPem)).spki, der(c.keyPem))).toBe("match");
    expect(keyMatchesCertificate(parseCertificate(der(next.certPem)).spki, der(current.keyPem))).toBe(
      "mismatch",
    );
    expect(keyMatchesCertificate(parseCertificate(der(next.certPem)).spki, der(nextRsa.keyPem))).toBe(
      "mismatch",
    );
  });
});

describe("TrustRotationHandler", () => {
  it("stages a good rotation (certificate, key and broker pins) in the spare slot and asks for a reconnect", () => {
    const b = board();
    const r = rotationOf(1, nextRsa);
    expect(b.handler.handle(seal(r))).toEqual({ ok: true, action: "reconnect", rotation: 1, slot: 1 });
    const tried = b.handler.connection();
    expect(tried).toMatchObject({ slot: 1, trying: true });
    expect(tried.tls.certDer).toEqual(r.certDer);
    expect(tried.tls.keyDer).toEqual(r.keyDer);
    expect(tried.tls.brokerPins).toEqual(r.brokerPins);
    expect(tried.tls.caDer).toEqual(caLeaf);
    expect(b.handler.connected()).toEqual({ committed: 1 });
    expect(b.handler.connection()).toMatchObject({ slot: 1, trying: false });
    // The retained copy comes back at every subscription: nothing to do, nothing written.
    const before = b.writes();
    expect(b.handler.handle(seal(r))).toEqual({ ok: true, action: "none", why: "already_staged" });
    expect(b.handler.handle(new Uint8Array(0))).toEqual({ ok: true, action: "none", why: "cleared" });
    expect(b.writes()).toBe(before);
    expect(b.handler.counts().get("staged")).toBe(1);
    // The secret key never reaches the console.
    expect(b.log.text()).not.toContain(Buffer.from(r.keyDer).toString("base64").slice(0, 40));
    expect(b.log.text()).toMatch(/rotation 1 staged in slot 1/);
  });

  it("refuses bad, foreign and misaddressed messages with a reason each, and writes nothing", () => {
    const b = board();
    const good = seal(rotationOf(5, next));
    const tampered = good.slice();
    tampered[60] = tampered[60]! ^ 1;
    const boardOwnEnvelope = sealEnvelope(nodeAead, KEY, {
      keyId: KEY_ID,
      boot: 9,
      counter: 0,
      topic: TOPIC,
      sensorId: ID,
      plaintext: new Uint8Array(64),
    });
    const cases: [string, Uint8Array, string][] = [
      ["tampered", tampered, "tag_mismatch"],
      ["for another board", seal(rotationOf(5, next), { sensorId: "elx-0043" }), "tag_mismatch"],
      [
        "another board's topic",
        seal(rotationOf(5, next), { topic: "electrolyser/elx-0043/down/trust" }),
        "tag_mismatch",
      ],
      ["under another key", seal(rotationOf(5, next), { key: new Uint8Array(32).fill(7) }), "tag_mismatch"],
      ["another key id", seal(rotationOf(5, next), { keyId: 4 }), "wrong_key_id"],
      ["a board's nonce", boardOwnEnvelope, "not_a_trust_nonce"],
      ["truncated", good.subarray(0, 20), "truncated"],
      ["unknown version", Uint8Array.of(9, ...good.subarray(1)), "unknown_version"],
      ["another subject", seal(rotationOf(5, other)), "wrong_subject"],
      [
        "a key that is not the certificate's",
        seal(rotationOf(5, next, { keyDer: der(current.keyPem) })),
        "key_mismatch",
      ],
      ["a CA certificate", seal(rotationOf(5, next, { certDer: caLeaf })), "certificate_is_ca"],
      [
        "not a certificate",
        seal(rotationOf(5, next, { certDer: Uint8Array.of(0x30, 0x03, 1, 2, 3) })),
        "certificate_malformed",
      ],
    ];
    for (const [what, bytes, error] of cases) {
      const out = b.handler.handle(bytes);
      expect({ what, error: out.ok ? "accepted" : out.error }).toEqual({ what, error });
    }
    expect(b.writes()).toBe(0);
    expect(b.handler.connection()).toMatchObject({ slot: 0, trying: false });
    expect(b.handler.counts().get("tag_mismatch")).toBe(4);
    expect(b.log.lines.filter((l) => l.startsWith("W trust: message refused"))).toHaveLength(cases.length);
  });

  it("refuses a certificate outside its dates (board clock), allowing a few minutes of lag", async () => {
    const b = board();
    const [expired, future, justIssued] = await Promise.all([
      issue(ca, {
        cn: ID,
        kind: "p256",
        usage: "client",
        notBefore: new Date(Date.now() - 9 * DAY),
        notAfter: new Date(Date.now() - DAY),
      }),
      issue(ca, {
        cn: ID,
        kind: "p256",
        usage: "client",
        notBefore: new Date(Date.now() + DAY),
        notAfter: new Date(Date.now() + 9 * DAY),
      }),
      issue(ca, {
        cn: ID,
        kind: "p256",
        usage: "client",
        notBefore: new Date(Date.now() + 60_000),
        notAfter: new Date(Date.now() + 9 * DAY),
      }),
    ]);
    expect(b.handler.handle(seal(rotationOf(1, expired!)))).toMatchObject({ ok: false, error: "expired" });
    expect(b.handler.handle(seal(rotationOf(1, future!)))).toMatchObject({
      ok: false,
      error: "not_yet_valid",
    });
    expect(b.writes()).toBe(0);
    expect(b.handler.handle(seal(rotationOf(1, justIssued!)))).toMatchObject({
      ok: true,
      action: "reconnect",
    });
  });

  it("refuses a replayed older rotation and a second one while the first is being tried", () => {
    const b = board();
    expect(b.handler.handle(seal(rotationOf(3, next)))).toMatchObject({ ok: true, slot: 1 });
    let writes = b.writes();
    expect(b.handler.handle(seal(rotationOf(4, nextRsa)))).toMatchObject({
      ok: false,
      error: "rotation_in_progress",
    });
    expect(b.writes()).toBe(writes);
    b.handler.connected();
    writes = b.writes();
    for (const n of [1, 2])
      expect(b.handler.handle(seal(rotationOf(n, nextRsa)))).toMatchObject({
        ok: false,
        error: "stale_rotation",
      });
    // Rotation 3 again but with other content: the host never seals two messages under one rotation number.
    expect(b.handler.handle(seal(rotationOf(3, nextRsa)))).toMatchObject({
      ok: false,
      error: "stale_rotation",
    });
    expect(b.writes()).toBe(writes);
    // The next rotation goes into slot 0, leaving slot 1 (in use) untouched until it has connected.
    expect(b.handler.handle(seal(rotationOf(4, nextRsa)))).toMatchObject({ ok: true, slot: 0 });
    expect(b.handler.connection().tls.certDer).toEqual(der(nextRsa.certPem));
  });

  it("falls back to the old identity when the new one never connects", () => {
    const b = board();
    b.handler.handle(seal(rotationOf(1, next)));
    for (let i = 0; i < 2; i++) expect(b.handler.failed()).toEqual({ fellBack: false });
    expect(b.handler.failed()).toEqual({ fellBack: true });
    expect(b.handler.connection()).toMatchObject({ slot: 0, trying: false, tls: b.identity.tls });
    expect(b.log.text()).toMatch(/rotation 1 never connected; back to slot 0/);
  });

  it("a full NVS is a refusal that leaves the identity in use", () => {
    const b = board();
    b.store.failWrites = true;
    expect(b.handler.handle(seal(rotationOf(1, next)))).toMatchObject({ ok: false, error: "write_failed" });
    b.store.failWrites = false;
    expect(b.handler.connection()).toMatchObject({ slot: 0, trying: false, tls: b.identity.tls });
  });
});

describe("the payload key a rotation carries", () => {
  const NEW_KEY = new Uint8Array(32).fill(0x77);
  const NEW_KEY_ID = 9;
  const withKey = (n: number, c: IssuedCert, keyId = NEW_KEY_ID, key = NEW_KEY) =>
    rotationOf(n, c, { payloadKey: { keyId, key } });
  const sealing = (h: TrustRotationHandler) => {
    const m = h.payloadMode();
    if (m.kind !== "encrypted") throw new Error("a rotating board seals");
    return { keyId: m.keyId, key: Array.from(m.key) };
  };
  const OLD = { keyId: KEY_ID, key: Array.from(KEY) };
  const NEW = { keyId: NEW_KEY_ID, key: Array.from(NEW_KEY) };

  it("seals under the old key until the new slot is committed, under the new one after (and after a reboot)", () => {
    const b = board();
    expect(sealing(b.handler)).toEqual(OLD);
    expect(b.handler.handle(seal(withKey(1, next)))).toMatchObject({
      ok: true,
      action: "reconnect",
      slot: 1,
    });
    expect(sealing(b.handler)).toEqual(OLD); // staged: being tried, not in use
    expect(b.handler.failed()).toEqual({ fellBack: false });
    expect(sealing(b.handler)).toEqual(OLD); // a failed try changes nothing
    expect(b.handler.connected()).toEqual({ committed: 1 });
    expect(sealing(b.handler)).toEqual(NEW);
    expect(b.log.text()).toMatch(/sealing under payload key 9/);
    expect(b.log.text()).not.toContain(Buffer.from(NEW_KEY).toString("hex"));
    // A reboot reads the slot in use from NVS: still the new key.
    const rebooted = new TrustRotationHandler({
      store: b.store,
      aead: nodeAead,
      clock: { now: () => Date.now() },
      log: b.log,
      deviceId: ID,
      payload: b.identity.payload!,
      base: b.identity.tls!,
    });
    expect(sealing(rebooted)).toEqual(NEW);
  });

  it("opens trust messages under the key in use; under the replaced key only the rotation's own redelivery", () => {
    const b = board();
    b.handler.handle(seal(withKey(1, next)));
    b.handler.connected();
    // The retained copy was sealed under the key the rotation replaced: recognised, nothing written.
    const writes = b.writes();
    expect(b.handler.handle(seal(withKey(1, next)))).toEqual({
      ok: true,
      action: "none",
      why: "already_staged",
    });
    // A new rotation under the replaced key is not accepted (the host seals the next one under the new key).
    expect(b.handler.handle(seal(withKey(2, nextRsa, 10)))).toMatchObject({
      ok: false,
      error: "wrong_key_id",
    });
    expect(b.writes()).toBe(writes);
    const third = new Uint8Array(32).fill(0x33);
    expect(
      b.handler.handle(seal(withKey(2, nextRsa, 10, third), { key: NEW_KEY, keyId: NEW_KEY_ID })),
    ).toMatchObject({ ok: true, action: "reconnect", slot: 0 });
    expect(sealing(b.handler)).toEqual(NEW);
    b.handler.connected();
    expect(sealing(b.handler)).toEqual({ keyId: 10, key: Array.from(third) });
  });

  it("falls back to the old key with the old slot: the new key never sealed anything", () => {
    const b = board();
    b.handler.handle(seal(withKey(1, next)));
    for (let i = 0; i < 3; i++) b.handler.failed();
    expect(b.handler.connection()).toMatchObject({ slot: 0, trying: false });
    expect(sealing(b.handler)).toEqual(OLD);
    b.handler.connected(); // a later CONNACK with the old slot commits nothing
    expect(sealing(b.handler)).toEqual(OLD);
  });

  it("refuses a new payload key with the key id in use, and carries the key over when a rotation has none", () => {
    const b = board();
    expect(b.handler.handle(seal(withKey(1, next, KEY_ID)))).toMatchObject({
      ok: false,
      error: "payload_key_id_in_use",
    });
    expect(b.writes()).toBe(0);
    expect(b.handler.handle(seal(rotationOf(1, next)))).toMatchObject({ ok: true, slot: 1 });
    b.handler.connected();
    expect(sealing(b.handler)).toEqual(OLD);
  });
});
