/**
 * Who may hand a board a new identity, checked against Debian's mosquitto with the project's configuration and
 * ACL: only `fleet-admin` writes `electrolyser/<id>/down/trust` (and `down/config`), and only that board reads
 * it. (The message is also sealed under the board's payload key, firmware/src/identity/trust-message.ts: the
 * ACL is the first of two locks, not the only one.) A board's answer to a key request, `electrolyser/<id>/csr`, is
 * written by that board only and read (and cleared) by fleet-admin only; it is sealed too
 * (firmware/src/identity/key-request-message.ts).
 */
import { randomUUID } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { MqttClient } from "mqtt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startMosquitto, type MosquittoHandle } from "../../src/broker/mosquitto";
import { createBrokerTestPki, issue, type BrokerTestPki, type IssuedCert } from "./helpers/test-pki";
import { endClient, mustConnect, publishQos1, recorder, subscribe } from "./helpers/clients";

const NOT_AUTHORIZED = 0x87;

let dir: string;
let pki: BrokerTestPki;
let broker: MosquittoHandle;
const ids = {} as Record<"fleetAdmin" | "ingest" | "monitor" | "devA" | "devB", IssuedCert>;
const opened: MqttClient[] = [];

async function connectAs(identity: IssuedCert, clientId: string): Promise<MqttClient> {
  const c = await mustConnect({ url: broker.url, ca: pki.ca.certPem, identity, clientId });
  opened.push(c);
  return c;
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "est-fleet-admin-"));
  pki = await createBrokerTestPki(dir);
  const client = { usage: "client" as const, kind: "p256" as const };
  const [fleetAdmin, ingest, monitor, devA, devB] = await Promise.all(
    ["fleet-admin", "ingest", "monitor", "dev-a", "dev-b"].map((cn) => issue(pki.ca, { cn, ...client })),
  );
  Object.assign(ids, { fleetAdmin, ingest, monitor, devA, devB });
  broker = await startMosquitto({ pki: pki.paths, dataDir: join(dir, "data") });
});

afterAll(async () => {
  await Promise.all(opened.map((c) => endClient(c)));
  await broker?.stop();
  await rm(dir, { recursive: true, force: true });
});

describe("electrolyser/<id>/down/trust", () => {
  it("fleet-admin writes a board's trust and config; a board, the ingest and monitor may not; only that board reads it", async () => {
    const a = await connectAs(ids.devA, "dev-a-trust");
    const aRx = recorder(a);
    await subscribe(a, ["electrolyser/dev-a/down/#"]);
    const b = await connectAs(ids.devB, "dev-b-trust");
    const bRx = recorder(b);
    // Mosquitto grants these SUBSCRIBEs and filters each delivery by the read rights.
    await subscribe(b, [
      "electrolyser/dev-a/down/#",
      "electrolyser/+/down/trust",
      "electrolyser/dev-b/down/#",
    ]);
    const admin = await connectAs(ids.fleetAdmin, "fleet-admin-trust");
    const adminRx = recorder(admin);
    await subscribe(admin, ["electrolyser/+/down/#", "electrolyser/+/telemetry"]);
    const ingest = await connectAs(ids.ingest, "ingest-trust");
    const ingestRx = recorder(ingest);
    await subscribe(ingest, ["electrolyser/+/down/trust"]);
    const monitor = await connectAs(ids.monitor, "monitor-trust");
    const monitorRx = recorder(monitor);
    await subscribe(monitor, ["electrolyser/+/down/#"]);

    const trust = `trust-a-${randomUUID()}`;
    const config = `config-a-${randomUUID()}`;
    expect((await publishQos1(admin, "electrolyser/dev-a/down/trust", trust)).reasonCode).toBe(0);
    expect((await publishQos1(admin, "electrolyser/dev-a/down/config", config)).reasonCode).toBe(0);
    await aRx.waitFor((m) => m.payload === config);

    // Nobody else can hand dev-a a new identity, dev-a itself included.
    const forged = `forged-${randomUUID()}`;
    for (const [who, c] of [
      ["dev-a", a],
      ["dev-b", b],
      ["ingest", ingest],
      ["monitor", monitor],
    ] as const)
      expect({ who, ...(await publishQos1(c, "electrolyser/dev-a/down/trust", forged)) }).toEqual({
        who,
        reasonCode: NOT_AUTHORIZED,
      });
    // fleet-admin writes trust and config only: not confirmations, telemetry, or its own name's tree.
    for (const topic of [
      "electrolyser/dev-a/down/stored",
      "electrolyser/dev-a/telemetry",
      "electrolyser/dev-a/status",
      "electrolyser/fleet-admin/down/trust",
    ])
      expect({ topic, ...(await publishQos1(admin, topic, forged)) }).toEqual({
        topic,
        reasonCode: NOT_AUTHORIZED,
      });

    // Barrier: a later message for dev-b reaches dev-b, so anything for dev-a would have reached it first.
    const forB = `trust-b-${randomUUID()}`;
    expect((await publishQos1(admin, "electrolyser/dev-b/down/trust", forB)).reasonCode).toBe(0);
    await bRx.waitFor((m) => m.payload === forB);
    // And a QoS 1 round trip on each reader's own connection, so deliveries to it have been flushed.
    for (const c of [a, admin, ingest, monitor]) await subscribe(c, ["electrolyser/none/down/#"]);

    expect(aRx.messages.map((m) => [m.topic, m.payload])).toEqual([
      ["electrolyser/dev-a/down/trust", trust],
      ["electrolyser/dev-a/down/config", config],
    ]);
    expect(new Set(bRx.messages.map((m) => m.payload))).toEqual(new Set([forB]));
    expect(adminRx.messages).toEqual([]);
    expect(ingestRx.messages).toEqual([]);
    expect(monitorRx.messages).toEqual([]);
  });
});

describe("electrolyser/<id>/csr", () => {
  it("only the board writes its answer; only fleet-admin reads it, and may clear it", async () => {
    const admin = await connectAs(ids.fleetAdmin, "fleet-admin-csr");
    const adminRx = recorder(admin);
    await subscribe(admin, ["electrolyser/+/csr"]);
    const a = await connectAs(ids.devA, "dev-a-csr");
    const b = await connectAs(ids.devB, "dev-b-csr");
    const bRx = recorder(b);
    await subscribe(b, ["electrolyser/+/csr"]);
    const ingest = await connectAs(ids.ingest, "ingest-csr");
    const ingestRx = recorder(ingest);
    await subscribe(ingest, ["electrolyser/+/csr", "electrolyser/#"]);
    const monitor = await connectAs(ids.monitor, "monitor-csr");
    const monitorRx = recorder(monitor);
    await subscribe(monitor, ["electrolyser/+/csr"]);

    const answer = `answer-a-${randomUUID()}`;
    expect((await publishQos1(a, "electrolyser/dev-a/csr", answer)).reasonCode).toBe(0);
    await adminRx.waitFor((m) => m.payload === answer);
    // Another board cannot answer in dev-a's name, nor a service.
    const forged = `forged-${randomUUID()}`;
    for (const [who, c] of [
      ["dev-b", b],
      ["ingest", ingest],
      ["monitor", monitor],
    ] as const)
      expect({ who, ...(await publishQos1(c, "electrolyser/dev-a/csr", forged)) }).toEqual({
        who,
        reasonCode: NOT_AUTHORIZED,
      });
    // fleet-admin clears it when the rotation ends (an empty retained message).
    expect((await publishQos1(admin, "electrolyser/dev-a/csr", "")).reasonCode).toBe(0);
    for (const c of [admin, b, ingest, monitor]) await subscribe(c, ["electrolyser/none/csr"]);

    expect(adminRx.messages.map((m) => m.payload)).toEqual([answer, ""]);
    expect(bRx.messages).toEqual([]);
    expect(ingestRx.messages.filter((m) => m.topic.endsWith("/csr"))).toEqual([]);
    expect(monitorRx.messages).toEqual([]);
  });
});
