/**
 * Client ids are chosen by clients. Without use_username_as_clientid any valid board can
 * reuse another client's id: the broker disconnects the owner and hands the session over.
 * These tests show that the default configuration (client id := certificate CN) stops it,
 * and keep one case documenting that turning the binding off is unsafe.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { MqttClient } from "mqtt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startMosquitto, type MosquittoHandle } from "../../src/broker/mosquitto";
import { createBrokerTestPki, issue, type BrokerTestPki, type IssuedCert } from "./helpers/test-pki";
import {
  endClient,
  mustConnect,
  publishQos1,
  recorder,
  sleep,
  subscribe,
  type ConnectOptions,
} from "./helpers/clients";

let dir: string;
let pki: BrokerTestPki;
let ingestId: IssuedCert;
let dev: IssuedCert;
let evil: IssuedCert;
const brokers: MosquittoHandle[] = [];
const clients: MqttClient[] = [];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "est-broker-takeover-"));
  pki = await createBrokerTestPki(dir);
  [ingestId, dev, evil] = (await Promise.all(
    ["ingest", "dev-a", "dev-evil"].map((cn) => issue(pki.ca, { cn, kind: "p256", usage: "client" })),
  )) as [IssuedCert, IssuedCert, IssuedCert];
});

afterAll(async () => {
  await Promise.all(clients.map((c) => endClient(c)));
  await Promise.all(brokers.map((b) => b.stop()));
  await rm(dir, { recursive: true, force: true });
});

/**
 * Ingest's persistent session gets 5 queued messages while it is away; then `evil` connects
 * with ingest's client id; then ingest comes back. Returns what ingest received.
 */
async function takeoverScenario(bind: boolean | "default"): Promise<{ received: string[]; sent: string[] }> {
  const broker = await startMosquitto({
    pki: pki.paths,
    dataDir: join(dir, `data-${bind}`),
    ...(bind === "default" ? {} : { bindClientIdToIdentity: bind }),
  });
  brokers.push(broker);
  const ca = pki.ca.certPem;
  const ingestOpts: ConnectOptions = {
    url: broker.url,
    ca,
    identity: ingestId,
    clientId: "ingest",
    protocolVersion: 4,
    clean: false,
  };
  const first = await mustConnect(ingestOpts);
  await subscribe(first, ["electrolyser/+/telemetry"]);
  await endClient(first);

  const board = await mustConnect({ url: broker.url, ca, identity: dev, clientId: "dev-a" });
  clients.push(board);
  const sent = Array.from({ length: 5 }, (_, i) => `queued-${bind}-${i}`);
  for (const p of sent)
    expect((await publishQos1(board, "electrolyser/dev-a/telemetry", p)).reasonCode).toBe(0);

  const attacker = await mustConnect({
    url: broker.url,
    ca,
    identity: evil,
    clientId: "ingest",
    protocolVersion: 4,
    clean: false,
  });
  await sleep(200);
  await endClient(attacker);

  const again = await mustConnect(ingestOpts);
  clients.push(again);
  const rx = recorder(again);
  const marker = `marker-${bind}`;
  expect((await publishQos1(board, "electrolyser/dev-a/telemetry", marker)).reasonCode).toBe(0);
  await rx.waitFor((m) => m.payload === marker);
  return { received: rx.messages.map((m) => m.payload).filter((p) => p !== marker), sent };
}

describe("session takeover through a reused client id", () => {
  it("default configuration: the board gets a session of its own and ingest receives everything queued", async () => {
    const r = await takeoverScenario("default");
    expect(r.received).toEqual(r.sent);
  });

  it("bindClientIdToIdentity: false (unsafe, why it is on by default): a board reusing ingest's client id makes ingest lose its queued messages", async () => {
    const r = await takeoverScenario(false);
    expect(r.received).toEqual([]);
  });

  it("default configuration: a board using another board's client id does not disconnect it", async () => {
    const broker = await startMosquitto({ pki: pki.paths, dataDir: join(dir, "data-kick") });
    brokers.push(broker);
    const ca = pki.ca.certPem;
    const victim = await mustConnect({ url: broker.url, ca, identity: dev, clientId: "dev-a" });
    clients.push(victim);
    let victimClosed = false;
    victim.on("close", () => (victimClosed = true));
    const attacker = await mustConnect({ url: broker.url, ca, identity: evil, clientId: "dev-a" });
    clients.push(attacker);
    await sleep(300);
    expect(victimClosed).toBe(false);
    const ingest = await mustConnect({ url: broker.url, ca, identity: ingestId, clientId: "whatever" });
    clients.push(ingest);
    const rx = recorder(ingest);
    await subscribe(ingest, ["electrolyser/+/telemetry"]);
    expect((await publishQos1(victim, "electrolyser/dev-a/telemetry", "still-here")).reasonCode).toBe(0);
    await rx.waitFor((m) => m.payload === "still-here");
    // The broker also names the attacker by its certificate, not by the id it asked for.
    expect(broker.logTail().some((l) => /New client connected .* as dev-evil /.test(l))).toBe(true);
  });
});
