// The board's side of a rotation whose key is made on the board (firmware/src/identity/trust-rotation.ts with
// a KeyMaker): a key request makes one key, stored in NVS before its sealed CSR is handed out; asked again, the
// same answer; the certificate that follows alone is staged with that key, after the usual checks, and a
// certificate for any other key, rotation or board is refused. The KeyMaker here hands out real key pairs
// issued by a test CA (the CSR's contents are the host's to check: pki/test/csr.test.ts).
import { beforeAll, describe, expect, it } from "vitest";
import { nodeAead } from "../../../host/src/crypto/node-aead";
import { createCa, issue, type IssuedCert, type TestCa } from "../../../host/test/broker/helpers/test-pki";
import type { KeyMaker, KeyMakerRequest } from "../../src/identity/key-maker";
import { openKeyAnswer, sealKeyAnswer } from "../../src/identity/key-request-message";
import {
  identityToEntries,
  PROV_NAMESPACE,
  TRUST_SLOT_KEYS,
  type DeviceIdentity,
} from "../../src/identity/nvs-layout";
import {
  openTrustMessage,
  sealCertificateForKey,
  sealKeyRequest,
  type CertificateForKey,
} from "../../src/identity/trust-message";
import { TrustRotationHandler } from "../../src/identity/trust-rotation";
import { MemoryPreference } from "../app/shims/memory-preference";
import { CapturingLog } from "../app/harness";

const ID = "elx-0042";
const TOPIC = `electrolyser/${ID}/down/trust`;
const ANSWER_TOPIC = `electrolyser/${ID}/csr`;
const KEY = new Uint8Array(32).fill(0x42);
const KEY_ID = 3;
const SUBJECT = `O=Electrolyser Secure Telemetry,OU=devices,CN=${ID}`;
const pin = (b: number) => new Uint8Array(32).fill(b);
const der = (pem: string) =>
  new Uint8Array(Buffer.from(pem.replace(/-----[^-]+-----/g, "").replace(/\s+/g, ""), "base64"));
const newPayloadKey = { keyId: 9, key: new Uint8Array(32).fill(0x99) };

let ca: TestCa;
let current: IssuedCert;
let made: IssuedCert;
let another: IssuedCert;

beforeAll(async () => {
  ca = await createCa("Board Key Test CA", "p256");
  [current, made, another] = await Promise.all([
    issue(ca, { cn: ID, kind: "p256", usage: "client" }),
    issue(ca, { cn: ID, kind: "rsa", usage: "client" }),
    issue(ca, { cn: ID, kind: "rsa", usage: "client" }),
  ]);
});

/** A KeyMaker that hands out `made`'s key (a fresh copy each call) with a recognisable "CSR". */
function keyMaker(
  o: { fail?: boolean } = {},
): KeyMaker & { calls: KeyMakerRequest[]; handedOut: ArrayBuffer[] } {
  const calls: KeyMakerRequest[] = [];
  const handedOut: ArrayBuffer[] = [];
  return {
    calls,
    handedOut,
    generate(request) {
      calls.push(request);
      if (o.fail) throw new Error("mbedtls_rsa_gen_key: -0x4200");
      const keyDer = der(made.keyPem).slice().buffer;
      handedOut.push(keyDer);
      return { keyDer, csrDer: Uint8Array.of(0x30, 0x82, 0x01, 0x00, 7, 7, 7).buffer };
    },
  };
}

function board(keys?: KeyMaker, store = new MemoryPreference()) {
  const identity: DeviceIdentity = {
    deviceId: ID,
    broker: "mqtts://broker.example.net:8883",
    brokerHost: "broker.example.net",
    port: 8883,
    intervalMs: 1000,
    tls: {
      caDer: der(ca.certPem),
      certDer: der(current.certPem),
      keyDer: der(current.keyPem),
      brokerPins: [pin(0xa0)],
    },
    payload: { keyId: KEY_ID, key: KEY },
    wifi: null,
  };
  if (store.writes.length === 0) store.load(PROV_NAMESPACE, identityToEntries(identity));
  const log = new CapturingLog();
  const handler = new TrustRotationHandler({
    store,
    aead: nodeAead,
    clock: { now: () => Date.now() },
    log,
    deviceId: ID,
    payload: identity.payload!,
    base: identity.tls!,
    ...(keys ? { keys } : {}),
  });
  return { store, log, handler, writes: () => store.writes.length };
}

const request = (rotation: number, o: { key?: Uint8Array; topic?: string } = {}) =>
  sealKeyRequest(nodeAead, {
    key: o.key ?? KEY,
    keyId: KEY_ID,
    sensorId: ID,
    topic: o.topic ?? TOPIC,
    request: { rotation, bits: 2048, subject: SUBJECT },
  });

const certificate = (rotation: number, c: IssuedCert, o: Partial<CertificateForKey> = {}) =>
  sealCertificateForKey(nodeAead, {
    key: KEY,
    keyId: KEY_ID,
    sensorId: ID,
    topic: TOPIC,
    certificate: {
      rotation,
      certDer: der(c.certPem),
      brokerPins: [pin(0xb0)],
      payloadKey: newPayloadKey,
      ...o,
    },
  });

const nvs = (b: { store: MemoryPreference }, key: string) => b.store.get(PROV_NAMESPACE, key);

describe("the key request and answer messages", () => {
  it("round-trip, and each has a nonce of its own: a request, its certificate and the board's answer never share one", () => {
    const req = request(4);
    const cert = certificate(4, made);
    const open = (bytes: Uint8Array) =>
      openTrustMessage(nodeAead, { key: KEY, keyId: KEY_ID, sensorId: ID, topic: TOPIC, bytes });
    expect(open(req)).toEqual({
      ok: true,
      value: { kind: "key_request", rotation: 4, bits: 2048, subject: SUBJECT },
    });
    expect(open(cert)).toMatchObject({
      ok: true,
      value: { kind: "certificate", rotation: 4, payloadKey: newPayloadKey },
    });
    const answer = sealKeyAnswer(nodeAead, {
      key: KEY,
      keyId: KEY_ID,
      sensorId: ID,
      topic: ANSWER_TOPIC,
      answer: { rotation: 4, csrDer: Uint8Array.of(0x30, 1, 2) },
    });
    const nonces = [req, cert, answer].map((m) => Buffer.from(m.subarray(2, 14)).toString("hex"));
    expect(new Set(nonces).size).toBe(3);
    // Neither side opens the other's: the board never takes its own answer for a trust message, nor the host
    // a trust message for an answer.
    expect(open(answer)).toEqual({ ok: false, error: "not_a_trust_nonce" });
    const openAnswer = (bytes: Uint8Array, topic = ANSWER_TOPIC) =>
      openKeyAnswer(nodeAead, { key: KEY, keyId: KEY_ID, sensorId: ID, topic, bytes });
    expect(openAnswer(req)).toEqual({ ok: false, error: "not_an_answer_nonce" });
    expect(openAnswer(answer)).toEqual({
      ok: true,
      value: { rotation: 4, csrDer: Uint8Array.of(0x30, 1, 2) },
    });
    expect(openAnswer(answer, `electrolyser/elx-0043/csr`)).toEqual({ ok: false, error: "tag_mismatch" });
    const tampered = answer.slice();
    tampered[20] = tampered[20]! ^ 1;
    expect(openAnswer(tampered)).toEqual({ ok: false, error: "tag_mismatch" });
  });
});

describe("TrustRotationHandler with a KeyMaker", () => {
  it("makes one key per request, stores it before answering, and answers a repeated request with the same bytes", () => {
    const keys = keyMaker();
    const b = board(keys);
    const out = b.handler.handle(request(1));
    expect(out).toMatchObject({ ok: true, action: "publish", topic: ANSWER_TOPIC, rotation: 1 });
    if (!out.ok || out.action !== "publish") throw new Error("expected an answer");
    expect(keys.calls).toEqual([{ subject: SUBJECT, bits: 2048 }]);
    const opened = openKeyAnswer(nodeAead, {
      key: KEY,
      keyId: KEY_ID,
      sensorId: ID,
      topic: ANSWER_TOPIC,
      bytes: out.payload,
    });
    expect(opened).toEqual({
      ok: true,
      value: { rotation: 1, csrDer: Uint8Array.of(0x30, 0x82, 0x01, 0x00, 7, 7, 7) },
    });
    // The key is in NVS (and only there: the buffer the KeyMaker returned was wiped), never in the answer.
    expect(new Uint8Array(nvs(b, TRUST_SLOT_KEYS.requestKey.key) as ArrayBuffer)).toEqual(der(made.keyPem));
    expect(new Uint8Array(keys.handedOut[0]!).every((x) => x === 0)).toBe(true);
    expect(nvs(b, TRUST_SLOT_KEYS.requestRotation.key)).toBe(1);
    const keyHex = Buffer.from(der(made.keyPem)).toString("hex");
    expect(Buffer.from(out.payload).toString("hex")).not.toContain(keyHex.slice(0, 64));
    expect(b.log.text()).not.toContain(Buffer.from(der(made.keyPem)).toString("base64").slice(0, 40));
    // The retained request again (at the next subscription): the same answer, no second key.
    const again = b.handler.handle(request(1));
    expect(again).toEqual(out);
    expect(keys.calls).toHaveLength(1);
    // Nothing staged yet: the board keeps connecting with the identity it has.
    expect(b.handler.connection()).toMatchObject({ slot: 0, trying: false });
  });

  it("stages the certificate that follows with the key it made, and forgets the request", () => {
    const b = board(keyMaker());
    b.handler.handle(request(1));
    expect(b.handler.handle(certificate(1, made))).toEqual({
      ok: true,
      action: "reconnect",
      rotation: 1,
      slot: 1,
    });
    const tried = b.handler.connection();
    expect(tried).toMatchObject({ slot: 1, trying: true });
    expect(tried.tls.certDer).toEqual(der(made.certPem));
    expect(tried.tls.keyDer).toEqual(der(made.keyPem));
    expect(tried.tls.brokerPins).toEqual([pin(0xb0)]);
    expect(nvs(b, TRUST_SLOT_KEYS.requestKey.key)).toBeUndefined();
    expect(nvs(b, TRUST_SLOT_KEYS.requestCsr.key)).toBeUndefined();
    expect(nvs(b, TRUST_SLOT_KEYS.requestRotation.key)).toBe(0);
    expect(b.handler.connected()).toEqual({ committed: 1 });
    expect(b.handler.payloadMode()).toMatchObject({ keyId: newPayloadKey.keyId });
    // Its retained copy, now under the replaced payload key: recognised, nothing written.
    const before = b.writes();
    expect(b.handler.handle(certificate(1, made))).toEqual({
      ok: true,
      action: "none",
      why: "already_staged",
    });
    expect(b.writes()).toBe(before);
  });

  it("keeps the key across a reboot between the answer and the certificate", () => {
    const first = board(keyMaker());
    first.handler.handle(request(2));
    const rebooted = board(keyMaker(), first.store);
    expect(rebooted.handler.handle(certificate(2, made))).toMatchObject({ ok: true, action: "reconnect" });
    expect(rebooted.handler.connection().tls.keyDer).toEqual(der(made.keyPem));
  });

  it("refuses, and stages nothing: a certificate for another key, one with no request, a stale or unsupported request", () => {
    const b = board(keyMaker());
    b.handler.handle(request(1));
    const writes = b.writes();
    const cases: [string, Uint8Array, string][] = [
      // A CSR swapped on its way (or any other key): the certificate is not for the key the board made.
      ["a certificate for another key", certificate(1, another), "key_mismatch"],
      ["a certificate for a rotation never requested", certificate(2, made), "no_key_for_rotation"],
      ["another board's topic", request(3, { topic: "electrolyser/elx-0043/down/trust" }), "tag_mismatch"],
      ["under another key", request(3, { key: new Uint8Array(32).fill(5) }), "tag_mismatch"],
    ];
    for (const [what, bytes, error] of cases) {
      const out = b.handler.handle(bytes);
      expect({ what, error: out.ok ? out.action : out.error }).toEqual({ what, error });
    }
    expect(b.writes()).toBe(writes);
    expect(b.handler.connection()).toMatchObject({ slot: 0, trying: false });
    // Once rotation 1 is staged, a request for it (or below) is stale.
    expect(b.handler.handle(certificate(1, made))).toMatchObject({ ok: true, action: "reconnect" });
    expect(b.handler.handle(request(1))).toMatchObject({ ok: false, error: "stale_rotation" });
    // While rotation 1 is being tried, no new key is made.
    expect(b.handler.handle(request(5))).toMatchObject({ ok: false, error: "rotation_in_progress" });

    const plain = board();
    expect(plain.handler.handle(request(1))).toMatchObject({ ok: false, error: "key_request_unsupported" });
    // NVS full while the key is stored: nothing to publish (an answer never goes out before its key is kept).
    const full = board(keyMaker());
    full.store.failWrites = true;
    expect(full.handler.handle(request(1))).toMatchObject({ ok: false, error: "write_failed" });
    full.store.failWrites = false;
    expect(full.store.get(PROV_NAMESPACE, TRUST_SLOT_KEYS.requestRotation.key)).toBeUndefined();
    const failing = board(keyMaker({ fail: true }));
    const before = failing.writes();
    expect(failing.handler.handle(request(1))).toMatchObject({
      ok: false,
      error: "key_generation_failed",
      detail: "mbedtls_rsa_gen_key: -0x4200",
    });
    expect(failing.writes()).toBe(before);
  });
});
