// Field rotation in the firmware's MqttSession (the one the emulated boards run too), on virtual time against the
// ECMA-419 client shim, with real certificates: the session subscribes to its downlink in every confirmation
// mode, hands down/trust to the TrustRotationHandler, reconnects with the staged identity without losing or
// repeating a reading, reports the certificate on its status, and falls back to the old identity when the new
// one is refused.
import { X509Certificate } from "node:crypto";
import { beforeAll, describe, expect, it } from "vitest";
import { nodeAead } from "../../../host/src/crypto/node-aead";
import { createCa, issue, type IssuedCert, type TestCa } from "../../../host/test/broker/helpers/test-pki";
import { PROV_NAMESPACE, TRUST_SLOT_KEYS, type DeviceIdentity } from "../../src/identity/nvs-layout";
import { sealCertificateForKey, sealKeyRequest, sealTrustMessage } from "../../src/identity/trust-message";
import { openKeyAnswer } from "../../src/identity/key-request-message";
import type { KeyMaker } from "../../src/identity/key-maker";
import { decodeTelemetryMessage } from "../../src/payload/telemetry-message";
import {
  downlinkFilter,
  downlinkTopic,
  keyAnswerTopic,
  statusTopic,
  telemetryTopic,
} from "../../src/telemetry/topics";
import { bootDevice, DEVICE_ID, PAYLOAD_KEY, provision, testIdentity } from "./harness";
import { FakeBroker, type BrokerMessage } from "./shims/fake-broker";
import { MemoryPreference } from "./shims/memory-preference";
import { VirtualTimers } from "./shims/virtual-timers";

const TELEMETRY = telemetryTopic(DEVICE_ID);
const TRUST = downlinkTopic(DEVICE_ID, "trust");
const STATUS = statusTopic(DEVICE_ID);
const KEY_ID = 2; // testIdentity's payload key id
/** The payload key a rotation hands the board (a new generation). */
const NEW_KEY_ID = 5;
const NEW_KEY = new Uint8Array(32).fill(0x55);
const der = (pem: string) =>
  new Uint8Array(Buffer.from(pem.replace(/-----[^-]+-----/g, "").replace(/\s+/g, ""), "base64"));
const serialOf = (c: IssuedCert) => new X509Certificate(c.certPem).serialNumber.toLowerCase();

let ca: TestCa;
let current: IssuedCert;
let next: IssuedCert;

beforeAll(async () => {
  ca = await createCa("Session Trust Test CA", "p256");
  [current, next] = await Promise.all([
    issue(ca, { cn: DEVICE_ID, kind: "p256", usage: "client" }),
    issue(ca, { cn: DEVICE_ID, kind: "p256", usage: "client" }),
  ]);
});

function start(config: Record<string, unknown> = {}, identity?: Partial<DeviceIdentity>, keys?: KeyMaker) {
  // The certificates are valid around now: the board's clock is set to it.
  const timers = new VirtualTimers(Date.now());
  const store = new MemoryPreference();
  const broker = new FakeBroker(timers);
  provision(
    store,
    testIdentity({
      tls: {
        caDer: der(ca.certPem),
        certDer: der(current.certPem),
        keyDer: der(current.keyPem),
        brokerPins: [new Uint8Array(32).fill(7)],
      },
      ...identity,
    }),
  );
  const device = bootDevice({
    store,
    timers,
    broker,
    config: { reconnectMinMs: 500, ...config },
    ...(keys ? { keys } : {}),
  });
  return { ...device, timers, broker, store };
}

function sealed(
  rotation: number,
  c: IssuedCert,
  key = PAYLOAD_KEY,
  o: { keyId?: number; payloadKey?: { keyId: number; key: Uint8Array } } = {},
): Uint8Array {
  return sealTrustMessage(nodeAead, {
    key,
    keyId: o.keyId ?? KEY_ID,
    sensorId: DEVICE_ID,
    topic: TRUST,
    rotation: {
      rotation,
      certDer: der(c.certPem),
      keyDer: der(c.keyPem),
      brokerPins: [new Uint8Array(32).fill(7)],
      ...(o.payloadKey ? { payloadKey: o.payloadKey } : {}),
    },
  });
}

/** Every reading sent, opened under the key its envelope names. */
function sent(broker: FakeBroker): { seq: number; keyId: number }[] {
  return broker.published(TELEMETRY).map((m: BrokerMessage) => {
    const r = decodeTelemetryMessage(m.topic, m.payload, {
      kind: "encrypted",
      aead: nodeAead,
      keyFor: (k) => (k === KEY_ID ? PAYLOAD_KEY : k === NEW_KEY_ID ? NEW_KEY : undefined),
    });
    if (!r.ok) throw new Error(r.error.message);
    return { seq: r.value.seq, keyId: m.payload[1]! };
  });
}

const seqs = (broker: FakeBroker): number[] => sent(broker).map((r) => r.seq);

/** Every seq 0..n-1 exactly once, in order. */
const exactlyOnce = (got: number[]) => expect(got).toEqual(got.map((_, i) => i));

const certOfConnect = (broker: FakeBroker, i: number) => new Uint8Array(broker.connects.at(i)!.tls!.certDer);
const statusCerts = (broker: FakeBroker) =>
  broker
    .published(STATUS)
    .map((m) => (JSON.parse(Buffer.from(m.payload).toString("utf8")) as { cert?: string }).cert);

describe("the session's downlink and field rotation", () => {
  it.each(["off", "on", "auto"])("subscribes to its downlink tree in confirmation mode %s", async (mode) => {
    const d = start({ confirmations: mode });
    await d.timers.advance(1_500);
    expect([...(d.broker.subscriptions.get(DEVICE_ID) ?? [])]).toEqual([downlinkFilter(DEVICE_ID)]);
  });

  it("reports the certificate's serial on its status", async () => {
    const d = start();
    await d.timers.advance(1_500);
    expect(statusCerts(d.broker)).toEqual([serialOf(current)]);
    expect(d.app.session!.certSerial).toBe(serialOf(current));
  });

  it("refuses bad trust messages without disturbing the connection or the readings", async () => {
    const d = start();
    await d.timers.advance(3_500);
    const bad = [
      Uint8Array.of(1, 2, 3), // truncated
      sealed(1, next, new Uint8Array(32).fill(9)), // sealed under another key
      new Uint8Array(7000), // larger than any trust message: read and discarded
    ];
    for (const b of bad) d.broker.deliver(DEVICE_ID, TRUST, b, 3);
    const c = d.app.session!.counters;
    expect(c.trustRefused).toBe(2);
    expect(c.downlinkIgnored).toBe(1);
    expect(c.identitySwitches).toBe(0);
    await d.timers.advance(5_000);
    expect(d.app.session!.state).toBe("connected");
    expect(d.broker.connects).toHaveLength(1);
    expect(d.store.get(PROV_NAMESPACE, TRUST_SLOT_KEYS.trying.key)).toBeUndefined();
    const got = seqs(d.broker);
    expect(got.length).toBeGreaterThanOrEqual(8);
    exactlyOnce(got);
  });

  it("reconnects with the staged identity, commits it on CONNACK, and sends every reading once", async () => {
    const d = start({ maxInflight: 4 });
    await d.timers.advance(3_500);
    d.broker.pubackLatencyMs = 300; // the reading taken at 4 s is in flight when the message comes
    await d.timers.advance(600);
    expect(d.app.outbox!.inflight).toBeGreaterThan(0);
    d.broker.deliver(DEVICE_ID, TRUST, sealed(1, next));
    expect(d.app.session!.counters.trustStaged).toBe(1);
    await d.timers.advance(5_000);
    const c = d.app.session!.counters;
    expect(c.identitySwitches).toBe(1);
    expect(d.broker.connects).toHaveLength(2);
    expect(certOfConnect(d.broker, 0)).toEqual(der(current.certPem));
    expect(certOfConnect(d.broker, 1)).toEqual(der(next.certPem));
    expect(statusCerts(d.broker)).toEqual([serialOf(current), serialOf(next)]);
    expect(d.store.get(PROV_NAMESPACE, TRUST_SLOT_KEYS.active.key)).toBe(1);
    // The switch waited for the PUBACKs of what was in flight: nothing went twice, nothing was lost.
    expect(c.republished).toBe(0);
    exactlyOnce(seqs(d.broker));
    // The retained copy at the next subscription, and a reconnect later: the new identity stays.
    d.broker.deliver(DEVICE_ID, TRUST, sealed(1, next));
    d.broker.stop();
    d.broker.start();
    await d.timers.advance(3_000);
    expect(certOfConnect(d.broker, -1)).toEqual(der(next.certPem));
    expect(d.app.session!.counters.identitySwitches).toBe(1);
    expect(d.log.text()).not.toMatch(/BEGIN|PRIVATE/);
  });

  it("falls back to the old identity when the broker refuses the new one", async () => {
    const d = start({ reconnectMaxMs: 1_000 });
    const refused = der(next.certPem);
    d.broker.refuseCertificate = (cert) =>
      Buffer.from(cert).equals(Buffer.from(refused)) ? "alert certificate revoked" : undefined;
    await d.timers.advance(2_500);
    d.broker.deliver(DEVICE_ID, TRUST, sealed(1, next));
    await d.timers.advance(10_000);
    const c = d.app.session!.counters;
    expect(c.identityFailures).toBe(3);
    expect(d.app.session!.state).toBe("connected");
    expect(certOfConnect(d.broker, -1)).toEqual(der(current.certPem));
    expect(statusCerts(d.broker).at(-1)).toBe(serialOf(current));
    expect(d.store.get(PROV_NAMESPACE, TRUST_SLOT_KEYS.trying.key)).toBe(-1);
    expect(d.log.text()).toMatch(/never connected; back to slot 0/);
    // The readings taken meanwhile waited in the outbox and all went.
    await d.timers.advance(3_000);
    exactlyOnce(seqs(d.broker));
    expect(seqs(d.broker).length).toBeGreaterThanOrEqual(12);
  });

  it("seals under the old payload key until the CONNACK with the new identity, under the rotation's key after", async () => {
    const d = start({ maxInflight: 4 });
    await d.timers.advance(3_500);
    d.broker.connectLatencyMs = 2_500; // readings are taken while the new identity is being tried
    d.broker.deliver(
      DEVICE_ID,
      TRUST,
      sealed(1, next, PAYLOAD_KEY, { payloadKey: { keyId: NEW_KEY_ID, key: NEW_KEY } }),
    );
    expect(d.app.session!.counters.trustStaged).toBe(1);
    const queuedBeforeCommit = () => d.app.outbox!.nextSeq;
    await d.timers.advance(2_000);
    // The new identity is being tried: a second attempt, not answered yet.
    expect(d.broker.attempts).toHaveLength(2);
    expect(d.broker.connects).toHaveLength(1);
    const beforeCommit = queuedBeforeCommit();
    await d.timers.advance(6_000);
    expect(d.app.session!.counters.identitySwitches).toBe(1);
    const got = sent(d.broker);
    exactlyOnce(got.map((r) => r.seq));
    const firstNew = got.findIndex((r) => r.keyId === NEW_KEY_ID);
    // Every reading taken before the commit (some while the new identity was tried) under the old key, every
    // one after under the new key.
    expect(firstNew).toBeGreaterThanOrEqual(beforeCommit);
    expect(got.slice(0, firstNew).every((r) => r.keyId === KEY_ID)).toBe(true);
    expect(got.slice(firstNew).every((r) => r.keyId === NEW_KEY_ID)).toBe(true);
    expect(got.length - firstNew).toBeGreaterThanOrEqual(4);
    // The retained copy (under the replaced key) comes back at the next subscription: recognised, not refused.
    d.broker.deliver(
      DEVICE_ID,
      TRUST,
      sealed(1, next, PAYLOAD_KEY, { payloadKey: { keyId: NEW_KEY_ID, key: NEW_KEY } }),
    );
    expect(d.app.session!.counters.trustRefused).toBe(0);
    expect(d.log.text()).not.toMatch(/BEGIN|PRIVATE/);
  });

  it("keeps sealing under the old payload key when it falls back from a refused identity", async () => {
    const d = start({ reconnectMaxMs: 1_000 });
    const refused = der(next.certPem);
    d.broker.refuseCertificate = (cert) =>
      Buffer.from(cert).equals(Buffer.from(refused)) ? "alert certificate revoked" : undefined;
    await d.timers.advance(2_500);
    d.broker.deliver(
      DEVICE_ID,
      TRUST,
      sealed(1, next, PAYLOAD_KEY, { payloadKey: { keyId: NEW_KEY_ID, key: NEW_KEY } }),
    );
    await d.timers.advance(13_000);
    expect(d.app.session!.counters.identityFailures).toBe(3);
    const got = sent(d.broker);
    expect(got.length).toBeGreaterThanOrEqual(12);
    exactlyOnce(got.map((r) => r.seq));
    expect(got.every((r) => r.keyId === KEY_ID)).toBe(true);
  });

  it("ignores down/trust on a plaintext board (nothing to open it with)", async () => {
    const d = start({ encrypt: false }, { payload: null });
    await d.timers.advance(1_500);
    d.broker.deliver(DEVICE_ID, TRUST, sealed(1, next));
    expect(d.app.session!.counters.downlinkIgnored).toBe(1);
    expect(d.app.session!.counters.trustStaged).toBe(0);
  });

  it("answers a key request with its sealed CSR (QoS 1, retained), again after a connection lost before the PUBACK, then connects with the certificate that comes alone", async () => {
    // The board's KeyMaker (mbedTLS on the board) here hands out `next`'s key pair.
    const keys: KeyMaker = {
      generate: () => ({ keyDer: der(next.keyPem).slice().buffer, csrDer: Uint8Array.of(0x30, 0, 9).buffer }),
    };
    const d = start({}, undefined, keys);
    await d.timers.advance(3_500);
    const ANSWER = keyAnswerTopic(DEVICE_ID);
    const request = sealKeyRequest(nodeAead, {
      key: PAYLOAD_KEY,
      keyId: KEY_ID,
      sensorId: DEVICE_ID,
      topic: TRUST,
      request: { rotation: 1, bits: 2048, subject: `O=x,OU=devices,CN=${DEVICE_ID}` },
    });
    d.broker.holdPubacks = true;
    d.broker.deliver(DEVICE_ID, TRUST, request);
    await d.timers.advance(100);
    const first = d.broker.published(ANSWER);
    expect(first.map((m) => [m.qos, m.retain])).toEqual([[1, true]]);
    expect(
      openKeyAnswer(nodeAead, {
        key: PAYLOAD_KEY,
        keyId: KEY_ID,
        sensorId: DEVICE_ID,
        topic: ANSWER,
        bytes: first[0]!.payload,
      }),
    ).toEqual({ ok: true, value: { rotation: 1, csrDer: Uint8Array.of(0x30, 0, 9) } });
    // Lost with the connection before its PUBACK: sent again, the same bytes, on the next connection.
    d.broker.stop();
    d.broker.releasePubacks();
    d.broker.start();
    await d.timers.advance(3_000);
    const answers = d.broker.published(ANSWER);
    expect(answers).toHaveLength(2);
    expect(answers[1]!.payload).toEqual(first[0]!.payload);
    await d.timers.advance(3_000);
    expect(d.broker.published(ANSWER)).toHaveLength(2); // acknowledged: not again
    expect(d.app.session!.counters.identitySwitches).toBe(0);

    d.broker.deliver(
      DEVICE_ID,
      TRUST,
      sealCertificateForKey(nodeAead, {
        key: PAYLOAD_KEY,
        keyId: KEY_ID,
        sensorId: DEVICE_ID,
        topic: TRUST,
        certificate: {
          rotation: 1,
          certDer: der(next.certPem),
          brokerPins: [new Uint8Array(32).fill(7)],
          payloadKey: { keyId: NEW_KEY_ID, key: NEW_KEY },
        },
      }),
    );
    await d.timers.advance(3_000);
    expect(d.app.session!.counters.identitySwitches).toBe(1);
    expect(certOfConnect(d.broker, -1)).toEqual(der(next.certPem));
    expect(new Uint8Array(d.broker.connects.at(-1)!.tls!.keyDer)).toEqual(der(next.keyPem));
    expect(statusCerts(d.broker).at(-1)).toBe(serialOf(next));
    // After a reboot the console says which payload key it seals under (the boot line names the provisioned one).
    const timers = new VirtualTimers(Date.now());
    const rebooted = bootDevice({ store: d.store, timers, broker: new FakeBroker(timers), keys });
    await timers.advance(1_000);
    expect(rebooted.log.text()).toMatch(/trust: identity slot 1 in use, sealing under payload key 5/);
    // Every reading arrived (the broker outage resent some, PUBACK semantics): none is missing.
    const got = new Set(seqs(d.broker));
    expect([...got].sort((a, b) => a - b)).toEqual([...got].map((_, i) => i));
    expect(d.log.text()).not.toMatch(/BEGIN|PRIVATE/);
  });
});
