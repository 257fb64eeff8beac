/**
 * QoS 1 telemetry queued for the ingest service's persistent session while ingest is away
 * must survive a broker restart (persistence true, fixed client id, non-clean session).
 */
import { randomUUID } from "node:crypto";
import { mkdtemp, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { MqttClient } from "mqtt";
import { afterAll, beforeAll, expect, it } from "vitest";
import { startMosquitto, type MosquittoHandle } from "../../src/broker/mosquitto";
import { createBrokerTestPki, issue, type BrokerTestPki, type IssuedCert } from "./helpers/test-pki";
import {
  endClient,
  mustConnect,
  publishQos1,
  recorder,
  subscribe,
  tryConnect,
  type ConnectOptions,
} from "./helpers/clients";

let dir: string;
let pki: BrokerTestPki;
let broker: MosquittoHandle;
let ingestId: IssuedCert;
let dev: IssuedCert;
const clients: MqttClient[] = [];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "est-broker-persist-"));
  pki = await createBrokerTestPki(dir);
  [ingestId, dev] = (await Promise.all(
    ["ingest", "dev-p"].map((cn) => issue(pki.ca, { cn, kind: "p256", usage: "client" })),
  )) as [IssuedCert, IssuedCert];
  broker = await startMosquitto({ pki: pki.paths, dataDir: join(dir, "data") });
});

afterAll(async () => {
  await Promise.all(clients.map((c) => endClient(c)));
  await broker?.stop();
  await rm(dir, { recursive: true, force: true });
});

for (const protocolVersion of [4, 5] as const) {
  it(`QoS 1 messages queued for a persistent ingest session (MQTT ${protocolVersion === 4 ? "3.1.1" : "5"}) survive a broker restart`, async () => {
    const ca = pki.ca.certPem;
    const clientId = `ingest-persistent-v${protocolVersion}`;
    const ingestOpts: ConnectOptions = {
      url: broker.url,
      ca,
      identity: ingestId,
      clientId,
      protocolVersion,
      clean: false,
      // MQTT 5: the session must outlive the connection (3.1.1: clean=false is enough).
      ...(protocolVersion === 5 ? { properties: { sessionExpiryInterval: 3600 } } : {}),
    };
    const first = await mustConnect(ingestOpts);
    expect(await subscribe(first, ["electrolyser/+/telemetry"], 1)).toEqual([1]);
    await endClient(first);

    const board = await mustConnect({
      url: broker.url,
      ca,
      identity: dev,
      clientId: `dev-p-v${protocolVersion}`,
    });
    const run = randomUUID();
    const sent = Array.from({ length: 20 }, (_, i) => `${run}-${i}`);
    for (const p of sent)
      expect((await publishQos1(board, "electrolyser/dev-p/telemetry", p)).reasonCode).toBe(0);
    await endClient(board);

    await broker.restart();
    expect((await stat(join(broker.dataDir, "mosquitto.db"))).size).toBeGreaterThan(0);

    const again = await tryConnect(ingestOpts);
    expect(again.ok).toBe(true);
    if (!again.ok) return;
    clients.push(again.client);
    expect(again.connack.sessionPresent).toBe(true);
    const rx = recorder(again.client);
    await rx.waitFor((m) => m.payload === sent[sent.length - 1]);
    const got = rx.messages.filter((m) => m.payload.startsWith(run)).map((m) => m.payload);
    expect(got).toEqual(sent);
    expect(rx.messages.every((m) => m.qos === 1 && m.topic === "electrolyser/dev-p/telemetry")).toBe(true);
  });
}
