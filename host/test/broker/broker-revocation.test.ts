/**
 * Revocation end to end at the broker: the CRL is rewritten (as `npm run pki -- revoke`
 * does) and the broker restarted, which is the documented step that makes it enforce it.
 */
import { randomUUID } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { MqttClient } from "mqtt";
import { afterAll, beforeAll, expect, it } from "vitest";
import { startMosquitto, type MosquittoHandle } from "../../src/broker/mosquitto";
import { createBrokerTestPki, issue, type BrokerTestPki, type IssuedCert } from "./helpers/test-pki";
import { endClient, mustConnect, publishQos1, recorder, subscribe, tryConnect } from "./helpers/clients";

let dir: string;
let pki: BrokerTestPki;
let broker: MosquittoHandle;
let ingestId: IssuedCert;
let revoked: IssuedCert;
let kept: IssuedCert;
const clients: MqttClient[] = [];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "est-broker-revoke-"));
  pki = await createBrokerTestPki(dir);
  [ingestId, revoked, kept] = (await Promise.all(
    ["ingest", "dev-revoked", "dev-kept"].map((cn) => issue(pki.ca, { cn, kind: "p256", usage: "client" })),
  )) as [IssuedCert, IssuedCert, IssuedCert];
  broker = await startMosquitto({ pki: pki.paths, dataDir: join(dir, "data") });
});

afterAll(async () => {
  await Promise.all(clients.map((c) => endClient(c)));
  await broker?.stop();
  await rm(dir, { recursive: true, force: true });
});

it("a revoked board is refused after the broker restarts; other boards are not affected", async () => {
  const ca = pki.ca.certPem;
  const connect = (identity: IssuedCert, clientId: string) =>
    tryConnect({ url: broker.url, ca, identity, clientId });

  const before = await connect(revoked, "dev-revoked");
  expect(before.ok).toBe(true);
  if (!before.ok) return;
  const live = before.client;
  clients.push(live);
  const closed = new Promise<void>((r) => live.once("close", () => r()));

  await pki.revoke([revoked.serial]);

  // The CRL is read at start: until the restart the revoked board's session carries on.
  const ingest = await mustConnect({ url: broker.url, ca, identity: ingestId, clientId: "ingest-revoke" });
  clients.push(ingest);
  const rx = recorder(ingest);
  await subscribe(ingest, ["electrolyser/+/telemetry"]);
  const stillFlowing = `before-restart-${randomUUID()}`;
  expect((await publishQos1(live, "electrolyser/dev-revoked/telemetry", stillFlowing)).reasonCode).toBe(0);
  await rx.waitFor((m) => m.payload === stillFlowing);

  const pidBefore = broker.pid;
  const portBefore = broker.port;
  await broker.restart();
  expect(broker.pid).not.toBe(pidBefore);
  expect(broker.port).toBe(portBefore);

  // The restart dropped the revoked board's live connection ...
  await closed;
  // ... and it cannot come back.
  const after = await connect(revoked, "dev-revoked");
  expect(after.ok).toBe(false);
  if (!after.ok) expect(after.error).toMatch(/certificate revoked/i);

  const other = await connect(kept, "dev-kept");
  expect(other.ok).toBe(true);
  if (other.ok) {
    clients.push(other.client);
    const ingest2 = await mustConnect({
      url: broker.url,
      ca,
      identity: ingestId,
      clientId: "ingest-revoke-2",
    });
    clients.push(ingest2);
    const rx2 = recorder(ingest2);
    await subscribe(ingest2, ["electrolyser/+/telemetry"]);
    const payload = `kept-${randomUUID()}`;
    expect((await publishQos1(other.client, "electrolyser/dev-kept/telemetry", payload)).reasonCode).toBe(0);
    await rx2.waitFor((m) => m.payload === payload);
  }
});
