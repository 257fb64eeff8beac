/**
 * `npm run trust` against Debian's mosquitto with the project's ACL and PKI: a board that is offline when its
 * rotation is published gets it (retained) at its next subscription, its board-side handler stages it, the
 * board connects with the new certificate; `finish` clears the retained message and revokes the old
 * certificate, which the broker refuses after its restart onto the new CRL.
 * (The MQTT session's use of the handler is wired separately; here the test plays the session.)
 */
import { createPrivateKey, X509Certificate } from "node:crypto";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import type { IPublishPacket, MqttClient } from "mqtt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensureDevPki, provisionedBrokerPins, type PkiPaths } from "../../../pki/src/index";
import { identityToEntries, PROV_NAMESPACE } from "../../../firmware/src/identity/nvs-layout";
import { TrustRotationHandler } from "../../../firmware/src/identity/trust-rotation";
import type { TlsIdentity } from "../../../firmware/src/identity/nvs-layout";
import { MemoryPreference } from "../../../firmware/test/app/shims/memory-preference";
import { CapturingLog } from "../../../firmware/test/app/harness";
import { startMosquitto, type MosquittoHandle } from "../../src/broker/mosquitto";
import { nodeAead } from "../../src/crypto/node-aead";
import { deriveDeviceKey, loadOrCreatePayloadMaster } from "../../src/crypto/device-keys";
import { connectFleetAdmin } from "../../src/trust/fleet-admin-publisher";
import { readTrustFile } from "../../src/trust/field-rotation";
import { endClient, mustConnect, subscribe, tryConnect } from "../broker/helpers/clients";
import { trustCli as runTrustCli } from "./helpers/trust-cli";

const REPO = resolve(import.meta.dirname, "../../..");
const ID = "fr-0001";
const TOPIC = `electrolyser/${ID}/down/trust`;

let dir: string;
let paths: PkiPaths;
let broker: MosquittoHandle;
let ca: string;
const clients: MqttClient[] = [];

const trustCli = (args: string[]) => runTrustCli(dir, args);

/** Every binary message a client receives, with a wait on a condition. */
function inbox(c: MqttClient) {
  const got: { topic: string; payload: Uint8Array; retain: boolean }[] = [];
  const waiters: (() => void)[] = [];
  c.on("message", (topic: string, payload: Buffer, packet: IPublishPacket) => {
    got.push({ topic, payload: new Uint8Array(payload), retain: packet.retain });
    for (const w of waiters.splice(0)) w();
  });
  return {
    got,
    async until(pred: () => boolean, ms = 10_000): Promise<void> {
      const deadline = Date.now() + ms;
      while (!pred()) {
        if (Date.now() > deadline)
          throw new Error(`not received in ${ms} ms: ${got.map((m) => m.topic).join(", ")}`);
        await new Promise<void>((r) => {
          waiters.push(r);
          setTimeout(r, 200);
        });
      }
    },
  };
}

const pemOf = (tls: TlsIdentity) => ({
  certPem: new X509Certificate(tls.certDer).toString(),
  keyPem: createPrivateKey({ key: Buffer.from(tls.keyDer), format: "der", type: "pkcs8" })
    .export({ format: "pem", type: "pkcs8" })
    .toString(),
});

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "est-field-rotation-"));
  paths = await ensureDevPki({
    stateDir: dir,
    devices: [ID],
    services: ["fleet-admin", "ingest"],
    deviceKeyType: "p256",
  });
  await loadOrCreatePayloadMaster(dir, 1);
  ca = await readFile(paths.root, "utf8");
  broker = await startMosquitto({ pki: paths, dataDir: join(dir, "data") });
}, 60_000);

afterAll(async () => {
  await Promise.all(clients.map((c) => endClient(c)));
  await broker?.stop();
  await rm(dir, { recursive: true, force: true });
});

describe("npm run trust", () => {
  it("prints --help, and exits non-zero with a specific error for an unknown board", async () => {
    const help = await trustCli(["--help"]);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/rotate \[ids\.\.\]/);
    expect(help.stdout).toMatch(/finish \[ids\.\.\]/);
    const site = await trustCli([
      "rotate",
      "--site",
      "nowhere",
      "--manifest",
      join(REPO, "manifests/fleet.example.json"),
    ]);
    expect(site.code).toBe(1);
    expect(site.stderr).toMatch(/no device of .*fleet\.example\.json is at site "nowhere"/);
    const bad = await trustCli(["rotate", "no-such-board", "--broker", broker.url]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/\[1\/1\] no-such-board: FAILED unknown device "no-such-board"/);
  }, 60_000);

  it("rotates an offline board over its downlink; the board connects with the new certificate; finish revokes the old one", async () => {
    // The board as provisioned: its NVS identity, and the payload key the ingest and the host derive.
    const dev = paths.device(ID);
    const base: TlsIdentity = {
      caDer: new Uint8Array(new X509Certificate(ca).raw),
      certDer: new Uint8Array(await readFile(dev.certDer!)),
      keyDer: new Uint8Array(await readFile(dev.keyDer!)),
      brokerPins: await provisionedBrokerPins(dir),
    };
    const payload = { keyId: 1, key: deriveDeviceKey(await loadOrCreatePayloadMaster(dir, 1), ID, 0) };
    const store = new MemoryPreference();
    store.load(
      PROV_NAMESPACE,
      identityToEntries({
        deviceId: ID,
        broker: broker.url,
        brokerHost: broker.host,
        port: broker.port,
        intervalMs: 1000,
        tls: base,
        payload,
        wifi: null,
      }),
    );
    const log = new CapturingLog();
    const handler = new TrustRotationHandler({
      store,
      aead: nodeAead,
      clock: { now: () => Date.now() },
      log,
      deviceId: ID,
      payload,
      base,
    });
    const oldSerial = new X509Certificate(base.certDer).serialNumber.toLowerCase();

    // Published while the board is offline.
    const rotated = await trustCli(["rotate", ID, "--no-key-on-board", "--broker", broker.url]);
    expect(rotated.stderr).toMatch(/\[1\/1\] fr-0001: reserved rotation 1/);
    expect(rotated.stderr).toMatch(/\[1\/1\] fr-0001: published electrolyser\/fr-0001\/down\/trust/);
    expect(rotated.code).toBe(0);
    const pending = (await readTrustFile(dir)).devices[ID]!.pending!;
    expect(pending).toMatchObject({ rotation: 1, oldSerials: [oldSerial], keyId: 1 });
    expect(pending.newSerial).not.toBe(oldSerial);

    // finish --wait on a board that has not come back: fails, and revokes nothing.
    const early = await trustCli(["finish", ID, "--wait", "2", "--broker", broker.url]);
    expect(early.code).toBe(1);
    expect(early.stderr).toMatch(
      /fr-0001: FAILED device "fr-0001" did not report certificate [0-9a-f]+ within 2 s .*nothing was revoked/,
    );
    expect((await readTrustFile(dir)).devices[ID]!.pending).toBeDefined();
    await expect(readFile(paths.revocations, "utf8").catch(() => "")).resolves.not.toContain(oldSerial);

    // The board comes back with its old identity, subscribes, and the retained message arrives.
    const first = handler.connection();
    expect(first.trying).toBe(false);
    const b1 = await mustConnect({ url: broker.url, ca, identity: pemOf(first.tls), clientId: ID });
    clients.push(b1);
    const rx1 = inbox(b1);
    await subscribe(b1, [`electrolyser/${ID}/down/#`]);
    await rx1.until(() => rx1.got.some((m) => m.topic === TOPIC));
    const msg = rx1.got.find((m) => m.topic === TOPIC)!;
    expect(msg.retain).toBe(true);
    expect(handler.handle(msg.payload)).toEqual({ ok: true, action: "reconnect", rotation: 1, slot: 1 });
    await endClient(b1);

    // Reconnect with the slot being tried: the broker accepts the new certificate.
    const tried = handler.connection();
    expect(tried.trying).toBe(true);
    expect(new X509Certificate(tried.tls.certDer).serialNumber.toLowerCase()).toBe(pending.newSerial);
    const b2 = await mustConnect({ url: broker.url, ca, identity: pemOf(tried.tls), clientId: ID });
    clients.push(b2);
    expect(handler.connected()).toEqual({ committed: 1 });
    const rx2 = inbox(b2);
    await subscribe(b2, [`electrolyser/${ID}/down/#`]);
    // The retained copy again: recognised, nothing done.
    await rx2.until(() => rx2.got.some((m) => m.topic === TOPIC));
    expect(handler.handle(rx2.got.find((m) => m.topic === TOPIC)!.payload)).toEqual({
      ok: true,
      action: "none",
      why: "already_staged",
    });

    // A second rotate before finish resends the same rotation (same number, same certificate).
    const again = await trustCli(["rotate", ID, "--no-key-on-board", "--broker", broker.url]);
    expect(again.code).toBe(0);
    expect(again.stderr).toMatch(/resent electrolyser\/fr-0001\/down\/trust/);
    expect((await readTrustFile(dir)).devices[ID]!.pending!.newSerial).toBe(pending.newSerial);

    const finished = await trustCli(["finish", ID, "--broker", broker.url]);
    expect(finished.code).toBe(0);
    expect(JSON.parse(finished.stdout)).toMatchObject({
      ok: true,
      reports: [{ id: ID, ok: true, rotation: 1, newSerial: pending.newSerial, revoked: [oldSerial] }],
    });
    const revocations = JSON.parse(await readFile(paths.revocations, "utf8")) as unknown;
    expect(JSON.stringify(revocations)).toContain(oldSerial);
    expect(JSON.stringify(revocations)).not.toContain(pending.newSerial!);

    // The retained message is gone: a fresh subscription gets only what is published after it.
    await endClient(b2);
    await broker.restart(); // mosquitto reads the CRL at start only
    const b3 = await mustConnect({
      url: broker.url,
      ca,
      identity: pemOf(handler.connection().tls),
      clientId: ID,
    });
    clients.push(b3);
    const rx3 = inbox(b3);
    await subscribe(b3, [`electrolyser/${ID}/down/#`]);
    const admin = await connectFleetAdmin({ stateDir: dir, brokerUrl: broker.url });
    await admin.publish(`electrolyser/${ID}/down/config`, Uint8Array.of(1), false);
    await admin.close();
    await rx3.until(() => rx3.got.some((m) => m.topic.endsWith("/down/config")));
    expect(rx3.got.map((m) => m.topic)).toEqual([`electrolyser/${ID}/down/config`]);
    // And the old certificate is refused.
    const old = await tryConnect({ url: broker.url, ca, identity: pemOf(base), clientId: ID });
    expect(old.ok).toBe(false);
    if (old.ok) clients.push(old.client);
    expect(log.text()).not.toMatch(/BEGIN|PRIVATE/);
  }, 120_000);
});
