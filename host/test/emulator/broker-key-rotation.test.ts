// Moving Debian's Mosquitto to its next key (npm run pki -- broker --rotate, then a broker restart) loses no
// board: boards provisioned with the current and next pins accept the new key, reconnect and deliver every
// reading; a board that carries only the old pin refuses the rotated broker and sends it nothing.
import { connect as tlsConnect } from "node:tls";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import mqtt from "mqtt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensureDevPki, provisionedBrokerPins, rotateBrokerKey, spkiPin } from "../../../pki/src/index";
import type { PkiPaths } from "../../../pki/src/index";
import { startMosquitto } from "../../src/broker/mosquitto";
import type { MosquittoHandle } from "../../src/broker/mosquitto";
import { Fleet } from "../../src/emulator/fleet";
import type { FleetOptions } from "../../src/emulator/fleet";
import { until } from "./fleet-helpers";

const DEVICES = ["rot-0001", "rot-0002", "rot-0003", "rot-0004"];
let dir: string;
let pki: PkiPaths;
let broker: MosquittoHandle;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "est-rotation-"));
  pki = await ensureDevPki({ stateDir: dir, devices: [...DEVICES, "rot-old"], services: ["monitor"] });
  broker = await startMosquitto({ pki, dataDir: join(dir, "mosquitto") });
}, 120_000);
afterAll(async () => {
  await broker?.stop();
  await rm(dir, { recursive: true, force: true });
});

/** pin-sha256 of the key the broker serves now. */
async function servedPin(): Promise<Uint8Array> {
  const ca = await readFile(pki.caBundle);
  return new Promise((resolve, reject) => {
    const s = tlsConnect(
      { host: broker.host, port: broker.port, ca, cert: undefined, rejectUnauthorized: true },
      () => {
        const spki = s.getPeerX509Certificate()!.publicKey.export({ type: "spki", format: "der" });
        s.destroy();
        resolve(spkiPin(new Uint8Array(spki)));
      },
    );
    s.on("error", reject);
  });
}

describe("rotating the broker key", () => {
  it("loses no board and no reading; a board with only the old pin refuses the new key", async () => {
    const got = new Map<string, Set<number>>();
    const monitor = mqtt.connect(broker.url, {
      clientId: "monitor",
      clean: false,
      protocolVersion: 4,
      reconnectPeriod: 200,
      ca: await readFile(pki.caBundle),
      cert: await readFile(pki.service("monitor").cert),
      key: await readFile(pki.service("monitor").key),
    });
    monitor.on("error", () => undefined);
    monitor.on("message", (_topic, payload) => {
      const r = JSON.parse(payload.toString()) as { sensor_id: string; seq: number };
      if (!got.has(r.sensor_id)) got.set(r.sensor_id, new Set());
      got.get(r.sensor_id)!.add(r.seq);
    });
    await new Promise<void>((resolve, reject) => {
      monitor.once("connect", () =>
        monitor.subscribe("electrolyser/+/telemetry", { qos: 1 }, (err) => (err ? reject(err) : resolve())),
      );
    });

    const pins = await provisionedBrokerPins(dir);
    const options = (ids: string[], brokerPins: Uint8Array[]): FleetOptions => ({
      deviceIds: ids,
      rateHz: 5,
      seed: 3,
      host: broker.host,
      port: broker.port,
      caFile: pki.root,
      brokerPins,
      device: (id) => pki.device(id),
      boot: 11,
      connectRate: 100,
    });
    const fleet = new Fleet(options(DEVICES, pins));
    const oldOnly = new Fleet(options(["rot-old"], [pins[0]!]));
    try {
      await fleet.init();
      fleet.start();
      await until("the fleet to connect", () => fleet.stats.connected === DEVICES.length);
      await new Promise((r) => setTimeout(r, 800));

      await rotateBrokerKey({ stateDir: dir });
      await broker.restart();
      expect(await servedPin()).toEqual(pins[1]);
      await until(
        "every board to reconnect to the rotated broker",
        () => fleet.stats.connects >= 2 * DEVICES.length && fleet.stats.connected === DEVICES.length,
      );
      expect(fleet.stats.brokerRefused).toBe(0);

      await oldOnly.init();
      oldOnly.start();
      await until("the old-pin board to refuse the rotated broker", () => oldOnly.stats.brokerRefused >= 2);
      expect(oldOnly.stats.connects).toBe(0);

      await new Promise((r) => setTimeout(r, 800));
      await fleet.stopSampling();
      expect(await fleet.drain(20_000)).toBe(0);
      const counts = await fleet.deviceCounts();
      await until(
        "the monitor to see every reading",
        () => counts.every((c) => (got.get(c.id)?.size ?? 0) === c.published),
        15_000,
      );
      for (const c of counts) {
        expect(c.published).toBeGreaterThan(5);
        expect([...got.get(c.id)!].sort((a, b) => a - b)).toEqual(
          Array.from({ length: c.published }, (_, k) => k),
        );
      }
      expect(got.has("rot-old")).toBe(false);
    } finally {
      await fleet.shutdown();
      await oldOnly.shutdown();
      monitor.end(true);
    }
  }, 120_000);
});
