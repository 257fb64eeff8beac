/**
 * The broker is the security boundary. These tests start Debian's mosquitto with the
 * project's configuration and ACL, then try to get past it the ways an attacker or a
 * misconfigured board would; each case asserts what the broker did.
 */
import { randomUUID } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer, type Server } from "node:tls";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { MqttClient } from "mqtt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startMosquitto, type MosquittoHandle } from "../../src/broker/mosquitto";
import {
  createBrokerTestPki,
  createCa,
  issue,
  subjectCn,
  type BrokerTestPki,
  type IssuedCert,
} from "./helpers/test-pki";
import {
  endClient,
  mustConnect,
  publishQos1,
  recorder,
  sleep,
  subscribe,
  tryConnect,
  type ConnectOptions,
} from "./helpers/clients";
import { tlsHandshake } from "./helpers/tls-probe";

const DAY = 86_400_000;
const NOT_AUTHORIZED = 0x87;

let dir: string;
let pki: BrokerTestPki;
let broker: MosquittoHandle;
let caPem: string;
const ids: Record<
  | "ingest"
  | "monitor"
  | "telegraf"
  | "bridge"
  | "devA"
  | "devB"
  | "devRsa"
  | "expired"
  | "notYetValid"
  | "wildPlus"
  | "wildHash"
  | "foreign",
  IssuedCert
> = {} as never;
/**
 * Sees every board's telemetry and status for the whole file. It is the read-only `monitor`
 * identity: one identity has one session (client id := CN), so an observer on the ingest
 * certificate would be replaced by every test that connects as ingest.
 */
let observer: MqttClient;
let observerRx: ReturnType<typeof recorder>;
const opened: MqttClient[] = [];

function opts(
  identity: IssuedCert | undefined,
  clientId: string,
  extra: Partial<ConnectOptions> = {},
): ConnectOptions {
  return { url: broker.url, ca: caPem, identity, clientId, ...extra };
}

async function connectAs(
  identity: IssuedCert,
  clientId: string,
  extra: Partial<ConnectOptions> = {},
): Promise<MqttClient> {
  const c = await mustConnect(opts(identity, clientId, extra));
  opened.push(c);
  return c;
}

/**
 * Proves a message was never delivered: the same publisher then sends a permitted QoS 1
 * message; the broker handles one connection's packets in order, so once the observer has the
 * second, the first would already have arrived.
 */
async function assertNeverDelivered(
  publisher: MqttClient,
  publisherId: string,
  forbiddenPayload: string,
): Promise<void> {
  const marker = `barrier-${randomUUID()}`;
  const r = await publishQos1(publisher, `electrolyser/${publisherId}/telemetry`, marker);
  expect(r.reasonCode).toBe(0);
  await observerRx.waitFor((m) => m.payload === marker);
  expect(observerRx.messages.filter((m) => m.payload === forbiddenPayload)).toEqual([]);
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "est-broker-access-"));
  pki = await createBrokerTestPki(dir);
  caPem = pki.ca.certPem;
  const client = { usage: "client" as const };
  const foreignCa = await createCa("Foreign CA", "p256");
  const [
    ingestId,
    monitor,
    telegraf,
    bridge,
    devA,
    devB,
    devRsa,
    expired,
    notYetValid,
    wildPlus,
    wildHash,
    foreign,
  ] = await Promise.all([
    issue(pki.ca, { cn: "ingest", kind: "p256", ...client }),
    issue(pki.ca, { cn: "monitor", kind: "p256", ...client }),
    issue(pki.ca, { cn: "telegraf", kind: "p256", ...client }),
    issue(pki.ca, { cn: "bridge", kind: "p256", ...client }),
    issue(pki.ca, { cn: "dev-a", kind: "p256", ...client }),
    issue(pki.ca, { cn: "dev-b", kind: "p256", ...client }),
    issue(pki.ca, { cn: "dev-rsa", kind: "rsa", ...client }),
    issue(pki.ca, {
      cn: "dev-a",
      kind: "p256",
      ...client,
      notBefore: new Date(Date.now() - 10 * DAY),
      notAfter: new Date(Date.now() - DAY),
    }),
    issue(pki.ca, {
      cn: "dev-a",
      kind: "p256",
      ...client,
      notBefore: new Date(Date.now() + DAY),
      notAfter: new Date(Date.now() + 10 * DAY),
    }),
    issue(pki.ca, { cn: "+", kind: "p256", ...client }),
    issue(pki.ca, { cn: "#", kind: "p256", ...client }),
    issue(foreignCa, { cn: "dev-a", kind: "p256", ...client }),
  ]);
  Object.assign(ids, {
    ingest: ingestId,
    monitor,
    telegraf,
    bridge,
    devA,
    devB,
    devRsa,
    expired,
    notYetValid,
    wildPlus,
    wildHash,
    foreign,
  });
  broker = await startMosquitto({ pki: pki.paths, dataDir: join(dir, "data") });
  observer = await connectAs(ids.monitor, "monitor-access-test");
  observerRx = recorder(observer);
  expect(await subscribe(observer, ["electrolyser/+/telemetry", "electrolyser/+/status"])).toEqual([1, 1]);
});

afterAll(async () => {
  await Promise.all(opened.map((c) => endClient(c)));
  await broker?.stop();
  await rm(dir, { recursive: true, force: true });
});

describe("a board with a valid certificate", () => {
  it("connects and its QoS 1 telemetry reaches the ingest identity", async () => {
    const ingest = await connectAs(ids.ingest, "ingest-access-test");
    const rx = recorder(ingest);
    expect(await subscribe(ingest, ["electrolyser/+/telemetry"])).toEqual([1]);
    const dev = await connectAs(ids.devA, "dev-a");
    const payload = `reading-${randomUUID()}`;
    expect(await publishQos1(dev, "electrolyser/dev-a/telemetry", payload)).toEqual({ reasonCode: 0 });
    const got = await rx.waitFor((m) => m.payload === payload);
    expect(got).toMatchObject({ topic: "electrolyser/dev-a/telemetry", qos: 1 });
    await endClient(dev);
    await endClient(ingest);
  });

  it("reaches an ingest shared subscription ($share/...) too", async () => {
    const shared = await connectAs(ids.ingest, "ingest-shared-1");
    const rx = recorder(shared);
    expect(await subscribe(shared, ["$share/ingest/electrolyser/+/telemetry"])).toEqual([1]);
    const dev = await connectAs(ids.devB, "dev-b");
    const payload = `shared-${randomUUID()}`;
    expect((await publishQos1(dev, "electrolyser/dev-b/telemetry", payload)).reasonCode).toBe(0);
    expect(await rx.waitFor((m) => m.payload === payload)).toMatchObject({
      topic: "electrolyser/dev-b/telemetry",
    });
    await endClient(dev);
    await endClient(shared);
  });

  it("has a retained last will on its status topic that ingest receives when the board drops", async () => {
    const will = `offline-${randomUUID()}`;
    const dev = await connectAs(ids.devB, "dev-b-will", {
      will: { topic: "electrolyser/dev-b/status", payload: Buffer.from(will), qos: 1, retain: true },
    });
    expect((await publishQos1(dev, "electrolyser/dev-b/status", "online", true)).reasonCode).toBe(0);
    await observerRx.waitFor((m) => m.topic === "electrolyser/dev-b/status" && m.payload === "online");
    // Ungraceful loss (no DISCONNECT), as when a board loses power.
    dev.stream.destroy();
    await observerRx.waitFor((m) => m.topic === "electrolyser/dev-b/status" && m.payload === will);
    // A late subscriber gets the will as the retained status.
    const late = await connectAs(ids.ingest, "ingest-late");
    const rx = recorder(late);
    await subscribe(late, ["electrolyser/dev-b/status"]);
    expect(await rx.waitFor((m) => m.payload === will)).toMatchObject({ retain: true });
    await endClient(late);
  });

  it("connects with TLS 1.3 by default (Node client) and negotiates only AES-GCM", async () => {
    const r = await tryConnect(opts(ids.devA, "dev-a-tls13"));
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    opened.push(r.client);
    expect(r.tls.protocol).toBe("TLSv1.3");
    expect(r.tls.cipher).toMatch(/^TLS_AES_(128|256)_GCM_SHA(256|384)$/);
    await endClient(r.client);
  });
});

describe("the firmware's TLS profile", () => {
  it("TLS 1.2 limited to ECDHE-RSA-AES128-GCM-SHA256 with an RSA client key connects and publishes", async () => {
    const r = await tryConnect(
      opts(ids.devRsa, "dev-rsa", {
        tls: { minVersion: "TLSv1.2", maxVersion: "TLSv1.2", ciphers: "ECDHE-RSA-AES128-GCM-SHA256" },
      }),
    );
    expect(r.ok ? "connected" : r.error).toBe("connected");
    if (!r.ok) return;
    opened.push(r.client);
    expect(r.tls).toEqual({ protocol: "TLSv1.2", cipher: "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256" });
    const payload = `fw-${randomUUID()}`;
    expect((await publishQos1(r.client, "electrolyser/dev-rsa/telemetry", payload)).reasonCode).toBe(0);
    await observerRx.waitFor((m) => m.payload === payload);
    await endClient(r.client);
  });

  it.each([
    // DHE breaks the firmware's client-certificate handshake.
    {
      offers: "only DHE",
      ciphers: "DHE-RSA-AES128-GCM-SHA256",
      error: /handshake failure|no shared cipher|no cipher/i,
    },
    {
      offers: "only non-AEAD (CBC) suites",
      ciphers: "ECDHE-RSA-AES128-SHA256:ECDHE-RSA-AES128-SHA",
      error: undefined,
    },
  ])("refuses a TLS 1.2 client that offers $offers", async ({ ciphers, error }) => {
    const r = await tlsHandshake({
      host: broker.host,
      port: broker.port,
      ca: caPem,
      cert: ids.devRsa.certPem,
      key: ids.devRsa.keyPem,
      maxVersion: "TLSv1.2",
      ciphers,
    });
    expect(r.ok).toBe(false);
    if (!r.ok && error) expect(r.error).toMatch(error);
  });

  describe("TLS 1.1", () => {
    let control: Server;
    let controlPort: number;
    beforeAll(async () => {
      // Same client settings against a server that allows TLS 1.1: proves the client
      // really offers TLS 1.1, so the broker's refusal is the broker's doing.
      control = createServer({
        cert: pki.brokerCert.certPem,
        key: pki.brokerCert.keyPem,
        minVersion: "TLSv1.1",
        maxVersion: "TLSv1.1",
        ciphers: "DEFAULT@SECLEVEL=0",
      });
      control.on("secureConnection", (s) => s.end());
      control.on("tlsClientError", () => undefined);
      await new Promise<void>((r) => control.listen(0, "127.0.0.1", () => r()));
      const a = control.address();
      controlPort = typeof a === "object" && a ? a.port : 0;
    });
    afterAll(() => new Promise<void>((r) => control.close(() => r())));

    const tls11 = { minVersion: "TLSv1.1", maxVersion: "TLSv1.1", ciphers: "DEFAULT@SECLEVEL=0" } as const;

    it("the control server completes a TLS 1.1 handshake with this client", async () => {
      const r = await tlsHandshake({ host: "127.0.0.1", port: controlPort, ca: caPem, ...tls11 });
      expect(r).toMatchObject({ ok: true, protocol: "TLSv1.1" });
    });

    it("the broker refuses the same TLS 1.1 client (protocol version alert), even with a valid certificate", async () => {
      const r = await tlsHandshake({
        host: broker.host,
        port: broker.port,
        ca: caPem,
        cert: ids.devRsa.certPem,
        key: ids.devRsa.keyPem,
        ...tls11,
      });
      expect(r.ok).toBe(false);
      if (!r.ok) expect(r.error).toMatch(/protocol version|unsupported protocol|wrong version/i);
      const m = await tryConnect(opts(ids.devRsa, "dev-rsa-tls11", { tls: tls11 }));
      expect(m.ok).toBe(false);
    });
  });
});

describe("the broker refuses a connection", () => {
  it("without a client certificate (no CONNACK)", async () => {
    const r = await tryConnect(opts(undefined, "no-cert"));
    expect(r.ok).toBe(false);
    if (!r.ok) {
      expect(r.connack).toBeUndefined();
      expect(r.error).toMatch(/certificate required|handshake failure|closed|ECONNRESET/i);
    }
  });

  it("without a client certificate over TLS 1.2 (handshake fails)", async () => {
    const r = await tlsHandshake({ host: broker.host, port: broker.port, ca: caPem, maxVersion: "TLSv1.2" });
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.error).toMatch(/handshake failure|certificate/i);
  });

  it("with a certificate from another CA, even with a fleet device's CN", async () => {
    const r = await tryConnect(opts(ids.foreign, "dev-a-foreign"));
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.error).toMatch(/unknown ca|certificate/i);
  });

  it("with an expired certificate", async () => {
    const r = await tryConnect(opts(ids.expired, "dev-a-expired"));
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.error).toMatch(/certificate expired/i);
  });

  it("with a certificate that is not yet valid", async () => {
    const r = await tryConnect(opts(ids.notYetValid, "dev-a-future"));
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.error).toMatch(/certificate|bad/i);
  });

  it("with the broker's own server certificate (serverAuth only) used as a client identity", async () => {
    const r = await tryConnect(opts(pki.brokerCert, "broker-as-client"));
    expect(r.ok).toBe(false);
  });
});

describe("a connected board cannot reach other boards' topics", () => {
  it("its publish to another board's telemetry and status is refused (PUBACK 0x87) and never delivered", async () => {
    const dev = await connectAs(ids.devA, "dev-a-spoof");
    const spoof = `spoof-${randomUUID()}`;
    expect(await publishQos1(dev, "electrolyser/dev-b/telemetry", spoof)).toEqual({
      reasonCode: NOT_AUTHORIZED,
    });
    expect(await publishQos1(dev, "electrolyser/dev-b/status", spoof)).toEqual({
      reasonCode: NOT_AUTHORIZED,
    });
    await assertNeverDelivered(dev, "dev-a", spoof);
    await endClient(dev);
  });

  it("its MQTT 3.1.1 publish to another board's topic is silently dropped (never delivered)", async () => {
    const dev = await connectAs(ids.devA, "dev-a-spoof-v4", { protocolVersion: 4 });
    const spoof = `spoof-v4-${randomUUID()}`;
    await publishQos1(dev, "electrolyser/dev-b/telemetry", spoof);
    await assertNeverDelivered(dev, "dev-a", spoof);
    await endClient(dev);
  });

  it("it cannot publish outside its write rights (its own downlink, other trees, $SYS)", async () => {
    const dev = await connectAs(ids.devA, "dev-a-outside");
    for (const topic of [
      "electrolyser/dev-a/down/stored",
      "electrolyser/dev-a/other",
      "electrolyser/dev-a",
      "other/dev-a/telemetry",
      "$SYS/broker/x",
    ]) {
      expect({ topic, ...(await publishQos1(dev, topic, "x")) }).toEqual({
        topic,
        reasonCode: NOT_AUTHORIZED,
      });
    }
    await endClient(dev);
  });

  it("its subscriptions to #, + filters, $share and another board's topics deliver nothing of other boards (not even retained)", async () => {
    const victim = await connectAs(ids.devB, "dev-b-victim");
    const retained = `retained-${randomUUID()}`;
    expect((await publishQos1(victim, "electrolyser/dev-b/status", retained, true)).reasonCode).toBe(0);
    await observerRx.waitFor((m) => m.payload === retained);

    const spy = await connectAs(ids.devA, "dev-a-spy");
    const spyRx = recorder(spy);
    const filters = [
      "#",
      "electrolyser/#",
      "electrolyser/+/telemetry",
      "electrolyser/dev-b/telemetry",
      "electrolyser/dev-b/status",
      "$share/g/electrolyser/+/telemetry",
    ];
    // Mosquitto 2.0's ACL file does not refuse SUBSCRIBE (it grants it and filters on delivery).
    const granted = await subscribe(spy, filters);
    expect(granted).toHaveLength(filters.length);

    const secret = `secret-${randomUUID()}`;
    expect((await publishQos1(victim, "electrolyser/dev-b/telemetry", secret)).reasonCode).toBe(0);
    await observerRx.waitFor((m) => m.payload === secret);
    // Routing to every subscriber happens while the broker handles that PUBLISH; a SUBACK
    // round trip afterwards plus a short grace covers the spy's socket.
    await subscribe(spy, ["electrolyser/dev-a/command"]);
    await sleep(200);
    expect(spyRx.messages).toEqual([]);
    await endClient(spy);
    await endClient(victim);
  });

  it("the ingest identity cannot publish into a board's topics", async () => {
    const svc = await connectAs(ids.ingest, "ingest-spoof");
    const spoof = `ingest-spoof-${randomUUID()}`;
    expect(await publishQos1(svc, "electrolyser/dev-a/telemetry", spoof)).toEqual({
      reasonCode: NOT_AUTHORIZED,
    });
    expect(await publishQos1(svc, "electrolyser/dev-a/command", spoof)).toEqual({
      reasonCode: NOT_AUTHORIZED,
    });
    await endClient(svc);
  });
});

describe("the downlink (electrolyser/<id>/down/#)", () => {
  it("only the ingest writes a board's stored confirmations; the board reads its own, never another's", async () => {
    const a = await connectAs(ids.devA, "dev-a-down");
    const aRx = recorder(a);
    await subscribe(a, ["electrolyser/dev-a/down/#"]);
    const b = await connectAs(ids.devB, "dev-b-down");
    const bRx = recorder(b);
    // Mosquitto grants the SUBSCRIBE and filters each delivery by the read rights.
    await subscribe(b, [
      "electrolyser/dev-a/down/#",
      "electrolyser/+/down/stored",
      "electrolyser/dev-b/down/#",
    ]);
    const svc = await connectAs(ids.ingest, "ingest-down");

    const forA = `stored-a-${randomUUID()}`;
    expect((await publishQos1(svc, "electrolyser/dev-a/down/stored", forA)).reasonCode).toBe(0);
    await aRx.waitFor((m) => m.payload === forA);
    // A board cannot confirm its own readings, nor another's.
    const own = `own-${randomUUID()}`;
    expect(await publishQos1(a, "electrolyser/dev-a/down/stored", own)).toEqual({
      reasonCode: NOT_AUTHORIZED,
    });
    expect(await publishQos1(b, "electrolyser/dev-a/down/stored", own)).toEqual({
      reasonCode: NOT_AUTHORIZED,
    });
    // The ingest writes confirmations only: not trust or config, not its own name's tree.
    for (const topic of [
      "electrolyser/dev-a/down/trust",
      "electrolyser/dev-a/down/config",
      "electrolyser/ingest/down/stored",
    ])
      expect({ topic, ...(await publishQos1(svc, topic, own)) }).toEqual({
        topic,
        reasonCode: NOT_AUTHORIZED,
      });
    // Barrier: a later message for B arrives at B, so A's confirmation would have arrived first.
    const forB = `stored-b-${randomUUID()}`;
    expect((await publishQos1(svc, "electrolyser/dev-b/down/stored", forB)).reasonCode).toBe(0);
    await bRx.waitFor((m) => m.payload === forB);
    await subscribe(a, ["electrolyser/dev-a/down/#"]);
    // (Once per matching subscription: two of B's filters match its own confirmation.)
    expect(new Set(bRx.messages.map((m) => m.payload))).toEqual(new Set([forB]));
    expect(aRx.messages.map((m) => m.payload)).toEqual([forA]);
    await endClient(a);
    await endClient(b);
    await endClient(svc);
  });
});

describe("service identities publish no telemetry, not even under their own name", () => {
  it("ingest, monitor, telegraf and bridge: their own telemetry and status topics are refused (PUBACK 0x87) and never delivered", async () => {
    // Before: `pattern write electrolyser/%u/telemetry` let every service CN publish there, and the Telegraf path stored it.
    // Two watchers: monitor (the file's observer) and telegraf, which also sees monitor's own telemetry topic.
    const watcher = await connectAs(ids.telegraf, "telegraf-watch-services");
    const rx = recorder(watcher);
    expect(await subscribe(watcher, ["electrolyser/+/telemetry"])).toEqual([1]);
    const spoofs: string[] = [];
    for (const which of ["ingest", "bridge", "monitor", "telegraf"] as const) {
      const svc =
        which === "monitor"
          ? observer
          : which === "telegraf"
            ? watcher
            : await connectAs(ids[which], `${which}-own-topic`);
      for (const kind of ["telemetry", "status"]) {
        const spoof = `${which}-${kind}-${randomUUID()}`;
        spoofs.push(spoof);
        const topic = `electrolyser/${ids[which].cn}/${kind}`;
        expect({ topic, ...(await publishQos1(svc, topic, spoof)) }).toEqual({
          topic,
          reasonCode: NOT_AUTHORIZED,
        });
      }
      if (which === "ingest" || which === "bridge") await endClient(svc);
    }
    // A board's reading after all of them, then a SUBACK round trip and a grace for the watcher's socket.
    const dev = await connectAs(ids.devA, "dev-a-after-services");
    const marker = `after-services-${randomUUID()}`;
    expect((await publishQos1(dev, "electrolyser/dev-a/telemetry", marker)).reasonCode).toBe(0);
    await rx.waitFor((m) => m.payload === marker);
    await observerRx.waitFor((m) => m.payload === marker);
    await subscribe(watcher, ["electrolyser/dev-a/status"]);
    await sleep(200);
    expect(rx.messages.filter((m) => spoofs.includes(m.payload))).toEqual([]);
    expect(observerRx.messages.filter((m) => spoofs.includes(m.payload))).toEqual([]);
    await endClient(dev);
    await endClient(watcher);
  });
});

describe("the telegraf identity", () => {
  it("reads telemetry but not status, and cannot publish", async () => {
    const tg = await connectAs(ids.telegraf, "telegraf-electrolyser");
    const rx = recorder(tg);
    await subscribe(tg, ["electrolyser/+/telemetry", "electrolyser/+/status"]);
    const dev = await connectAs(ids.devA, "dev-a-for-telegraf");
    const status = `status-${randomUUID()}`;
    const reading = `reading-${randomUUID()}`;
    expect((await publishQos1(dev, "electrolyser/dev-a/status", status)).reasonCode).toBe(0);
    expect((await publishQos1(dev, "electrolyser/dev-a/telemetry", reading)).reasonCode).toBe(0);
    // Same publisher, in order: once the reading is in, the status would have been too.
    await rx.waitFor((m) => m.payload === reading);
    await observerRx.waitFor((m) => m.payload === status);
    expect(rx.messages.map((m) => m.payload)).not.toContain(status);
    expect(await publishQos1(tg, "electrolyser/dev-a/telemetry", "x")).toEqual({
      reasonCode: NOT_AUTHORIZED,
    });
    await endClient(dev);
    await endClient(tg);
  });
});

describe("the monitor identity", () => {
  it("reads every board's telemetry and status", async () => {
    const dev = await connectAs(ids.devA, "dev-a-for-monitor");
    const status = `status-${randomUUID()}`;
    const reading = `reading-${randomUUID()}`;
    expect((await publishQos1(dev, "electrolyser/dev-a/status", status)).reasonCode).toBe(0);
    expect((await publishQos1(dev, "electrolyser/dev-a/telemetry", reading)).reasonCode).toBe(0);
    expect(await observerRx.waitFor((m) => m.payload === status)).toMatchObject({
      topic: "electrolyser/dev-a/status",
    });
    expect(await observerRx.waitFor((m) => m.payload === reading)).toMatchObject({
      topic: "electrolyser/dev-a/telemetry",
    });
    await endClient(dev);
  });

  it("cannot publish into a board's topics (refused, never delivered)", async () => {
    const spoof = `monitor-spoof-${randomUUID()}`;
    for (const topic of [
      "electrolyser/dev-a/telemetry",
      "electrolyser/dev-a/status",
      "electrolyser/dev-a/command",
    ]) {
      expect({ topic, ...(await publishQos1(observer, topic, spoof)) }).toEqual({
        topic,
        reasonCode: NOT_AUTHORIZED,
      });
    }
    const dev = await connectAs(ids.devA, "dev-a-after-monitor");
    await assertNeverDelivered(dev, "dev-a", spoof);
    await endClient(dev);
  });
});

describe("one session per identity (client id := certificate CN, the default)", () => {
  it('a board connecting with client id "ingest" does not disconnect the ingest, which keeps receiving', async () => {
    const ingest = await connectAs(ids.ingest, "ingest", {
      clean: false,
      properties: { sessionExpiryInterval: 3600 },
    });
    const rx = recorder(ingest);
    let ingestClosed = false;
    ingest.on("close", () => (ingestClosed = true));
    expect(await subscribe(ingest, ["electrolyser/+/telemetry"])).toEqual([1]);
    const attacker = await connectAs(ids.devB, "ingest", {
      clean: false,
      properties: { sessionExpiryInterval: 3600 },
    });
    const attackerRx = recorder(attacker);
    await subscribe(attacker, ["electrolyser/+/telemetry"]);
    const dev = await connectAs(ids.devA, "dev-a-under-attack");
    const payload = `after-attack-${randomUUID()}`;
    expect((await publishQos1(dev, "electrolyser/dev-a/telemetry", payload)).reasonCode).toBe(0);
    expect(await rx.waitFor((m) => m.payload === payload)).toMatchObject({
      topic: "electrolyser/dev-a/telemetry",
    });
    expect(ingestClosed).toBe(false);
    // The attacker got a session of its own, named by its certificate, with no rights to the fleet's telemetry.
    expect(broker.logTail().some((l) => /New client connected .* as dev-b /.test(l))).toBe(true);
    expect(attackerRx.messages).toEqual([]);
    await endClient(dev);
    await endClient(attacker);
    await endClient(ingest);
  });

  it("a second connection with the same certificate replaces the first, whatever client id it sends", async () => {
    const first = await connectAs(ids.ingest, "ingest-first");
    const closed = new Promise<void>((resolve) => first.once("close", () => resolve()));
    const second = await connectAs(ids.ingest, "ingest-second");
    await closed;
    expect(second.connected).toBe(true);
    await endClient(second);
  });
});

describe("a certificate whose CN holds MQTT wildcards", () => {
  for (const which of ["wildPlus", "wildHash"] as const) {
    it(`CN "${which === "wildPlus" ? "+" : "#"}" gets no rights: its publish as another board is refused and never delivered`, async () => {
      const id = ids[which];
      expect(subjectCn(id.certPem)).toEqual([id.cn]);
      const r = await tryConnect(opts(id, `wild-${which}`));
      // Mosquitto accepts the TLS identity but denies every pattern right to such a username.
      expect(r.ok).toBe(true);
      if (!r.ok) return;
      opened.push(r.client);
      const spoof = `wild-${randomUUID()}`;
      expect(await publishQos1(r.client, "electrolyser/dev-a/telemetry", spoof)).toEqual({
        reasonCode: NOT_AUTHORIZED,
      });
      expect(await publishQos1(r.client, "electrolyser/dev-a/status", spoof)).toEqual({
        reasonCode: NOT_AUTHORIZED,
      });
      // Barrier through a legitimate board: the spoof, handled earlier, would be there by now.
      const dev = await connectAs(ids.devA, `dev-a-after-${which}`);
      await assertNeverDelivered(dev, "dev-a", spoof);
      expect(observerRx.messages.some((m) => m.payload === spoof)).toBe(false);
      expect(broker.logTail().some((l) => l.includes(`dangerous username "${id.cn}"`))).toBe(true);
      await endClient(dev);
      await endClient(r.client);
    });
  }

  it('CN "+" reading the downlink pattern gets no board\'s confirmations', async () => {
    const r = await tryConnect(opts(ids.wildPlus, "wild-reader"));
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    opened.push(r.client);
    const rx = recorder(r.client);
    await subscribe(r.client, ["electrolyser/+/down/#", "electrolyser/+/telemetry"]);
    const dev = await connectAs(ids.devA, "dev-a-wild-reader");
    const svc = await connectAs(ids.ingest, "ingest-wild-reader");
    const payload = `visible-only-to-readers-${randomUUID()}`;
    expect((await publishQos1(svc, "electrolyser/dev-a/down/stored", payload)).reasonCode).toBe(0);
    expect((await publishQos1(dev, "electrolyser/dev-a/telemetry", payload)).reasonCode).toBe(0);
    await observerRx.waitFor((m) => m.payload === payload);
    await subscribe(r.client, ["electrolyser/x/down/#"]);
    await sleep(200);
    expect(rx.messages).toEqual([]);
    await endClient(svc);
    await endClient(dev);
    await endClient(r.client);
  });
});
