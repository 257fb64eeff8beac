/**
 * Field rotation with the key made on the board, against Debian's mosquitto with the project's ACL and PKI:
 * emulated boards (the firmware's MqttSession and TrustRotationHandler, node:crypto where the board has
 * mbedTLS) publish at 20 Hz; `npm run trust -- rotate` (the key made on the board is the default) sends a key request, the board answers
 * with a CSR sealed under its payload key on electrolyser/<id>/csr, the host certifies the CSR's key and sends
 * the certificate alone; the board connects with it. Every reading reaches the verifying subscriber exactly once
 * per (device, boot, seq), and no private key anywhere in the host's state matches the new certificate.
 */
import { createPrivateKey, createPublicKey, X509Certificate, type KeyObject } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { MqttClient } from "mqtt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensureDevPki, type PkiPaths } from "../../../pki/src/index";
import { startMosquitto, type MosquittoHandle } from "../../src/broker/mosquitto";
import { loadOrCreatePayloadMaster } from "../../src/crypto/device-keys";
import { deviceIds, runEmulator } from "../../src/emulator/run";
import { Fleet } from "../../src/emulator/fleet";
import { readTrustFile } from "../../src/trust/field-rotation";
import { endClient, mustConnect, subscribe } from "../broker/helpers/clients";
import { arrivals, missingOrExtra, runAndCollect, until } from "../emulator/fleet-helpers";
import { trustCli } from "./helpers/trust-cli";

const COUNT = 3;
const IDS = deviceIds(COUNT);
const ROTATED = IDS[1]!;

let dir: string;
let paths: PkiPaths;
let broker: MosquittoHandle;
let admin: MqttClient | undefined;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "est-board-key-"));
  paths = await ensureDevPki({
    stateDir: dir,
    devices: IDS,
    services: ["fleet-admin", "ingest"],
    deviceKeyType: "p256",
  });
  await loadOrCreatePayloadMaster(dir, 1);
  broker = await startMosquitto({ pki: paths, dataDir: join(dir, "data") });
}, 60_000);

afterAll(async () => {
  await endClient(admin);
  await broker?.stop();
  await rm(dir, { recursive: true, force: true });
});

/**
 * The board's retained answer as fleet-admin reads it, or undefined. Connected only while no CLI runs: the
 * broker binds the client id to the CN, so a second fleet-admin connection would take the CLI's over.
 */
async function retainedAnswer(): Promise<Buffer | undefined> {
  const fa = paths.service("fleet-admin");
  admin = await mustConnect({
    url: broker.url,
    ca: await readFile(paths.root, "utf8"),
    identity: { certPem: await readFile(fa.cert, "utf8"), keyPem: await readFile(fa.key, "utf8") },
    clientId: "fleet-admin",
  });
  try {
    let got: Buffer | undefined;
    admin.on("message", (_topic: string, payload: Buffer) => (got = payload));
    await subscribe(admin, [`electrolyser/${ROTATED}/csr`]);
    // A retained message is sent right after the SUBACK; a round trip more makes sure none is coming.
    await subscribe(admin, ["electrolyser/+/status"]);
    return got;
  } finally {
    await endClient(admin);
    admin = undefined;
  }
}

/** Every private key (PEM or DER) in the state directory, wherever it is kept. */
async function privateKeysUnder(root: string): Promise<{ path: string; key: KeyObject }[]> {
  const out: { path: string; key: KeyObject }[] = [];
  for (const e of await readdir(root, { recursive: true, withFileTypes: true })) {
    if (!e.isFile()) continue;
    const path = join(e.parentPath, e.name);
    const bytes = await readFile(path);
    for (const attempt of [
      () => createPrivateKey(bytes),
      () => createPrivateKey({ key: bytes, format: "der", type: "pkcs8" }),
    ]) {
      try {
        out.push({ path, key: attempt() });
        break;
      } catch {
        // not a private key in this form
      }
    }
  }
  return out;
}

describe("field rotation with the key made on the board", () => {
  it("a key request, the board's sealed CSR, the certificate alone: no reading lost, and the host never holds the key", async () => {
    let oldSerial = "";
    let newSerial = "";
    const { summary, readings, fleet } = await runAndCollect({
      count: COUNT,
      rateHz: 20,
      durationS: 3,
      seed: 18,
      connectRate: 200,
      brokerUrl: broker.url,
      stateDir: dir,
      encrypt: true,
      deviceKeyType: "p256",
      verifyIdentity: "ingest",
      onStarted: async ({ fleet, verifier }) => {
        if (!(fleet instanceof Fleet)) throw new Error("expected the boards on this thread");
        const board = fleet.byId.get(ROTATED)!;
        await until("every board online", () => fleet.boards.every((b) => b.online));
        await until("readings flowing", () => verifier!.unique >= COUNT * 10);
        oldSerial = board.certSerial!;
        const rotated = await trustCli(dir, [
          "rotate",
          ROTATED,
          // No flag: the key is made on the board by default.
          "--answer-wait",
          "30",
          "--broker",
          broker.url,
        ]);
        expect(rotated.stderr).toMatch(/emu-00002: requested RSA-2048 key and CSR for rotation 1/);
        expect(rotated.stderr).toMatch(/emu-00002: answered CSR for rotation 1 \(rsa-2048/);
        expect(rotated.stderr).toMatch(
          /emu-00002: published the certificate alone on electrolyser\/emu-00002\/down\/trust/,
        );
        expect(rotated.code).toBe(0);
        newSerial = (await readTrustFile(dir)).devices[ROTATED]!.pending!.newSerial!;
        // The answer is retained on the broker until finish, sealed: no DER SEQUENCE (0x30) in the clear.
        const answer = await retainedAnswer();
        expect(answer?.length).toBeGreaterThan(200);
        expect(answer![0]).toBe(1);
        expect(newSerial).not.toBe(oldSerial);
        // The PKI keeps the certificate only: the key it had for this board was the old one, now archived.
        expect(existsSync(paths.device(ROTATED).key)).toBe(false);
        expect(existsSync(paths.device(ROTATED).keyDer!)).toBe(false);
        const finished = await trustCli(dir, ["finish", ROTATED, "--wait", "30", "--broker", broker.url]);
        expect(finished.code).toBe(0);
        expect(finished.stderr).toMatch(/emu-00002: cleared electrolyser\/emu-00002\/csr/);
        expect(board.certSerial).toBe(newSerial);
        expect(JSON.parse(finished.stdout)).toMatchObject({
          ok: true,
          reports: [{ id: ROTATED, ok: true, rotation: 1, newSerial, revoked: [oldSerial] }],
        });
      },
    });

    expect(await retainedAnswer()).toBeUndefined(); // finish cleared it

    const boards = (fleet as Fleet).boards;
    const rotated = boards.find((b) => b.id === ROTATED)!;
    expect(rotated.session!.counters.trustStaged).toBe(1);
    expect(rotated.session!.counters.trustRefused).toBe(0);
    expect(rotated.session!.counters.identitySwitches).toBe(1);
    expect(rotated.session!.counters.identityFailures).toBe(0);
    for (const b of boards.filter((x) => x.id !== ROTATED))
      expect(b.session!.counters.identitySwitches).toBe(0);
    // The board connected with the new certificate, so it holds its key; nothing on the host does.
    const cert = new X509Certificate(await readFile(paths.device(ROTATED).cert));
    expect(cert.publicKey.asymmetricKeyDetails?.modulusLength).toBe(2048);
    const certSpki = cert.publicKey.export({ format: "der", type: "spki" });
    const keys = await privateKeysUnder(dir);
    expect(keys.length).toBeGreaterThan(COUNT); // the walk finds the PKI's keys: the check is not vacuous
    const matching = keys.filter((k) =>
      createPublicKey(k.key).export({ format: "der", type: "spki" }).equals(certSpki),
    );
    expect(matching.map((k) => k.path)).toEqual([]);
    const revocations = await readFile(paths.revocations, "utf8");
    expect(revocations).toContain(oldSerial);
    expect(revocations).not.toContain(newSerial);

    expect(summary.ok).toBe(true);
    expect(summary.verify!.lost).toBe(0);
    expect(summary.verify!.duplicates).toBe(0);
    expect(summary.verify!.rejected).toBe(0);
    expect(missingOrExtra(summary, readings)).toEqual([]);
    expect([...arrivals(readings).values()].every((n) => n === 1)).toBe(true);
    expect(summary.devices.find((d) => d.id === ROTATED)!.published).toBeGreaterThanOrEqual(20 * 3);

    // The emulated board's NVS (and the key in it) lasted that run: a new run says so instead of ENOENT.
    await expect(
      runEmulator({
        count: COUNT,
        rateHz: 1,
        durationS: 1,
        seed: 19,
        connectRate: 200,
        brokerUrl: broker.url,
        stateDir: dir,
        encrypt: true,
        deviceKeyType: "p256",
        verify: false,
      }),
    ).rejects.toThrow(
      /board emu-00002: no private key at .*made on the board.*npm run pki -- rotate emu-00002/,
    );
  }, 120_000);
});
