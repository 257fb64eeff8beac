/**
 * The three-node NATS cluster is the security boundary when the stack runs with `--broker nats-cluster`.
 * These tests start three real nats-server processes with the generated configuration and try the ways
 * past it that host/test/broker/broker-access.test.ts tries on Mosquitto. NATS speaks MQTT 3.1.1 only: a
 * refused PUBLISH is still PUBACKed and then dropped, so "refused" means "never delivered".
 */
import { randomUUID } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { connect as netConnect } from "node:net";
import { connect as tlsConnect } from "node:tls";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { MqttClient } from "mqtt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startNatsCluster, type NatsClusterHandle } from "../../../src/broker/nats/cluster";
import type { ClientCertificate } from "../../../src/broker/nats/fleet-users";
import {
  createBrokerTestPki,
  createCa,
  issue,
  type BrokerTestPki,
  type IssuedCert,
} from "../helpers/test-pki";
import {
  endClient,
  mustConnect,
  publishQos1,
  recorder,
  sleep,
  subscribe,
  tryConnect,
  type ConnectOptions,
} from "../helpers/clients";
import { tlsHandshake } from "../helpers/tls-probe";

const DAY = 86_400_000;

let dir: string;
let pki: BrokerTestPki;
let cluster: NatsClusterHandle;
let caPem: string;
type Name =
  | "ingest"
  | "monitor"
  | "telegraf"
  | "devA"
  | "devB"
  | "devRsa"
  | "devC"
  | "devCOld"
  | "expired"
  | "notYetValid"
  | "wildPlus"
  | "foreign";
const ids = {} as Record<Name, IssuedCert>;
/** What the PKI "holds": the test changes it and calls cluster.refresh(), as a revocation would. */
let held: ClientCertificate[] = [];
let observer: MqttClient;
let observerRx: ReturnType<typeof recorder>;
const opened: MqttClient[] = [];

function opts(
  identity: IssuedCert | undefined,
  clientId: string,
  node = 0,
  extra: Partial<ConnectOptions> = {},
): ConnectOptions {
  return { url: cluster.urls[node] ?? "", ca: caPem, identity, clientId, protocolVersion: 4, ...extra };
}

async function connectAs(
  identity: IssuedCert,
  clientId: string,
  node = 0,
  extra: Partial<ConnectOptions> = {},
): Promise<MqttClient> {
  const c = await mustConnect(opts(identity, clientId, node, extra));
  opened.push(c);
  return c;
}

/** The same publisher then sends a permitted message; once the observer has it, the first would have arrived. */
async function assertNeverDelivered(
  publisher: MqttClient,
  publisherId: string,
  forbidden: string,
): Promise<void> {
  const marker = `barrier-${randomUUID()}`;
  expect((await publishQos1(publisher, `electrolyser/${publisherId}/telemetry`, marker)).reasonCode).toBe(0);
  await observerRx.waitFor((m) => m.payload === marker);
  expect(observerRx.messages.filter((m) => m.payload === forbidden)).toEqual([]);
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "est-nats-access-"));
  pki = await createBrokerTestPki(dir);
  caPem = pki.ca.certPem;
  const client = { usage: "client" as const };
  const foreignCa = await createCa("Foreign CA", "p256");
  const issued = await Promise.all([
    issue(pki.ca, { cn: "ingest", kind: "p256", ...client }),
    issue(pki.ca, { cn: "monitor", kind: "p256", ...client }),
    issue(pki.ca, { cn: "telegraf", kind: "p256", ...client }),
    issue(pki.ca, { cn: "dev-a", kind: "p256", ...client }),
    issue(pki.ca, { cn: "dev-b", kind: "p256", ...client }),
    issue(pki.ca, { cn: "dev-rsa", kind: "rsa", ...client }),
    issue(pki.ca, { cn: "dev-c", kind: "p256", ...client }),
    issue(pki.ca, { cn: "dev-c", kind: "p256", ...client }),
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
    issue(foreignCa, { cn: "dev-a", kind: "p256", ...client }),
  ]);
  const names: Name[] = [
    "ingest",
    "monitor",
    "telegraf",
    "devA",
    "devB",
    "devRsa",
    "devC",
    "devCOld",
    "expired",
    "notYetValid",
    "wildPlus",
    "foreign",
  ];
  names.forEach((n, i) => (ids[n] = issued[i]!));
  const svc = (c: IssuedCert): ClientCertificate => ({ kind: "service", name: c.cn, certPem: c.certPem });
  const dev = (c: IssuedCert): ClientCertificate => ({ kind: "device", name: c.cn, certPem: c.certPem });
  // Everything a careless PKI could hand over: the generator must keep out the expired, future, foreign and wildcard ones.
  held = [
    svc(ids.ingest),
    svc(ids.monitor),
    svc(ids.telegraf),
    ...[
      ids.devA,
      ids.devB,
      ids.devRsa,
      ids.devC,
      ids.devCOld,
      ids.expired,
      ids.notYetValid,
      ids.wildPlus,
      ids.foreign,
    ].map(dev),
  ];
  cluster = await startNatsCluster({
    pki: pki.paths,
    clients: async () => held,
    dataDir: join(dir, "cluster"),
  });
  observer = await connectAs(ids.monitor, "monitor-access-test", 2);
  observerRx = recorder(observer);
  expect(await subscribe(observer, ["electrolyser/+/telemetry", "electrolyser/+/status"])).toEqual([1, 1]);
}, 120_000);

afterAll(async () => {
  await Promise.all(opened.map((c) => endClient(c)));
  await cluster?.stop();
  await rm(dir, { recursive: true, force: true });
});

describe("the generated users", () => {
  it("leave out the expired, not-yet-valid, foreign and wildcard certificates, with a reason each", () => {
    expect(cluster.current.users.map((u) => u.name).sort()).toEqual([
      "dev-a",
      "dev-b",
      "dev-c",
      "dev-rsa",
      "ingest",
      "monitor",
      "telegraf",
    ]);
    expect(cluster.current.skipped.map((s) => `${s.name}: ${s.reason}`)).toEqual(
      expect.arrayContaining([
        "dev-a: expired",
        "dev-a: not yet valid",
        expect.stringMatching(/^\+: the name contains/),
      ]),
    );
  });
});

describe("a board with a valid certificate", () => {
  it("publishes QoS 1 on one node and the ingest, on another node, receives it", async () => {
    const ingest = await connectAs(ids.ingest, "ingest-access-test", 0);
    const rx = recorder(ingest);
    expect(await subscribe(ingest, ["electrolyser/+/telemetry"])).toEqual([1]);
    const dev = await connectAs(ids.devA, "dev-a", 1);
    const payload = `reading-${randomUUID()}`;
    expect(await publishQos1(dev, "electrolyser/dev-a/telemetry", payload)).toEqual({ reasonCode: 0 });
    expect(await rx.waitFor((m) => m.payload === payload)).toMatchObject({
      topic: "electrolyser/dev-a/telemetry",
      qos: 1,
    });
    await endClient(dev);
    await endClient(ingest);
  });

  it("has a retained last will on its status topic that a late subscriber on another node gets", async () => {
    const will = `offline-${randomUUID()}`;
    const dev = await connectAs(ids.devB, "dev-b-will", 1, {
      will: { topic: "electrolyser/dev-b/status", payload: Buffer.from(will), qos: 1, retain: true },
    });
    expect((await publishQos1(dev, "electrolyser/dev-b/status", "online", true)).reasonCode).toBe(0);
    await observerRx.waitFor((m) => m.topic === "electrolyser/dev-b/status" && m.payload === "online");
    dev.stream.destroy();
    await observerRx.waitFor((m) => m.topic === "electrolyser/dev-b/status" && m.payload === will, 10_000);
    const late = await connectAs(ids.ingest, "ingest-late", 0);
    const rx = recorder(late);
    await subscribe(late, ["electrolyser/dev-b/status"]);
    expect(await rx.waitFor((m) => m.payload === will)).toMatchObject({ retain: true });
    await endClient(late);
  });

  it("the firmware's profile (TLS 1.2, ECDHE-RSA-AES128-GCM-SHA256, RSA client key) connects and publishes", async () => {
    const r = await tryConnect(
      opts(ids.devRsa, "dev-rsa", 2, {
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
});

describe("every node refuses a connection", () => {
  it.each([0, 1, 2])("node %i: TLS 1.1 (protocol version), even with a valid certificate", async (node) => {
    const port = cluster.nodes[node]!.mqttPort;
    const tls11 = { minVersion: "TLSv1.1", maxVersion: "TLSv1.1", ciphers: "DEFAULT@SECLEVEL=0" } as const;
    const r = await tlsHandshake({
      host: "127.0.0.1",
      port,
      ca: caPem,
      cert: ids.devRsa.certPem,
      key: ids.devRsa.keyPem,
      ...tls11,
    });
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.error).toMatch(/protocol version|unsupported protocol|wrong version/i);
  });

  it.each([0, 1, 2])("node %i: without a client certificate", async (node) => {
    expect((await tryConnect(opts(undefined, "no-cert", node))).ok).toBe(false);
    const r = await tlsHandshake({
      host: "127.0.0.1",
      port: cluster.nodes[node]!.mqttPort,
      ca: caPem,
      maxVersion: "TLSv1.2",
    });
    expect(r.ok).toBe(false);
  });

  it.each([
    ["a certificate from another CA with a fleet device's CN", "foreign"],
    ["an expired certificate", "expired"],
    ["a certificate that is not yet valid", "notYetValid"],
    ["a certificate whose CN is an MQTT wildcard", "wildPlus"],
  ] as const)("with %s", async (_what, which) => {
    for (const node of [0, 1, 2])
      expect((await tryConnect(opts(ids[which], `bad-${which}`, node))).ok).toBe(false);
  });

  it("with the broker's own server certificate (serverAuth only) used as a client identity", async () => {
    expect((await tryConnect(opts(pki.brokerCert, "broker-as-client"))).ok).toBe(false);
  });

  it("on the NATS protocol port, a fleet certificate cannot even complete TLS (route CA only)", async () => {
    const port = cluster.nodes[0]!.ports.client;
    const error = await new Promise<string>((resolve) => {
      const raw = netConnect({ host: "127.0.0.1", port });
      raw.once("error", (e) => resolve(`tcp: ${e.message}`));
      // nats-server 2.9 sends INFO in clear, then expects the TLS upgrade.
      raw.once("data", () => {
        const s = tlsConnect({
          socket: raw,
          ca: caPem,
          cert: ids.devA.certPem,
          key: ids.devA.keyPem,
          checkServerIdentity: () => undefined,
        });
        s.once("secureConnect", () => {
          // TLS 1.3: the client finishes first; the server's verdict comes as the next read.
          s.once("data", (d: Buffer) => resolve(`data: ${d.toString()}`));
          s.once("error", (e) => resolve(e.message));
          s.once("close", () => resolve("closed"));
        });
        s.once("error", (e) => resolve(e.message));
      });
    });
    expect(error).not.toMatch(/^data: \+OK|^data: PONG|^data: INFO/);
    expect(error).toMatch(/certificate|unknown ca|closed|alert|reset|self.signed/i);
  });
});

describe("a connected board cannot reach other boards' topics", () => {
  it("its publish to another board's telemetry and status is dropped, never delivered", async () => {
    const dev = await connectAs(ids.devA, "dev-a-spoof", 1);
    const spoof = `spoof-${randomUUID()}`;
    await publishQos1(dev, "electrolyser/dev-b/telemetry", spoof);
    await publishQos1(dev, "electrolyser/dev-b/status", spoof);
    await assertNeverDelivered(dev, "dev-a", spoof);
    await endClient(dev);
  });

  it("its subscriptions to #, + filters, $MQTT internals and another board's topics are refused and deliver nothing", async () => {
    const victim = await connectAs(ids.devB, "dev-b-victim", 0);
    const retained = `retained-${randomUUID()}`;
    expect((await publishQos1(victim, "electrolyser/dev-b/status", retained, true)).reasonCode).toBe(0);
    await observerRx.waitFor((m) => m.payload === retained);
    const spy = await connectAs(ids.devA, "dev-a-spy", 1);
    const spyRx = recorder(spy);
    const filters = [
      "#",
      "electrolyser/#",
      "electrolyser/+/telemetry",
      "electrolyser/dev-b/telemetry",
      "electrolyser/dev-b/status",
      "$MQTT/sub/#",
      "$MQTT/#",
    ];
    // nats-server refuses these in its SUBACK (0x80, as mosquitto_sub shows); MQTT.js reports the requested QoS
    // for MQTT 3.1.1, so what counts here is that nothing arrives.
    expect(await subscribe(spy, filters)).toHaveLength(filters.length);
    const secret = `secret-${randomUUID()}`;
    expect((await publishQos1(victim, "electrolyser/dev-b/telemetry", secret)).reasonCode).toBe(0);
    await observerRx.waitFor((m) => m.payload === secret);
    await subscribe(spy, ["electrolyser/dev-a/command"]);
    await sleep(300);
    expect(spyRx.messages).toEqual([]);
    await endClient(spy);
    await endClient(victim);
  });

  it("services publish nothing into the boards' topics", async () => {
    const svc = await connectAs(ids.ingest, "ingest-spoof", 1);
    const spoof = `ingest-spoof-${randomUUID()}`;
    await publishQos1(svc, "electrolyser/dev-a/telemetry", spoof);
    await publishQos1(observer, "electrolyser/dev-a/status", spoof);
    const dev = await connectAs(ids.devA, "dev-a-after-services", 1);
    await assertNeverDelivered(dev, "dev-a", spoof);
    await endClient(dev);
    await endClient(svc);
  });

  it("telegraf reads telemetry but not status", async () => {
    const tg = await connectAs(ids.telegraf, "telegraf-electrolyser", 0);
    const rx = recorder(tg);
    expect(await subscribe(tg, ["electrolyser/+/telemetry", "electrolyser/+/status"])).toHaveLength(2);
    const dev = await connectAs(ids.devA, "dev-a-for-telegraf", 2);
    const status = `status-${randomUUID()}`;
    const reading = `reading-${randomUUID()}`;
    expect((await publishQos1(dev, "electrolyser/dev-a/status", status)).reasonCode).toBe(0);
    expect((await publishQos1(dev, "electrolyser/dev-a/telemetry", reading)).reasonCode).toBe(0);
    await rx.waitFor((m) => m.payload === reading);
    await observerRx.waitFor((m) => m.payload === status);
    expect(rx.messages.map((m) => m.payload)).not.toContain(status);
    await endClient(dev);
    await endClient(tg);
  });
});

describe("revocation (regenerate, then reload or rolling restart)", () => {
  it("a revoked board is refused on every node after refresh(), and its open connection is closed", async () => {
    const before = await connectAs(ids.devB, "dev-b-before-revoke", 2);
    const closed = new Promise<void>((r) => before.once("close", () => r()));
    await pki.revoke([ids.devB.serial]);
    const result = await cluster.refresh();
    expect(result.skipped).toEqual(
      expect.arrayContaining([expect.objectContaining({ name: "dev-b", reason: "revoked" })]),
    );
    // Its public key is no longer pinned: that is an MQTT setting, which 2.9 only takes on a restart.
    expect(result.restarted).toEqual(["n1", "n2", "n3"]);
    await closed;
    for (const node of [0, 1, 2])
      expect((await tryConnect(opts(ids.devB, "dev-b-revoked", node))).ok).toBe(false);
    // Everyone else still gets in.
    await endClient(await connectAs(ids.devA, "dev-a-after-revoke", 0));
  }, 120_000);

  it("the revoked old certificate of a rotated board is refused while its new one (same DN) still connects", async () => {
    await endClient(await connectAs(ids.devCOld, "dev-c-old-before", 1));
    await pki.revoke([ids.devB.serial, ids.devCOld.serial]);
    const result = await cluster.refresh();
    expect(result.restarted).toEqual(["n1", "n2", "n3"]);
    for (const node of [0, 1, 2]) {
      expect((await tryConnect(opts(ids.devCOld, "dev-c-old", node))).ok).toBe(false);
      await endClient(await connectAs(ids.devC, `dev-c-new-${node}`, node));
    }
  }, 120_000);

  it("a board removed from the fleet (its certificate still valid) is refused on every node", async () => {
    held = held.filter((c) => c.name !== "dev-rsa");
    const pinnedBefore = cluster.current.pins;
    const result = await cluster.refresh();
    expect(cluster.current.pins.length).toBe(pinnedBefore.length - 1);
    expect(result.restarted).toEqual(["n1", "n2", "n3"]);
    for (const node of [0, 1, 2])
      expect((await tryConnect(opts(ids.devRsa, "dev-rsa-removed", node))).ok).toBe(false);
  }, 120_000);
});
