/**
 * Field rotation with readings flowing, against Debian's mosquitto with the project's ACL and PKI: emulated
 * boards (the firmware's MqttSession and TrustRotationHandler) publish at 20 Hz; `npm run trust -- rotate`
 * rotates one board's certificate (and payload key) over its downlink; the board reconnects with the new
 * certificate and says so on its status, which `finish --wait` waits for before it revokes the old one.
 *
 *   at the subscriber: every reading of every board reached the verifying subscriber exactly once per
 *     (device, boot, seq) (PUBACK semantics: no ingest confirms there);
 *   through the ingest: the real ingest CLI and VictoriaMetrics with confirmations on; every (device, boot,
 *     seq) is stored exactly once, every board's outbox empties (all confirmed), and after `finish` a reading
 *     sealed under the replaced payload key is refused as retired_key.
 */
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { MqttClient } from "mqtt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensureDevPki, type PkiPaths } from "../../../pki/src/index";
import { exportSeries, startVictoriaMetrics } from "../../src/store/victoria-metrics";
import { readGrants } from "../../src/crypto/payload-grants";
import { runEmulator } from "../../src/emulator/run";
import { TestFleet } from "../../testkit/ingest/fleet-publisher";
import { readDeadLetters, spawnIngest, waitUntil } from "../ingest/helpers/stack";
import { startMosquitto, type MosquittoHandle } from "../../src/broker/mosquitto";
import { loadOrCreatePayloadMaster } from "../../src/crypto/device-keys";
import { deviceIds } from "../../src/emulator/run";
import { Fleet } from "../../src/emulator/fleet";
import { readTrustFile } from "../../src/trust/field-rotation";
import { endClient, mustConnect, subscribe } from "../broker/helpers/clients";
import { arrivals, missingOrExtra, runAndCollect, until } from "../emulator/fleet-helpers";
import { trustCli as runTrustCli } from "./helpers/trust-cli";

const COUNT = 4;
const IDS = deviceIds(COUNT);
const ROTATED = IDS[1]!;

let dir: string;
let paths: PkiPaths;
let broker: MosquittoHandle;
let master: Uint8Array;
let watcher: MqttClient | undefined;

const trustCli = (args: string[]) => runTrustCli(dir, args);

/** Stored telemetry: device → seq → the timestamps it was stored at. */
async function storedPoints(vmUrl: string): Promise<Map<string, Map<number, Set<number>>>> {
  const out = new Map<string, Map<number, Set<number>>>();
  for (const s of await exportSeries(vmUrl, "electrolyser_seq", { startMs: Date.now() - 3_600_000 })) {
    const id = s.metric.sensor_id ?? "?";
    const bySeq = out.get(id) ?? new Map<number, Set<number>>();
    out.set(id, bySeq);
    s.values.forEach((seq, i) => {
      const ts = bySeq.get(seq) ?? new Set<number>();
      ts.add(s.timestamps[i]!);
      bySeq.set(seq, ts);
    });
  }
  return out;
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "est-rotation-fleet-"));
  paths = await ensureDevPki({
    stateDir: dir,
    devices: IDS,
    services: ["fleet-admin", "monitor", "ingest"],
    deviceKeyType: "p256",
  });
  master = await loadOrCreatePayloadMaster(dir, 1);
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

        const rotated = await trustCli(["rotate", ROTATED, "--no-key-on-board", "--broker", broker.url]);
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

  it("through the ingest's confirmations: rotating a board's certificate and payload key stores every reading once, confirms all, and retires the old key", async () => {
    // Another board than the case above rotated: that one's current key is now one no emulated board holds.
    const board2 = IDS[2]!;
    // Without the store's one-point-per-millisecond dedup: an emulated board that catches up after an event
    // loop stall takes several readings in one millisecond, which dedup would fold into one.
    const vm = await startVictoriaMetrics({ dataDir: join(dir, "vm"), dedup: false });
    // The store is never killed here: a short durable horizon, confirmations every second.
    const ingest = await spawnIngest(
      { stateDir: dir, broker, vm },
      {
        encrypted: true,
        extraArgs: ["--confirm", "on", "--durable-horizon", "4", "--confirm-interval", "1"],
      },
    );
    let newSerial = "";
    let commitSeq = -1;
    try {
      const summary = await runEmulator({
        count: COUNT,
        rateHz: 20,
        durationS: 3,
        seed: 17,
        connectRate: 200,
        brokerUrl: broker.url,
        stateDir: dir,
        encrypt: true,
        verify: false,
        deviceKeyType: "p256",
        confirmations: "on",
        // Above the horizon plus a round.
        confirmTimeoutS: 6,
        drainTimeoutS: 40,
        onStarted: async ({ fleet }) => {
          if (!(fleet instanceof Fleet)) throw new Error("expected the boards on this thread");
          const board = fleet.byId.get(board2)!;
          await until("every board online", () => fleet.boards.every((b) => b.online));
          await until("confirmations flowing", () => board.session!.counters.confirmed >= 20, 20_000);

          const rotated = await trustCli(["rotate", board2, "--no-key-on-board", "--broker", broker.url]);
          expect(rotated.code).toBe(0);
          const pending = (await readTrustFile(dir)).devices[board2]!.pending!;
          newSerial = pending.newSerial!;
          expect(pending.payloadKey!.keyId).not.toBe(1);
          await until("the board to commit its new identity", () => board.certSerial === newSerial, 20_000);
          commitSeq = board.outbox.nextSeq;
          // What it sealed under the old key before the switch is confirmed before the old key is retired at
          // once (--key-grace 0): the grace is for readings that could still be on their way.
          await until(
            "every reading sealed before the switch confirmed",
            () => (board.outbox.pending()[0]?.seq ?? Number.POSITIVE_INFINITY) >= commitSeq,
            20_000,
          );
          const finished = await trustCli([
            "finish",
            board2,
            "--wait",
            "30",
            "--key-grace",
            "0",
            "--broker",
            broker.url,
          ]);
          expect(finished.code).toBe(0);
          expect(finished.stderr).toMatch(/payload key \d+ current; the one it replaced is retired/);
          // Readings keep flowing under the new key after finish.
          const after = board.outbox.nextSeq;
          await until("readings after finish", () => board.outbox.nextSeq >= after + 20, 20_000);
        },
      });

      const rotatedBoard = summary.devices.find((d) => d.id === board2)!;
      expect(rotatedBoard.published).toBeGreaterThan(commitSeq + 20);
      // Every board's outbox emptied: all readings confirmed.
      expect(summary.messages.outboxDropped).toBe(0);
      expect(summary.messages.awaitingConfirmation).toBe(0);
      expect(summary.messages.confirmed).toBe(summary.messages.readings);
      // Nothing refused (a reading under the new key before the ingest knew it would be dead-lettered here).
      const deadLetters = join(dir, "ingest", "dead-letter.jsonl");
      expect((await readDeadLetters(deadLetters)).map((l) => `${l.sensor_id} ${l.reason}`)).toEqual([]);
      // Every (device, boot, seq) stored exactly once: one boot per run, seqs 0..published-1, each one point
      // (the ingest writes at least once: a copy written again is the same point, same timestamp).
      const stored = await storedPoints(vm.url);
      for (const d of summary.devices) {
        const points = stored.get(d.id) ?? new Map<number, Set<number>>();
        expect({ id: d.id, seqs: [...points.keys()].sort((a, b) => a - b) }).toEqual({
          id: d.id,
          seqs: Array.from({ length: d.published }, (_, k) => k),
        });
        expect([...points.entries()].filter(([, ts]) => ts.size !== 1)).toEqual([]);
      }
      // After finish, a reading sealed under the replaced key (key id 1, generation 0, as the emulated boards
      // start) is refused as retired_key: published as the board, with its new certificate.
      const grants = (await readGrants(dir)).devices[board2]!.grants;
      expect(grants.find((g) => g.keyId === 1)).toMatchObject({ state: "retired", reason: "rotated" });
      const probe = await TestFleet.connect({
        brokerUrl: broker.url,
        ids: [board2],
        boot: 999,
        credentials: { ca: paths.caBundle, device: (id) => paths.device(id) },
        encryption: { keyId: 1, master },
      });
      try {
        await probe.boards[0]!.publishNext();
      } finally {
        await probe.end();
      }
      await waitUntil(
        async () => (await readDeadLetters(deadLetters)).some((l) => l.reason === "retired_key"),
        15_000,
        "the ingest to refuse the old key",
      );
      expect((await readDeadLetters(deadLetters)).map((l) => [l.sensor_id, l.reason])).toEqual([
        [board2, "retired_key"],
      ]);
    } finally {
      await ingest.stop();
      await vm.stop();
    }
  }, 180_000);
});
