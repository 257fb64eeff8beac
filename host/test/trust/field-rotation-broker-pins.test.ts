/**
 * A field rotation that moves a board's broker pins is what the emulated board then checks the broker against,
 * as the firmware's guarded socket does with the slot in use (not the pins the fleet started with). Debian's
 * mosquitto, two emulated boards provisioned with the broker's current pin only: one is rotated over its
 * downlink with the current and next pins; after the broker moves to its next key (pki rotateBrokerKey and a
 * restart) the rotated board connects to it and the other refuses it.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensureDevPki, provisionedBrokerPins, rotateBrokerKey, type PkiPaths } from "../../../pki/src/index";
import { startMosquitto, type MosquittoHandle } from "../../src/broker/mosquitto";
import { loadOrCreatePayloadMaster } from "../../src/crypto/device-keys";
import { Fleet } from "../../src/emulator/fleet";
import { connectFleetAdmin } from "../../src/trust/fleet-admin-publisher";
import { rotateInField } from "../../src/trust/field-rotation";
import { until } from "../emulator/fleet-helpers";

const ROTATED = "bp-0001";
const KEPT = "bp-0002";

let dir: string;
let paths: PkiPaths;
let broker: MosquittoHandle;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "est-rotation-pins-"));
  paths = await ensureDevPki({
    stateDir: dir,
    devices: [ROTATED, KEPT],
    services: ["fleet-admin"],
    deviceKeyType: "p256",
  });
  broker = await startMosquitto({ pki: paths, dataDir: join(dir, "data") });
}, 60_000);

afterAll(async () => {
  await broker?.stop();
  await rm(dir, { recursive: true, force: true });
});

describe("broker pins moved by a field rotation", () => {
  it("the rotated board checks the broker against its new slot's pins", async () => {
    const [current, next] = await provisionedBrokerPins(dir);
    expect(next).toBeDefined();
    const fleet = new Fleet({
      deviceIds: [ROTATED, KEPT],
      rateHz: 5,
      seed: 16,
      host: broker.host,
      port: broker.port,
      caFile: paths.root,
      // Provisioned before the broker had a next key: the current pin only.
      brokerPins: [current!],
      device: (id) => paths.device(id),
      boot: 5,
      connectRate: 100,
      encryption: { keyId: 1, master: await loadOrCreatePayloadMaster(dir, 1) },
    });
    const admin = await connectFleetAdmin({ stateDir: dir, brokerUrl: broker.url });
    try {
      await fleet.init();
      fleet.start();
      const rotated = fleet.byId.get(ROTATED)!;
      const kept = fleet.byId.get(KEPT)!;
      await until("both boards online", () => rotated.online && kept.online);

      // The rotation carries the provisioned pins: the current key's and the next one's.
      const report = await rotateInField({ stateDir: dir, id: ROTATED, publisher: admin });
      await until(
        "the rotated board to connect with its new certificate",
        () => rotated.online && rotated.certSerial === report.newSerial,
      );
      // Staged once and connected with at the first try (a switch, or the reconnect of a connection a loaded
      // machine lost just then: either connects with the staged identity).
      expect(rotated.session!.counters.trustStaged).toBe(1);
      expect(rotated.session!.counters.identityFailures).toBe(0);

      const connects = rotated.session!.counters.connects;
      const keptConnects = kept.session!.counters.connects;
      await rotateBrokerKey({ stateDir: dir });
      await broker.restart();
      await until(
        "the rotated board to reconnect to the broker's next key",
        () => rotated.online && rotated.session!.counters.connects > connects,
        20_000,
      );
      await until("the other board to refuse it", () => fleet.stats.brokerRefused >= 2, 20_000);
      expect(kept.online).toBe(false);
      expect(kept.session!.counters.connects).toBe(keptConnects);
      const acked = rotated.session!.counters.acked;
      await until("the rotated board to publish to it", () => rotated.session!.counters.acked > acked + 3);
    } finally {
      await admin.close();
      await fleet.shutdown();
    }
  }, 90_000);
});
