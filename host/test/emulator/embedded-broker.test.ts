import { readFile, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import mqtt from "mqtt";
import type { MqttClient } from "mqtt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensureDevPki, revokeDevice } from "../../../pki/src/index";
import type { PkiPaths } from "../../../pki/src/index";
import { startMosquitto } from "../../src/broker/mosquitto";
import type { MosquittoHandle } from "../../src/broker/mosquitto";
import { startEmbeddedBroker } from "../../src/emulator/embedded-broker";
import type { EmbeddedBroker } from "../../src/emulator/embedded-broker";

// The embedded broker against Debian's Mosquitto running infra/mosquitto's configuration: the same
// publications must reach the same subscribers, and the same clients must be kept out.
const B1 = "emu-00001";
const B2 = "emu-00002";
const REVOKED = "emu-00003";

let dir: string;
let pki: PkiPaths;
let otherPki: PkiPaths;
let embedded: EmbeddedBroker;
let mosquitto: MosquittoHandle;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "emu-broker-"));
  pki = await ensureDevPki({
    stateDir: join(dir, "fleet"),
    devices: [B1, B2, REVOKED],
    services: ["ingest", "monitor"],
    deviceKeyType: "p256",
  });
  await revokeDevice(join(dir, "fleet"), REVOKED, "keyCompromise");
  otherPki = await ensureDevPki({
    stateDir: join(dir, "other"),
    devices: [B1],
    services: [],
    deviceKeyType: "p256",
  });
  embedded = await startEmbeddedBroker({
    caBundle: pki.caBundle,
    crl: pki.crl,
    cert: pki.broker.cert,
    key: pki.broker.key,
  });
  // The comparison opens several connections per identity at once (an observer and one publisher per topic);
  // Aedes does not bind client ids to identities, so neither may Mosquitto here, or it would drop all but one.
  mosquitto = await startMosquitto({ pki, dataDir: join(dir, "mosquitto"), bindClientIdToIdentity: false });
});
afterAll(async () => {
  await embedded?.stop();
  await mosquitto?.stop();
  await rm(dir, { recursive: true, force: true });
});

async function tls(id: { cert: string; key: string } | undefined, caBundle = pki.caBundle) {
  return {
    ca: await readFile(caBundle),
    ...(id ? { cert: await readFile(id.cert), key: await readFile(id.key) } : {}),
    rejectUnauthorized: true,
  };
}

let clientSeq = 0;
async function connect(
  url: string,
  id: { cert: string; key: string } | undefined,
  name: string,
): Promise<MqttClient> {
  const c = mqtt.connect(url, {
    ...(await tls(id)),
    clientId: `${name}-${process.pid}-${clientSeq++}`,
    reconnectPeriod: 0,
    connectTimeout: 5000,
    protocolVersion: 4,
  });
  await new Promise<void>((resolve, reject) => {
    c.once("connect", () => resolve());
    c.once("error", reject);
    c.once("close", () => reject(new Error("closed before CONNACK")));
  });
  return c;
}

/** Whether the broker lets a client with these credentials complete CONNECT. */
async function admitted(
  url: string,
  id: { cert: string; key: string } | undefined,
  caBundle?: string,
): Promise<boolean> {
  const c = mqtt.connect(url, {
    ...(await tls(id, caBundle)),
    clientId: `probe-${clientSeq++}`,
    reconnectPeriod: 0,
    connectTimeout: 5000,
  });
  const ok = await new Promise<boolean>((resolve) => {
    c.once("connect", () => resolve(true));
    c.once("error", () => resolve(false));
    c.once("close", () => resolve(false));
  });
  c.end(true);
  return ok;
}

type Who = "b1" | "b2" | "ingest" | "monitor";
const ident = (w: Who) =>
  w === "ingest" || w === "monitor" ? pki.service(w) : pki.device(w === "b1" ? B1 : B2);

/** Publishes every (publisher, topic) pair once and returns which observer received which message. */
async function deliveries(url: string): Promise<string[]> {
  const observers: [Who, string[]][] = [
    ["ingest", ["electrolyser/+/telemetry", "electrolyser/+/status", "#"]],
    ["monitor", ["electrolyser/+/telemetry", "electrolyser/+/status", "#"]],
    ["b1", [`electrolyser/${B1}/down/#`, "electrolyser/+/telemetry", "#"]],
    ["b2", [`electrolyser/${B2}/down/#`]],
  ];
  const got: string[] = [];
  const subs: MqttClient[] = [];
  for (const [who, filters] of observers) {
    const c = await connect(url, ident(who), `obs-${who}`);
    c.on("message", (topic, payload) => got.push(`${who} <- ${payload.toString()} on ${topic}`));
    await c.subscribeAsync(filters, { qos: 1 }).catch(() => undefined);
    subs.push(c);
  }
  const topics = [
    `electrolyser/${B1}/telemetry`,
    `electrolyser/${B1}/status`,
    `electrolyser/${B1}/down/stored`,
    `electrolyser/${B2}/telemetry`,
    "electrolyser/ingest/telemetry",
    "electrolyser/monitor/telemetry",
    "other/topic",
  ];
  // One connection per publication: Aedes closes a connection after a forbidden PUBLISH, Mosquitto drops it silently.
  await Promise.all(
    (["b1", "b2", "ingest", "monitor"] as Who[]).flatMap((who) =>
      topics.map(async (topic) => {
        const c = await connect(url, ident(who), `pub-${who}`);
        c.publish(topic, `${who}:${topic}`, { qos: 1 });
        await new Promise((r) => setTimeout(r, 300));
        c.end(true);
      }),
    ),
  );
  await new Promise((r) => setTimeout(r, 500));
  for (const c of subs) c.end(true);
  return got.sort();
}

describe("embedded broker", () => {
  it("delivers exactly what Mosquitto with infra/mosquitto's ACL delivers", async () => {
    const [fromEmbedded, fromMosquitto] = await Promise.all([
      deliveries(embedded.url),
      deliveries(mosquitto.url),
    ]);
    expect(fromEmbedded).toEqual(fromMosquitto);
    // And that is: the ingest and monitor identities read each board's own telemetry and status, nothing else
    // moves: no service publishes under its own name (each service's electrolyser/<name>/# is denied); the
    // ingest's confirmation reaches the board it is for, and only from the ingest.
    expect(fromEmbedded).toEqual(
      (["ingest", "monitor"] as const)
        .flatMap((reader) => [
          `${reader} <- b1:electrolyser/${B1}/telemetry on electrolyser/${B1}/telemetry`,
          `${reader} <- b1:electrolyser/${B1}/status on electrolyser/${B1}/status`,
          `${reader} <- b2:electrolyser/${B2}/telemetry on electrolyser/${B2}/telemetry`,
        ])
        .concat([`b1 <- ingest:electrolyser/${B1}/down/stored on electrolyser/${B1}/down/stored`])
        .sort(),
    );
  });

  it("refuses a SUBSCRIBE outside the client's rights (0x80) and grants the ingest's shared subscription", async () => {
    const b1 = await connect(embedded.url, pki.device(B1), "sub-b1");
    const suback = new Promise<number[]>((resolve) =>
      b1.on("packetreceive", (p) => {
        if (p.cmd === "suback") resolve(p.granted as number[]);
      }),
    );
    b1.subscribe(
      ["#", `electrolyser/${B2}/down/#`, `electrolyser/${B1}/down/#`],
      { qos: 1 },
      () => undefined,
    );
    expect(await suback).toEqual([128, 128, 1]);
    b1.end(true);
    const ingest = await connect(embedded.url, pki.service("ingest"), "sub-ingest");
    const g2 = await ingest.subscribeAsync(["$share/ingest/electrolyser/+/telemetry"], { qos: 1 });
    expect(g2.map((g) => g.qos)).toEqual([1]);
    const got = new Promise<string>((resolve) => ingest.on("message", (_t, p) => resolve(p.toString())));
    const board = await connect(embedded.url, pki.device(B2), "pub-b2");
    await board.publishAsync(`electrolyser/${B2}/telemetry`, "shared", { qos: 1 });
    expect(await got).toBe("shared");
    board.end(true);
    ingest.end(true);
  });

  it("keeps out clients without a certificate, with another CA's certificate, or with a revoked one", async () => {
    expect(await admitted(embedded.url, pki.device(B1))).toBe(true);
    expect(await admitted(embedded.url, undefined)).toBe(false);
    expect(await admitted(embedded.url, otherPki.device(B1), otherPki.caBundle)).toBe(false);
    expect(await admitted(embedded.url, otherPki.device(B1))).toBe(false);
    expect(await admitted(embedded.url, pki.device(REVOKED))).toBe(false);
    // Mosquitto agrees on each.
    expect(await admitted(mosquitto.url, pki.device(B1))).toBe(true);
    expect(await admitted(mosquitto.url, pki.device(REVOKED))).toBe(false);
    expect(await admitted(mosquitto.url, otherPki.device(B1))).toBe(false);
  });
});
