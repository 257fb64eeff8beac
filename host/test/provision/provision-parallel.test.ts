import { readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { parseManifest } from "../../../manifests/src/index";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { bindingsPath, type BindingsFile } from "../../src/provision/bindings";
import { provisionBoard } from "../../src/provision/provision-board";
import { readNvsImage } from "../../src/nvs/reader";
import { DeviceKeyCache, loadPayloadKeyring } from "../../src/crypto/device-keys";
import { GrantsView } from "../../src/crypto/payload-grants";
import { ProvisionError } from "../../src/provision/errors";
import { startVirtualBoard, type VirtualBoard } from "../../testkit/esp32-rom-double/virtual-board";
import { BROKER, makeState } from "./harness";

let state: string;
let boards: VirtualBoard[] = [];

beforeAll(async () => {
  state = await makeState(["elx-0201", "elx-0202", "elx-0203"]);
  boards = await Promise.all(
    [1, 2, 3].map((i) => startVirtualBoard({ mac: Uint8Array.of(0x24, 0x0a, 0xc4, 0x02, 0x00, i) })),
  );
});

afterAll(async () => {
  await rm(state, { recursive: true, force: true });
  await Promise.all(boards.map((b) => b.stop()));
});

const provisionEach = (stateDir: string, targets: VirtualBoard[], manifestPath?: string) =>
  targets.map((b) =>
    provisionBoard({
      stateDir,
      path: b.hostPath,
      baud: 921600,
      settings: { broker: BROKER, intervalMs: 5000, keyId: 1 },
      force: false,
      dryRun: false,
      verify: true,
      progress: () => {},
      ...(manifestPath !== undefined ? { manifestPath } : {}),
    }),
  );
const provisionAll = (stateDir: string, targets: VirtualBoard[], manifestPath?: string) =>
  Promise.all(provisionEach(stateDir, targets, manifestPath));
const nvsOf = (b: VirtualBoard) => readNvsImage(b.double.flash.slice(0x9000, 0xf000)).namespaces.get("prov");

describe("several boards at once (what --ports auto does)", () => {
  it("gives each board its own next identity and records every binding", async () => {
    const results = await provisionAll(state, boards);
    const ids = results.map((r) => r.deviceId).sort();
    expect(ids).toEqual(["elx-0201", "elx-0202", "elx-0203"]);
    boards.forEach((b, i) => {
      const prov = readNvsImage(b.double.flash.slice(0x9000, 0xf000)).namespaces.get("prov");
      expect(prov?.get("device_id")).toEqual({ type: "string", value: results[i]!.deviceId });
    });
    const file = JSON.parse(await readFile(bindingsPath(state), "utf8")) as BindingsFile;
    expect(file.boards.map((x) => `${x.deviceId}@${x.mac}`).sort()).toEqual(
      results.map((r) => `${r.deviceId}@${r.mac}`).sort(),
    );
  });

  it("every board's payload key opens at the ingest: all sealed under the one fleet secret the ingest holds", async () => {
    const ids = ["elx-0401", "elx-0402", "elx-0403", "elx-0404"];
    const keyState = await makeState(ids);
    const keyBoards = await Promise.all(
      ids.map((_, i) => startVirtualBoard({ mac: Uint8Array.of(0x24, 0x0a, 0xc4, 0x04, 0x00, i) })),
    );
    try {
      const results = await provisionAll(keyState, keyBoards);
      const ingestKeys = new DeviceKeyCache(
        await loadPayloadKeyring(keyState),
        new GrantsView({ stateDir: keyState }),
      );
      keyBoards.forEach((b, i) => {
        const prov = nvsOf(b);
        const key = prov?.get("payload_key");
        const keyId = prov?.get("key_id");
        expect(key?.type).toBe("blob");
        expect(keyId?.type).toBe("i32");
        const expected = ingestKeys.keyFor((keyId as { value: number }).value, results[i]!.deviceId);
        expect(expected).toBeInstanceOf(Uint8Array);
        expect(
          Buffer.from((key as { value: Uint8Array }).value).equals(Buffer.from(expected as Uint8Array)),
        ).toBe(true);
      });
    } finally {
      await Promise.all(keyBoards.map((b) => b.stop()));
      await rm(keyState, { recursive: true, force: true });
    }
  });

  it("from an empty secrets folder: every board refused with one clear error, nothing written or bound", async () => {
    // Before the fix, provisioning created the secret itself, racing: boards of one batch got different fleet
    // secrets (the race itself is repeated in host/test/crypto/device-keys.test.ts).
    const ids = ["elx-0501", "elx-0502", "elx-0503", "elx-0504"];
    const bareState = await makeState(ids, { payloadSecret: false });
    const bare = await Promise.all(
      ids.map((_, i) => startVirtualBoard({ mac: Uint8Array.of(0x24, 0x0a, 0xc4, 0x05, 0x00, i) })),
    );
    try {
      const outcomes = await Promise.allSettled(provisionEach(bareState, bare));
      const messages = new Set(
        outcomes.map((o) => {
          expect(o.status).toBe("rejected");
          const reason = (o as PromiseRejectedResult).reason as unknown;
          expect(reason).toBeInstanceOf(ProvisionError);
          expect((reason as ProvisionError).code).toBe("no_payload_secret");
          return (reason as Error).message;
        }),
      );
      expect(messages.size).toBe(1);
      expect([...messages][0]).toMatch(
        /no fleet payload secret 1 at .*payload-master-1\.key: provisioning does not create one\. Run `npm run setup`/,
      );
      for (const b of bare) expect(nvsOf(b)).toBeUndefined();
      await expect(readFile(bindingsPath(bareState), "utf8")).rejects.toThrow(/ENOENT/);
      await expect(readFile(join(bareState, "secrets", "payload-master-1.key"))).rejects.toThrow(/ENOENT/);
    } finally {
      await Promise.all(bare.map((b) => b.stop()));
      await rm(bareState, { recursive: true, force: true });
    }
  });

  it("with a manifest: the first devices in its order, identities issued as needed, every binding recorded in the manifest", async () => {
    const fleetState = await makeState(["elx-0301"]);
    const fleetBoards = await Promise.all(
      [1, 2, 3].map((i) => startVirtualBoard({ mac: Uint8Array.of(0x24, 0x0a, 0xc4, 0x03, 0x00, i) })),
    );
    try {
      const manifestPath = join(fleetState, "fleet.json");
      const ids = ["elx-0304", "elx-0301", "elx-0303", "elx-0302"];
      await writeFile(
        manifestPath,
        `${JSON.stringify(
          {
            version: 1,
            fleet: "p",
            sites: [{ id: "s" }],
            defaults: { board: "esp32-devkitc" },
            devices: ids.map((id) => ({ id, site: "s" })),
          },
          null,
          2,
        )}\n`,
      );
      const results = await provisionAll(fleetState, fleetBoards, manifestPath);
      expect(results.map((r) => r.deviceId).sort()).toEqual(["elx-0301", "elx-0303", "elx-0304"]);
      const m = parseManifest(await readFile(manifestPath, "utf8"), "json", manifestPath);
      expect(
        m.devices
          .map((d) => d.provisioning?.mac ?? null)
          .filter((x) => x !== null)
          .sort(),
      ).toEqual(results.map((r) => r.mac).sort());
      expect(m.devices.find((d) => d.id === "elx-0302")?.provisioning).toBeUndefined();
      for (const r of results)
        expect(m.devices.find((d) => d.id === r.deviceId)?.provisioning?.mac).toBe(r.mac);
    } finally {
      await Promise.all(fleetBoards.map((b) => b.stop()));
      await rm(fleetState, { recursive: true, force: true });
    }
  });
});
