/**
 * The real ingest CLI, Mosquitto and VictoriaMetrics: a device's envelopes open only under the key ids it was
 * given (provisioning/payload-keys.json, written here while the ingest runs, as provisioning does). A message
 * sealed under a retired key id is refused as `retired_key`, dead-lettered and counted; one under a key id
 * the device never had stays `unknown_key_id`; a device the file does not know keeps the older rule.
 */
import { afterEach, describe, expect, it } from "vitest";
import { sealEnvelope } from "../../../firmware/src/envelope/envelope";
import { encodeReading } from "../../../firmware/src/payload/codec";
import { telemetryTopic } from "../../../firmware/src/telemetry/topics";
import { deriveDeviceKey } from "../../src/crypto/device-keys";
import { nodeAead } from "../../src/crypto/node-aead";
import { commitGrant, reserveGeneration, updateGrants } from "../../src/crypto/payload-grants";
import { sampleReading, type FleetBoard, type TestFleet } from "../../testkit/ingest/fleet-publisher";
import { scrapeMetrics } from "../../testkit/ingest/spawn-ingest";
import {
  connectFleet,
  readDeadLetters,
  spawnIngest,
  startTestStack,
  stopSpawned,
  waitForStoredCount,
  waitUntil,
  type SpawnedIngest,
  type TestStack,
} from "./helpers/stack";

let stack: TestStack | undefined;
let fleet: TestFleet | undefined;
let ingest: SpawnedIngest | undefined;

afterEach(async () => {
  if (ingest) await stopSpawned(ingest);
  await fleet?.end();
  await stack?.cleanup();
  ingest = fleet = stack = undefined;
});

/** One provisioning of `id` on the same board, with no grace for the key before (a rotation that completed). */
function provisionOnce(stateDir: string, id: string): Promise<{ generation: number; keyId: number }> {
  return updateGrants(stateDir, (f) => {
    const r = reserveGeneration(f, id);
    const file = commitGrant(r.file, id, {
      secretId: 1,
      generation: r.generation,
      now: new Date(),
      movedFromAnotherBoard: false,
      graceMs: 0,
    });
    return { file, result: { generation: r.generation, keyId: r.keyId } };
  });
}

describe("payload key ids at the ingest", () => {
  it("refuses a retired key id as retired_key, counts and dead-letters it, and stores the current one", async () => {
    stack = await startTestStack({ devices: 2 });
    ingest = await spawnIngest(stack, { encrypted: true });
    fleet = await connectFleet(stack, { encrypted: true });
    const [rotated, untouched] = fleet.boards as [FleetBoard, FleetBoard];

    const first = await provisionOnce(stack.stateDir, rotated.id);
    const second = await provisionOnce(stack.stateDir, rotated.id);
    let seq = 0;
    const sealAs = (g: { generation: number; keyId: number }) => {
      const s = seq++;
      return sealEnvelope(nodeAead, deriveDeviceKey(stack!.master, rotated.id, g.generation), {
        keyId: g.keyId,
        boot: 1,
        counter: s,
        topic: telemetryTopic(rotated.id),
        sensorId: rotated.id,
        plaintext: encodeReading(sampleReading(rotated.id, s, rotated.nextTs(), 1)),
      });
    };
    const topic = telemetryTopic(rotated.id);
    await rotated.publishRaw(topic, sealAs(second)); // seq 0: stored
    await rotated.publishRaw(topic, sealAs(first)); // seq 1: retired
    await rotated.publishRaw(topic, sealAs({ generation: 9, keyId: 9 })); // seq 2: never given
    await rotated.publishRaw(topic, sealAs(second)); // seq 3: stored
    // Not in the file: key id = fleet secret id, generation 0, as before.
    await untouched.publishNext();

    const reason = (r: string) => `ingest_rejected_by_reason_total{reason="${r}"}`;
    await waitUntil(
      async () => {
        const m = await scrapeMetrics(ingest!.metricsPort);
        return (m.get(reason("retired_key")) ?? 0) >= 1 && (m.get(reason("unknown_key_id")) ?? 0) >= 1;
      },
      30_000,
      "both refusals counted",
    ).catch(async (err: unknown) => {
      const all = await scrapeMetrics(ingest!.metricsPort);
      console.log([...all].filter(([k]) => k.includes("reject") || k.includes("written")));
      console.log(await readDeadLetters(stack!.deadLetterPath));
      throw err;
    });
    const m = await scrapeMetrics(ingest.metricsPort);
    expect(m.get(reason("retired_key"))).toBe(1);
    expect(m.get(reason("unknown_key_id"))).toBe(1);
    const dead = await readDeadLetters(stack.deadLetterPath);
    expect(dead.map((d) => d.reason).sort()).toEqual(["retired_key", "unknown_key_id"]);
    expect(dead.find((d) => d.reason === "retired_key")?.detail).toMatch(
      new RegExp(`payload key id ${first.keyId} is retired`),
    );

    const stored = await waitForStoredCount(stack.vm.url, 3, 60_000);
    expect(stored.get(rotated.id)).toEqual([0, 3]);
    expect(stored.get(untouched.id)).toEqual([0]);
  });
});
