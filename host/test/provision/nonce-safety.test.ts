/**
 * Re-provisioning never reuses a (key, nonce) pair. The scenario from the security review: an identity is on
 * board A, which reboots fast (a crash loop advances its boot counter far past "minutes since the epoch");
 * within that lead the identity is moved (--force) to a blank board B. B's boot counter starts at minutes
 * since the epoch, inside the range A already used, so with one key per identity B seals under (key, boot, seq)
 * triples A already sealed under. With a key generation per provisioning, B's key is new.
 */
import { rm } from "node:fs/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { sealEnvelope } from "../../../firmware/src/envelope/envelope";
import { encodeReading } from "../../../firmware/src/payload/codec";
import { telemetryTopic } from "../../../firmware/src/telemetry/topics";
import { DeviceKeyCache, loadPayloadKeyring } from "../../src/crypto/device-keys";
import { nodeAead } from "../../src/crypto/node-aead";
import { GrantsView } from "../../src/crypto/payload-grants";
import { sampleReading } from "../../testkit/ingest/fleet-publisher";
import { readNvsImage } from "../../src/nvs/reader";
import { provisionBoard } from "../../src/provision/provision-board";
import { startVirtualBoard, type VirtualBoard } from "../../testkit/esp32-rom-double/virtual-board";
import { BROKER, makeState } from "./harness";

const ID = "elx-0701";
/** Boots board A went through after provisioning: a crash loop, or a board that reboots on every fault. */
const A_REBOOTS = 2000;
const T0 = new Date("2026-06-01T00:00:00Z");
const MINUTES_LATER = 5;

let state: string;
let boards: VirtualBoard[] = [];

beforeAll(async () => {
  state = await makeState([ID]);
  boards = await Promise.all(
    [1, 2].map((i) => startVirtualBoard({ mac: Uint8Array.of(0x24, 0x0a, 0xc4, 0x07, 0x00, i) })),
  );
});

afterAll(async () => {
  await Promise.all(boards.map((b) => b.stop()));
  await rm(state, { recursive: true, force: true });
});

function provision(b: VirtualBoard, force: boolean, at: Date) {
  return provisionBoard({
    stateDir: state,
    path: b.hostPath,
    baud: 921600,
    deviceId: ID,
    settings: { broker: BROKER, intervalMs: 5000, keyId: 1 },
    force,
    dryRun: false,
    verify: false,
    progress: () => {},
    now: () => at,
  });
}

function payloadOf(b: VirtualBoard): { key: Uint8Array; keyId: number; boot: number } {
  const prov = readNvsImage(b.double.flash.slice(0x9000, 0xf000)).namespaces.get("prov");
  const key = prov?.get("payload_key");
  const keyId = prov?.get("key_id");
  const boot = prov?.get("boot");
  if (key?.type !== "blob" || keyId?.type !== "i32" || boot?.type !== "i32")
    throw new Error("no payload key in NVS");
  return { key: key.value, keyId: keyId.value, boot: boot.value };
}

/** The GCM key and 12-byte nonce a board seals reading (boot, seq) under, as the firmware does. */
function sealedUnder(p: { key: Uint8Array; keyId: number }, boot: number, seq: number): string {
  const env = sealEnvelope(nodeAead, p.key, {
    keyId: p.keyId,
    boot,
    counter: seq,
    topic: telemetryTopic(ID),
    sensorId: ID,
    plaintext: encodeReading(sampleReading(ID, seq, T0.getTime(), boot)),
  });
  return `${Buffer.from(p.key).toString("hex")}:${Buffer.from(env.subarray(2, 14)).toString("hex")}`;
}

describe("moving an identity to a blank board within a fast-rebooting board's lead", () => {
  it("never seals under a (key, nonce) pair the old board used, and the ingest takes only the new key id", async () => {
    const [a, b] = boards as [VirtualBoard, VirtualBoard];
    await provision(a, false, T0);
    const onA = payloadOf(a);
    // Board A boots A_REBOOTS times; the firmware advances the counter before sealing, so boot k seals as k.
    const usedByA = new Set<string>();
    for (let boot = onA.boot + 1; boot <= onA.boot + A_REBOOTS; boot++)
      for (const seq of [0, 1]) usedByA.add(sealedUnder(onA, boot, seq));

    b.double.reset();
    await provision(b, true, new Date(T0.getTime() + MINUTES_LATER * 60_000));
    const onB = payloadOf(b);
    // The scenario holds: B's first boots fall inside the range A already used.
    expect(onB.boot + 1).toBeLessThanOrEqual(onA.boot + A_REBOOTS);
    const reused = [0, 1, 2].flatMap((k) =>
      [0, 1].map((seq) => sealedUnder(onB, onB.boot + 1 + k, seq)).filter((x) => usedByA.has(x)),
    );
    expect(reused).toEqual([]);
    expect(Buffer.from(onB.key).equals(Buffer.from(onA.key))).toBe(false);
    expect(onB.keyId).not.toBe(onA.keyId);

    // The ingest opens B's key id; A's (which the old board still holds) is retired, not merely unknown.
    const ingest = new DeviceKeyCache(await loadPayloadKeyring(state), new GrantsView({ stateDir: state }));
    expect(ingest.keyFor(onB.keyId, ID)).toEqual(onB.key);
    expect(ingest.keyFor(onA.keyId, ID)).toEqual({
      retired: expect.stringContaining("moved to another board") as string,
    });
  });
});
