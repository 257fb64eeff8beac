/**
 * Revocation that bites on a running `npm run broker` (Debian's Mosquitto 2.0.11): a connected board whose
 * identity is revoked is disconnected and can do nothing when it comes back, without a broker restart, while
 * another board keeps publishing and every one of its readings arrives. A single revoked serial of an
 * identity that keeps a valid certificate is enforced by a graceful restart onto the new CRL.
 */
import { X509Certificate } from "node:crypto";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { MqttClient } from "mqtt";
import { afterAll, beforeAll, expect, it } from "vitest";
import {
  ensureDevPki,
  revokeDevice,
  revokeSerial,
  rotateDevice,
  type PkiPaths,
} from "../../../pki/src/index";
import { readRunState } from "../../src/broker/run-state";
import {
  endClient,
  mustConnect,
  publishQos1,
  recorder,
  sleep,
  subscribe,
  tryConnect,
  type Identity,
} from "./helpers/clients";
import { startBrokerCli, type BrokerCli } from "./helpers/broker-cli";

let dir: string;
let paths: PkiPaths;
let broker: BrokerCli;
let ca: string;
const clients: MqttClient[] = [];

const identity = async (p: { cert: string; key: string }): Promise<Identity> => ({
  certPem: await readFile(p.cert, "utf8"),
  keyPem: await readFile(p.key, "utf8"),
});

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "est-revoke-cutoff-"));
  paths = await ensureDevPki({
    stateDir: dir,
    devices: ["rc-gone", "rc-kept", "rc-rotated"],
    services: ["ingest", "broker-admin"],
    deviceKeyType: "p256",
  });
  ca = await readFile(paths.root, "utf8");
  broker = await startBrokerCli({ stateDir: dir, dataDir: join(dir, "data") });
});

afterAll(async () => {
  await Promise.all(clients.map((c) => endClient(c)));
  await broker?.stop();
  await rm(dir, { recursive: true, force: true });
});

/** Resolves when the client's connection closes; rejects after `ms` (the cut-off the issue asks for). */
function closedWithin(client: MqttClient, ms: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`still connected ${ms} ms after the revocation`)), ms);
    client.once("close", () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

it("a connected board is cut off after `revoke`, comes back with no rights, and the other board loses nothing", async () => {
  const url = broker.url;
  const ingest = await mustConnect({
    url,
    ca,
    identity: await identity(paths.service("ingest")),
    clientId: "ingest",
  });
  clients.push(ingest);
  const rx = recorder(ingest);
  await subscribe(ingest, ["electrolyser/+/telemetry"]);

  const gone = await mustConnect({
    url,
    ca,
    identity: await identity(paths.device("rc-gone")),
    clientId: "rc-gone",
  });
  const kept = await mustConnect({
    url,
    ca,
    identity: await identity(paths.device("rc-kept")),
    clientId: "rc-kept",
  });
  clients.push(gone, kept);
  let keptClosed = false;
  kept.on("close", () => (keptClosed = true));
  expect((await publishQos1(gone, "electrolyser/rc-gone/telemetry", "gone-before")).reasonCode).toBe(0);
  await rx.waitFor((m) => m.payload === "gone-before");
  const pidBefore = (await readRunState(join(dir, "data")))?.brokerPid;

  // The other board publishes all along, before, during and after the revocation.
  let seq = 0;
  let publishing = true;
  const refused: number[] = [];
  const flow = (async () => {
    while (publishing) {
      const n = seq++;
      const r = await publishQos1(kept, "electrolyser/rc-kept/telemetry", `kept-${n}`);
      if (r.reasonCode !== 0) refused.push(n);
      await sleep(50);
    }
  })();

  const cut = closedWithin(gone, 10_000);
  await revokeDevice(dir, "rc-gone", "keyCompromise");
  await cut;

  // Until the next restart the TLS handshake still passes (mosquitto reads its CRL at start only), but
  // the identity may do nothing.
  const back = await tryConnect({
    url,
    ca,
    identity: await identity(paths.device("rc-gone")),
    clientId: "rc-gone",
  });
  if (back.ok) {
    clients.push(back.client);
    expect((await publishQos1(back.client, "electrolyser/rc-gone/telemetry", "gone-after")).reasonCode).toBe(
      135,
    );
  }
  await sleep(1000);
  publishing = false;
  await flow;

  for (let n = 0; n < seq; n++) await rx.waitFor((m) => m.payload === `kept-${n}`);
  expect(refused).toEqual([]);
  expect(rx.messages.some((m) => m.payload === "gone-after")).toBe(false);
  expect(keptClosed).toBe(false);
  expect((await readRunState(join(dir, "data")))?.brokerPid).toBe(pidBefore);
});

it("a revoked serial of an identity that keeps a valid certificate is enforced by a restart onto the new CRL", async () => {
  const url = broker.url;
  const oldId = await identity(paths.device("rc-rotated"));
  const old = await mustConnect({ url, ca, identity: oldId, clientId: "rc-rotated" });
  clients.push(old);
  const rotated = await rotateDevice({ stateDir: dir, id: "rc-rotated" });
  const generation = (await readRunState(join(dir, "data")))?.generation ?? 0;

  const cut = closedWithin(old, 10_000);
  await revokeSerial(dir, new X509Certificate(oldId.certPem).serialNumber, "superseded");
  await cut;
  // The close is the broker going down for its restart; wait until it is back.
  while (((await readRunState(join(dir, "data")))?.generation ?? 0) <= generation) await sleep(100);

  const refusedOld = await tryConnect({ url, ca, identity: oldId, clientId: "rc-rotated" });
  expect(refusedOld.ok ? "connected" : refusedOld.error).toMatch(/certificate revoked/i);
  const fresh = await tryConnect({
    url,
    ca,
    identity: await identity(rotated.paths),
    clientId: "rc-rotated",
  });
  expect(fresh.ok ? "connected" : fresh.error).toBe("connected");
  if (fresh.ok) clients.push(fresh.client);
});
