import { describe, expect, it } from "vitest";
import { nodeAead } from "../../../host/src/crypto/node-aead";
import { readEnvelopeHeader } from "../../src/envelope/envelope";
import { PROV_NAMESPACE } from "../../src/identity/nvs-layout";
import { decodeTelemetryMessage } from "../../src/payload/telemetry-message";
import type { DecodeMode } from "../../src/payload/telemetry-message";
import { statusTopic, telemetryTopic } from "../../src/telemetry/topics";
import type { Reading } from "../../src/telemetry/reading";
import { bootDevice, DEVICE_ID, PAYLOAD_KEY, provision, testIdentity } from "./harness";
import { FakeBroker } from "./shims/fake-broker";
import type { BrokerMessage } from "./shims/fake-broker";
import { MemoryPreference } from "./shims/memory-preference";
import { VirtualTimers } from "./shims/virtual-timers";

const TOPIC = telemetryTopic(DEVICE_ID);
const encrypted: DecodeMode = {
  kind: "encrypted",
  aead: nodeAead,
  keyFor: (keyId) => (keyId === 2 ? PAYLOAD_KEY : undefined),
};

function decode(m: BrokerMessage, mode: DecodeMode = encrypted): Reading {
  const r = decodeTelemetryMessage(m.topic, m.payload, mode);
  if (!r.ok) throw new Error(`${r.error.code}: ${r.error.message}`);
  return r.value;
}

/** What an idempotent consumer keeps: the first copy of each (boot, seq), in arrival order. */
function firstCopies(messages: BrokerMessage[]): Reading[] {
  const seen = new Set<string>();
  const out: Reading[] = [];
  for (const m of messages) {
    const r = decode(m);
    const k = `${r.boot}/${r.seq}`;
    if (!seen.has(k)) {
      seen.add(k);
      out.push(r);
    }
  }
  return out;
}

function setup() {
  const timers = new VirtualTimers();
  const store = new MemoryPreference();
  const broker = new FakeBroker(timers);
  return { timers, store, broker };
}

const range = (from: number, to: number): number[] => Array.from({ length: to - from }, (_, i) => from + i);

describe("boot without an identity", () => {
  it("reports what is missing, creates no connection, and starts once provisioning writes NVS", async () => {
    const { timers, store, broker } = setup();
    const { app, log } = bootDevice({ store, timers, broker, config: { provisioningPoll: 5000 } });
    expect(app.state).toBe("awaiting-provisioning");
    expect(log.text()).toContain("not provisioned");
    for (const key of ["device_id", "broker", "port", "interval", "secure", "encrypt"])
      expect(log.text()).toMatch(new RegExp(`${key} \\(\\w+\\) is missing`));
    await timers.advance(12_000);
    expect(broker.connects).toHaveLength(0);
    expect(store.get(PROV_NAMESPACE, "boot")).toBeUndefined();
    expect(app.state).toBe("awaiting-provisioning");

    provision(store);
    await timers.advance(5_000);
    expect(app.state).toBe("running");
    expect(app.boot).toBe(1);
    await timers.advance(3_000);
    const seqs = firstCopies(broker.published(TOPIC)).map((r) => r.seq);
    expect(seqs.length).toBeGreaterThanOrEqual(3);
    expect(seqs).toEqual(range(0, seqs.length));
  });

  it("waits on a malformed identity without echoing secrets, and never throws", async () => {
    const { timers, store, broker } = setup();
    provision(store, testIdentity());
    store.set(PROV_NAMESPACE, "port", "8883"); // a string where NVS should hold an i32
    store.set(PROV_NAMESPACE, "payload_key", new Uint8Array(16).buffer); // wrong length
    const { app, log } = bootDevice({ store, timers, broker });
    expect(app.state).toBe("awaiting-provisioning");
    expect(log.text()).toContain("unusable");
    expect(log.text()).toMatch(/port should be i32, is string/);
    expect(log.text()).toMatch(/payload_key must be 32 bytes/);
    expect(log.text()).not.toContain("correct horse battery");
    await timers.advance(60_000);
    expect(broker.connects).toHaveLength(0);
  });

  it("refuses to publish plaintext when the build requires encryption", async () => {
    const { timers, store, broker } = setup();
    provision(store, testIdentity({ payload: null }));
    const { app, log } = bootDevice({ store, timers, broker, config: { encrypt: "true" } });
    expect(app.state).toBe("awaiting-provisioning");
    expect(log.text()).toContain("requires payload encryption");
    await timers.advance(10_000);
    expect(broker.published()).toHaveLength(0);
  });
});

describe("running", () => {
  it("connects with the provisioned TLS material, a persistent session and a retained will", async () => {
    const { timers, store, broker } = setup();
    const id = testIdentity();
    provision(store, id);
    bootDevice({ store, timers, broker, config: { keepalive: 30000 } });
    await timers.advance(100);
    expect(broker.connects).toHaveLength(1);
    const c = broker.connects[0]!;
    expect(c).toMatchObject({
      host: "broker.test",
      port: 8883,
      id: DEVICE_ID,
      clean: false,
      keepalive: 30_000,
    });
    expect(new Uint8Array(c.tls!.caDer)).toEqual(id.tls!.caDer);
    expect(new Uint8Array(c.tls!.certDer)).toEqual(id.tls!.certDer);
    expect(new Uint8Array(c.tls!.keyDer)).toEqual(id.tls!.keyDer);
    expect(c.will).toMatchObject({ topic: statusTopic(DEVICE_ID), QoS: 1, retain: true });
    expect(JSON.parse(Buffer.from(c.will.message).toString())).toEqual({ online: false, boot: 1 });
    const status = broker.published(statusTopic(DEVICE_ID));
    expect(status).toHaveLength(1);
    expect(status[0]!.retain).toBe(true);
    expect(JSON.parse(Buffer.from(status[0]!.payload).toString())).toMatchObject({
      online: true,
      boot: 1,
      dropped: 0,
    });
  });

  it("queues one reading per interval, sealed, at QoS 1, in order, each acknowledged", async () => {
    const { timers, store, broker } = setup();
    provision(store);
    const { app } = bootDevice({ store, timers, broker });
    await timers.advance(10_050);
    const msgs = broker.published(TOPIC);
    expect(msgs).toHaveLength(10);
    expect(msgs.every((m) => m.qos === 1 && !m.retain && !m.duplicate)).toBe(true);
    const readings = msgs.map((m) => decode(m));
    expect(readings.map((r) => r.seq)).toEqual(range(0, 10));
    const ts = readings.map((r) => r.ts);
    expect(ts.slice(1).map((t, i) => t - ts[i]!)).toEqual(Array(9).fill(1000));
    for (const r of readings) {
      expect(r).toMatchObject({ sensorId: DEVICE_ID, boot: 1, fw: "0.1.0-test", faults: [] });
      expect(r.values.voltage_v).toBeGreaterThan(20 * 1.4);
      expect(r.values.current_a).toBeGreaterThan(0);
    }
    // Plaintext never goes out on an encrypting fleet: the payload is the binary envelope.
    expect(decodeTelemetryMessage(TOPIC, msgs[0]!.payload, { kind: "plain" }).ok).toBe(false);
    expect(readEnvelopeHeader(msgs[3]!.payload)).toEqual({
      ok: true,
      value: { keyId: 2, boot: 1, counter: 3 },
    });
    expect(app.outbox!.size).toBe(0);
    expect(app.session!.counters.acked).toBe(10);
  });

  it("uses the interval and broker overrides from mc/config", async () => {
    const { timers, store, broker } = setup();
    provision(store);
    bootDevice({
      store,
      timers,
      broker,
      config: { interval: "250", brokerHost: "localhost", brokerPort: "18883" },
    });
    await timers.advance(1_010);
    expect(broker.connects[0]).toMatchObject({ host: "localhost", port: 18883 });
    expect(broker.published(TOPIC)).toHaveLength(4);
  });

  it("delivers every reading once, in order, after the broker was away for several intervals", async () => {
    const { timers, store, broker } = setup();
    provision(store);
    const { app, log } = bootDevice({
      store,
      timers,
      broker,
      config: { reconnectMinMs: 500, reconnectMaxMs: 4000 },
    });
    await timers.advance(5_500); // readings 0..4 delivered and acked
    expect(app.outbox!.size).toBe(0);
    broker.stop();
    await timers.advance(8_000); // 8 readings while away
    expect(broker.published(TOPIC)).toHaveLength(5);
    expect(app.outbox!.size).toBe(8);
    broker.start();
    await timers.advance(10_000);
    const msgs = broker.published(TOPIC);
    const seqs = msgs.map((m) => decode(m).seq);
    expect(seqs).toEqual(range(0, seqs.length)); // once each, in order: nothing was in flight when it dropped
    expect(seqs.length).toBeGreaterThanOrEqual(23);
    expect(app.outbox!.size).toBe(0);
    expect(app.outbox!.dropped).toBe(0);
    expect(log.text()).toMatch(/retrying in \d+ ms \(\d+ queued\)/);
    // The will announced the unclean loss; the new session announced itself again.
    const wills = broker.received.filter((m) => m.will);
    expect(wills).toHaveLength(1);
    expect(broker.published(statusTopic(DEVICE_ID))).toHaveLength(2);
  });

  it("resends readings whose PUBACK was lost, with the DUP flag, and a consumer ends up with each once in order", async () => {
    const { timers, store, broker } = setup();
    provision(store);
    const { app } = bootDevice({
      store,
      timers,
      broker,
      config: { reconnectMinMs: 500, reconnectMaxMs: 2000, maxInflight: 4 },
    });
    await timers.advance(3_500); // 0..2 acked
    broker.holdPubacks = true;
    await timers.advance(6_000); // 3..8 reach the broker (at most 4 in flight), none acknowledged
    expect(app.outbox!.inflight).toBe(4);
    broker.stop();
    broker.holdPubacks = false;
    await timers.advance(3_000);
    broker.start();
    await timers.advance(6_000);
    const msgs = broker.published(TOPIC);
    const resent = msgs.filter((m) => m.duplicate).map((m) => decode(m).seq);
    expect(resent).toEqual([3, 4, 5, 6]);
    const once = firstCopies(msgs).map((r) => r.seq);
    expect(once).toEqual(range(0, once.length));
    expect(once.length).toBeGreaterThanOrEqual(17);
    expect(app.outbox!.size).toBe(0);
    expect(app.session!.counters.republished).toBe(4);
  });

  it("drops the oldest readings when the outbox is full, counts them and reports the count", async () => {
    const { timers, store, broker } = setup();
    provision(store);
    broker.stop();
    const { app, log } = bootDevice({
      store,
      timers,
      broker,
      config: { outboxCapacity: 5, reconnectMinMs: 1000, reconnectMaxMs: 1000 },
    });
    await timers.advance(9_000); // 9 readings, room for 5
    expect(app.outbox!.size).toBe(5);
    expect(app.outbox!.dropped).toBe(4);
    expect(log.text()).toContain("4 oldest reading(s) dropped since boot");
    broker.start();
    await timers.advance(1_500);
    const seqs = broker.published(TOPIC).map((m) => decode(m).seq);
    expect(seqs.slice(0, 5)).toEqual([4, 5, 6, 7, 8]);
    const online = broker
      .published(statusTopic(DEVICE_ID))
      .map((m) => JSON.parse(Buffer.from(m.payload).toString()) as Record<string, unknown>);
    expect(online[0]).toMatchObject({ online: true, dropped: 4 });
    // The status went out before the backlog.
    expect(broker.published()[0]!.topic).toBe(statusTopic(DEVICE_ID));
  });

  it("backs off exponentially with jitter while the broker is down, and starts over after a connection", async () => {
    const { timers, store, broker } = setup();
    provision(store);
    broker.stop();
    bootDevice({
      store,
      timers,
      broker,
      random: Math.random,
      config: { reconnectMinMs: 1000, reconnectMaxMs: 8000 },
    });
    await timers.advance(60_000);
    const gaps = broker.attempts.slice(1).map((t, k) => t - broker.attempts[k]! - broker.connectLatencyMs);
    expect(gaps.length).toBeGreaterThanOrEqual(8);
    // The ceiling doubles from 1 s up to 8 s; each delay lies in its upper half.
    gaps.forEach((gap, k) => {
      const ceiling = Math.min(8000, 1000 * 2 ** k);
      expect(gap).toBeGreaterThanOrEqual(Math.max(1000, ceiling / 2));
      expect(gap).toBeLessThanOrEqual(ceiling);
    });
    expect(new Set(gaps.slice(3)).size).toBeGreaterThan(1); // jittered, not a fixed 8 s
    broker.start();
    await timers.advance(9_000);
    expect(broker.connected).toBe(1);
    const before = broker.attempts.length;
    broker.stop();
    await timers.advance(1_100);
    // First retry after a good connection is short again.
    expect(broker.attempts.length).toBe(before + 1);
  });
});

describe("a server the TLS handshake refuses", () => {
  it("is a normal failed connection: logged with its reason, counted, retried with backoff, and nothing is lost", async () => {
    const { timers, store, broker } = setup();
    provision(store);
    broker.tlsRefusal =
      "broker refused (pin_mismatch): the server's key is not the broker's (pin-sha256 not provisioned)";
    const { app, log } = bootDevice({
      store,
      timers,
      broker,
      random: () => 0.5,
      config: { reconnectMinMs: 1000, reconnectMaxMs: 4000 },
    });
    await timers.advance(20_000);
    expect(broker.received).toHaveLength(0);
    expect(broker.attempts.length).toBeGreaterThanOrEqual(5);
    expect(app.session!.counters.tlsFailures).toBe(broker.attempts.length);
    expect(log.text()).toContain("mqtt: TLS: broker refused (pin_mismatch)");
    expect(app.statsLine()).toMatch(/tls refused [1-9]/);
    const gaps = broker.attempts.slice(1).map((t, k) => t - broker.attempts[k]! - broker.connectLatencyMs);
    expect(Math.max(...gaps)).toBeGreaterThan(Math.min(...gaps)); // backing off, not hammering
    expect(Math.max(...gaps)).toBeLessThanOrEqual(4000);
    expect(app.state).toBe("running");

    broker.tlsRefusal = undefined;
    await timers.advance(6_000);
    expect(app.session!.state).toBe("connected");
    const seqs = broker.published(TOPIC).map((m) => decode(m).seq);
    expect(seqs).toEqual(range(0, seqs.length));
    expect(seqs.length).toBeGreaterThanOrEqual(25);
  });
});

describe("a connection that never completes", () => {
  it("gives up on a missing CONNACK after the connect timeout and tries again", async () => {
    const { timers, store, broker } = setup();
    provision(store);
    broker.answersConnects = false;
    const { app, log } = bootDevice({
      store,
      timers,
      broker,
      config: { connectTimeout: 5000, reconnectMinMs: 1000, reconnectMaxMs: 1000 },
    });
    await timers.advance(13_000);
    expect(log.text()).toContain("no CONNACK within 5000 ms");
    expect(broker.attempts.length).toBe(3); // at 0, 6 s and 12 s
    expect(app.session!.state).toBe("connecting");
    broker.answersConnects = true;
    await timers.advance(7_000);
    expect(app.session!.state).toBe("connected");
    const seqs = broker.published(TOPIC).map((m) => decode(m).seq);
    expect(seqs).toEqual(range(0, seqs.length));
    expect(seqs.length).toBeGreaterThanOrEqual(18);
  });
});

describe("boot counter", () => {
  it("advances across restarts and is stored before the first envelope is sealed", async () => {
    const timers = new VirtualTimers();
    const store = new MemoryPreference();
    const broker = new FakeBroker(timers);
    provision(store, testIdentity(), 41);

    const first = bootDevice({ store, timers, broker });
    // Stored synchronously in start(), before any timer (and so any sampling) has run.
    expect(store.get(PROV_NAMESPACE, "boot")).toBe(42);
    await timers.advance(2_050);
    first.app.stop();

    const second = bootDevice({ store, timers, broker });
    expect(second.app.boot).toBe(43);
    expect(store.get(PROV_NAMESPACE, "boot")).toBe(43);
    await timers.advance(2_050);
    const headers = broker.published(TOPIC).map((m) => readEnvelopeHeader(m.payload));
    const nonces = headers.map((h) => (h.ok ? `${h.value.boot}/${h.value.counter}` : "bad"));
    expect(nonces).toEqual(["42/0", "42/1", "43/0", "43/1"]);
    expect(new Set(nonces).size).toBe(nonces.length);
  });

  it("stops at its maximum instead of wrapping: nothing published, the counter left as it was, a clear log", async () => {
    const { timers, store, broker } = setup();
    provision(store, testIdentity(), 0x7fffffff);
    const { app, log } = bootDevice({ store, timers, broker });
    expect(app.state).toBe("failed");
    expect(log.text()).toContain("boot counter exhausted at 2147483647");
    expect(log.text()).toContain("not publishing (nonce safety)");
    expect(store.get(PROV_NAMESPACE, "boot")).toBe(0x7fffffff);
    await timers.advance(10_000);
    expect(broker.connects).toHaveLength(0);
  });

  it("does not publish when the counter cannot be stored", async () => {
    const { timers, store, broker } = setup();
    provision(store);
    store.failWrites = true;
    const { app, log } = bootDevice({ store, timers, broker });
    expect(app.state).toBe("failed");
    expect(log.text()).toContain("not publishing (nonce safety)");
    await timers.advance(10_000);
    expect(broker.connects).toHaveLength(0);
  });
});

describe("failover to the other brokers of a cluster", () => {
  const failover = [
    { host: "n2.test", port: 8884 },
    { host: "n3.test", port: 8885 },
  ];

  it("the provisioned list survives NVS: home first, then the failover brokers", () => {
    const { timers, store, broker } = setup();
    provision(store, testIdentity({ failover }));
    const { log } = bootDevice({ store, timers, broker });
    expect(log.text()).toMatch(/broker\.test:8883 \(\+2 failover\)/);
  });

  it("moves to the next node when its node dies, resends what was unacknowledged there, loses nothing", async () => {
    const { timers, store, broker } = setup();
    provision(store, testIdentity({ failover }));
    const { app, log } = bootDevice({
      store,
      timers,
      broker,
      config: { reconnectMinMs: 500, reconnectMaxMs: 4000, maxInflight: 4 },
    });
    await timers.advance(3_500); // 0..2 acked on the home node
    expect(broker.connects.map((c) => c.host)).toEqual(["broker.test"]);
    broker.holdPubacks = true;
    await timers.advance(2_000); // 3, 4 reach home, unacknowledged
    broker.stopNode("broker.test:8883");
    broker.holdPubacks = false;
    await timers.advance(10_000);
    // Straight to n2 (no second try at the dead node), the same persistent session and client id.
    expect(broker.connects.map((c) => `${c.host}:${c.port}`)).toEqual(["broker.test:8883", "n2.test:8884"]);
    expect(broker.connects[1]).toMatchObject({ id: DEVICE_ID, clean: false });
    const msgs = broker.published(TOPIC);
    expect(msgs.filter((m) => m.duplicate).map((m) => decode(m).seq)).toEqual([3, 4]);
    const once = firstCopies(msgs).map((r) => r.seq);
    expect(once).toEqual(range(0, once.length));
    expect(once.length).toBeGreaterThanOrEqual(14);
    expect(app.outbox!.size).toBe(0);
    expect(log.text()).toMatch(/retrying in \d+ ms \(\d+ queued\), next n2\.test:8884/);
  });

  it("skips a dead node, and goes home again only at a reconnect after home was quiet for a while", async () => {
    const { timers, store, broker } = setup();
    provision(store, testIdentity({ failover }));
    bootDevice({ store, timers, broker, config: { reconnectMinMs: 500, reconnectMaxMs: 2000 } });
    await timers.advance(2_000);
    broker.stopNode("broker.test:8883");
    broker.stopNode("n2.test:8884");
    await timers.advance(5_000);
    const hosts = (): string[] => broker.connects.map((c) => c.host);
    expect(hosts()).toEqual(["broker.test", "n3.test"]);
    broker.startNode("broker.test:8883");
    broker.startNode("n2.test:8884");
    // A working connection is never dropped to go home.
    await timers.advance(10 * 60_000);
    expect(hosts()).toEqual(["broker.test", "n3.test"]);
    // Its node dies later: home has been quiet for more than homeRetryMs, so home it is.
    broker.stopNode("n3.test:8885");
    await timers.advance(5_000);
    expect(hosts()).toEqual(["broker.test", "n3.test", "broker.test"]);
  });
});
