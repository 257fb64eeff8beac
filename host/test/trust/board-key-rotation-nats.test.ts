/**
 * Field rotation with the key made on the board, on the three-node NATS cluster as `npm run stack -- --broker
 * nats-cluster` runs it (startNatsClusterBroker: it watches the PKI and refreshes the nodes, a rolling restart
 * when a certificate is added). NATS 2.9 speaks MQTT 3.1.1 only, so `npm run trust` connects with 3.1.1 there;
 * NATS admits only pinned certificates, so the board's new certificate works once the refresh has pinned it
 * (until then NATS closes its connections after the handshake and the board tries again).
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensureDevPki, type PkiPaths } from "../../../pki/src/index";
import { startNatsClusterBroker, type StackNatsCluster } from "../../src/broker/nats/stack-broker";
import { loadOrCreatePayloadMaster } from "../../src/crypto/device-keys";
import { deviceIds } from "../../src/emulator/run";
import { Fleet } from "../../src/emulator/fleet";
import { readTrustFile } from "../../src/trust/field-rotation";
import { arrivals, missingOrExtra, runAndCollect, until } from "../emulator/fleet-helpers";
import { trustCli } from "./helpers/trust-cli";

const COUNT = 2;
const IDS = deviceIds(COUNT);
const ROTATED = IDS[0]!;

let dir: string;
let paths: PkiPaths;
let broker: StackNatsCluster;
const brokerLog: string[] = [];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "est-board-key-nats-"));
  paths = await ensureDevPki({
    stateDir: dir,
    devices: IDS,
    services: ["fleet-admin", "monitor", "ingest"],
    deviceKeyType: "p256",
  });
  await loadOrCreatePayloadMaster(dir, 1);
  broker = await startNatsClusterBroker({
    pki: paths,
    dataDir: join(dir, "nats"),
    firstPort: 0,
    log: (l) => brokerLog.push(l),
  });
}, 120_000);

afterAll(async () => {
  await broker?.stop();
  await rm(dir, { recursive: true, force: true });
});

describe("field rotation with the key made on the board, on the NATS cluster", () => {
  it("a key request, the CSR, the certificate; the board connects with it once the cluster pinned it, and no reading is lost", async () => {
    let newSerial = "";
    const { summary, readings, fleet } = await runAndCollect({
      count: COUNT,
      rateHz: 10,
      durationS: 3,
      seed: 20,
      connectRate: 200,
      brokerUrl: broker.urls[0]!,
      stateDir: dir,
      encrypt: true,
      deviceKeyType: "p256",
      verifyIdentity: "monitor",
      onStarted: async ({ fleet, verifier }) => {
        if (!(fleet instanceof Fleet)) throw new Error("expected the boards on this thread");
        const board = fleet.byId.get(ROTATED)!;
        await until("every board online", () => fleet.boards.every((b) => b.online));
        await until("readings flowing", () => verifier!.unique >= COUNT * 10);
        const url = broker.urls[1]!; // another node than the boards': the cluster shares the retained messages
        const rotated = await trustCli(dir, ["rotate", ROTATED, "--answer-wait", "30", "--broker", url]);
        expect(rotated.stderr).toMatch(/speaks MQTT 3\.1\.1 only/);
        expect(rotated.stderr).toMatch(/emu-00001: answered CSR for rotation 1/);
        expect(rotated.code).toBe(0);
        newSerial = (await readTrustFile(dir)).devices[ROTATED]!.pending!.newSerial!;
        // NATS admits only pinned certificates: the stack's PKI watch pins the new one by a rolling restart of
        // the nodes (the CLI's among them). Until then NATS closes the board's connections after the handshake,
        // which the board takes for a lost connection, not a refused identity, and tries again.
        await until(
          "the stack to pin the new certificate",
          () => brokerLog.some((l) => /PKI changed: .*restarted \[n1, n2, n3\]/.test(l)),
          90_000,
        );
        const finished = await trustCli(dir, ["finish", ROTATED, "--wait", "60", "--broker", url]);
        expect(finished.stderr).toMatch(/emu-00001: seen the board is online with certificate/);
        expect(finished.code).toBe(0);
        expect(board.certSerial).toBe(newSerial);
      },
    });
    const rotated = (fleet as Fleet).boards.find((b) => b.id === ROTATED)!;
    expect(rotated.session!.counters.trustStaged).toBe(1);
    expect(rotated.certSerial).toBe(newSerial);
    expect(rotated.session!.counters.identityFailures).toBe(0);
    expect(summary.verify!.lost).toBe(0);
    expect(missingOrExtra(summary, readings)).toEqual([]);
    expect([...arrivals(readings).values()].every((n) => n >= 1)).toBe(true);
  }, 240_000);
});
