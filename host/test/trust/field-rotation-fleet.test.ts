/**
 * Field rotation with readings flowing, against Debian's mosquitto with the project's ACL and PKI: emulated
 * boards (the firmware's MqttSession and TrustRotationHandler) publish at 20 Hz; `npm run trust -- rotate`
 * rotates one board's certificate over its downlink; the board reconnects with the new certificate and says so
 * on its status, which `finish --wait` waits for before it revokes the old one; and every reading of every board reached the verifying
 * subscriber exactly once per (device, boot, seq). Delivery is checked at the subscriber (PUBACK semantics:
 * no ingest confirms here).
 */
import { spawn } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import type { MqttClient } from "mqtt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensureDevPki, type PkiPaths } from "../../../pki/src/index";
import { startMosquitto, type MosquittoHandle } from "../../src/broker/mosquitto";
import { loadOrCreatePayloadMaster } from "../../src/crypto/device-keys";
import { deviceIds } from "../../src/emulator/run";
import { Fleet } from "../../src/emulator/fleet";
import { readTrustFile } from "../../src/trust/field-rotation";
import { endClient, mustConnect, subscribe } from "../broker/helpers/clients";
import { arrivals, missingOrExtra, runAndCollect, until } from "../emulator/fleet-helpers";

const REPO = resolve(import.meta.dirname, "../../..");
const COUNT = 4;
const IDS = deviceIds(COUNT);
const ROTATED = IDS[1]!;

let dir: string;
let paths: PkiPaths;
let broker: MosquittoHandle;
let watcher: MqttClient | undefined;

function trustCli(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((done, reject) => {
    const child = spawn(process.execPath, ["--import", "tsx", join(REPO, "host/src/cli/trust.ts"), ...args], {
      cwd: REPO,
      env: { ...process.env, EST_STATE_DIR: dir },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    child.on("error", reject);
    child.on("exit", (code) => done({ code, stdout, stderr }));
  });
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "est-rotation-fleet-"));
  paths = await ensureDevPki({
    stateDir: dir,
    devices: IDS,
    services: ["fleet-admin", "monitor", "ingest"],
    deviceKeyType: "p256",
  });
  await loadOrCreatePayloadMaster(dir, 1);
  broker = await startMosquitto({ pki: paths, dataDir: join(dir, "data") });
}, 60_000);

afterAll(async () => {
  await endClient(watcher);
  await broker?.stop();
  await rm(dir, { recursive: true, force: true });
});

describe("field rotation while readings flow", () => {
  it("rotates one board's certificate over its downlink, the board reconnects with it, and no reading is lost or repeated", async () => {
    // Boards' status as the operator sees it (the monitor identity reads every board's status).
    const monitor = paths.service("monitor");
    watcher = await mustConnect({
      url: broker.url,
      ca: await readFile(paths.root, "utf8"),
      identity: {
        certPem: await readFile(monitor.cert, "utf8"),
        keyPem: await readFile(monitor.key, "utf8"),
      },
      clientId: "monitor",
    });
    const statuses: { id: string; online: boolean; cert?: string }[] = [];
    watcher.on("message", (topic: string, payload: Buffer) => {
      if (payload.length === 0) return;
      const s = JSON.parse(payload.toString("utf8")) as { online: boolean; cert?: string };
      statuses.push({ id: topic.split("/")[1]!, online: s.online, cert: s.cert });
    });
    await subscribe(watcher, ["electrolyser/+/status"]);

    let oldSerial = "";
    let newSerial = "";
    const { summary, readings, fleet } = await runAndCollect({
      count: COUNT,
      rateHz: 20,
      durationS: 3,
      seed: 16,
      connectRate: 200,
      brokerUrl: broker.url,
      stateDir: dir,
      encrypt: true,
      deviceKeyType: "p256",
      // The watcher above is `monitor`; with the client id bound to the CN they would take each other's session.
      verifyIdentity: "ingest",
      onStarted: async ({ fleet, verifier }) => {
        if (!(fleet instanceof Fleet)) throw new Error("expected the boards on this thread");
        const board = fleet.byId.get(ROTATED)!;
        await until("every board online", () => fleet.boards.every((b) => b.online));
        await until("readings flowing", () => verifier!.unique >= COUNT * 10);
        oldSerial = board.certSerial!;
        expect(statuses.find((s) => s.id === ROTATED && s.online)?.cert).toBe(oldSerial);

        const rotated = await trustCli(["rotate", ROTATED, "--broker", broker.url]);
        expect(rotated.stderr).toMatch(/published electrolyser\/emu-00002\/down\/trust/);
        expect(rotated.code).toBe(0);
        newSerial = (await readTrustFile(dir)).devices[ROTATED]!.pending!.newSerial!;
        expect(newSerial).not.toBe(oldSerial);

        // `finish --wait` waits for the board's status to name the new certificate, then revokes the old one.
        const finished = await trustCli(["finish", ROTATED, "--wait", "30", "--broker", broker.url]);
        expect(finished.stderr).toMatch(
          /emu-00002: waiting up to 30 s for the board's status to show certificate/,
        );
        expect(finished.stderr).toMatch(/emu-00002: seen the board is online with certificate/);
        expect(finished.code).toBe(0);
        expect(statuses.some((s) => s.id === ROTATED && s.online && s.cert === newSerial)).toBe(true);
        expect(board.certSerial).toBe(newSerial);
        expect(JSON.parse(finished.stdout)).toMatchObject({
          ok: true,
          reports: [{ id: ROTATED, ok: true, rotation: 1, newSerial, revoked: [oldSerial] }],
        });
      },
    });

    const boards = (fleet as Fleet).boards;
    const rotated = boards.find((b) => b.id === ROTATED)!;
    expect(rotated.session!.counters.trustStaged).toBe(1);
    expect(rotated.session!.counters.identitySwitches).toBe(1);
    expect(rotated.session!.counters.identityFailures).toBe(0);
    for (const b of boards.filter((x) => x.id !== ROTATED))
      expect(b.session!.counters.identitySwitches).toBe(0);
    // The old certificate is on the revocation list, the new one is not.
    const revocations = await readFile(paths.revocations, "utf8");
    expect(revocations).toContain(oldSerial);
    expect(revocations).not.toContain(newSerial);

    expect(summary.ok).toBe(true);
    expect(summary.verify!.lost).toBe(0);
    expect(summary.verify!.duplicates).toBe(0);
    expect(summary.verify!.rejected).toBe(0);
    expect(missingOrExtra(summary, readings)).toEqual([]);
    expect([...arrivals(readings).values()].every((n) => n === 1)).toBe(true);
    // Readings were flowing through the rotation: the rotated board sampled all along.
    const rotatedCount = summary.devices.find((d) => d.id === ROTATED)!.published;
    expect(rotatedCount).toBeGreaterThanOrEqual(20 * 5);
  }, 120_000);
});
