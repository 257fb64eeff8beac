import { readFile, rm } from "node:fs/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { bindingsPath, type BindingsFile } from "../../src/provision/bindings";
import { provisionBoard } from "../../src/provision/provision-board";
import { readNvsImage } from "../../src/nvs/reader";
import { startVirtualBoard, type VirtualBoard } from "../esp32-rom-double/virtual-board";
import { BROKER, makeState } from "./harness";

let state: string;
let boards: VirtualBoard[] = [];

beforeAll(async () => {
  state = await makeState(["elx-0201", "elx-0202", "elx-0203"]);
  boards = await Promise.all([1, 2, 3].map((i) => startVirtualBoard({ mac: Uint8Array.of(0x24, 0x0a, 0xc4, 0x02, 0x00, i) })));
});

afterAll(async () => {
  await rm(state, { recursive: true, force: true });
  await Promise.all(boards.map((b) => b.stop()));
});

describe("several boards at once (what --ports auto does)", () => {
  it("gives each board its own next identity and records every binding", async () => {
    const results = await Promise.all(boards.map((b) => provisionBoard({
      stateDir: state, path: b.hostPath, baud: 921600, settings: { broker: BROKER, intervalMs: 5000, keyId: 1 },
      force: false, dryRun: false, verify: true, progress: () => {},
    })));
    const ids = results.map((r) => r.deviceId).sort();
    expect(ids).toEqual(["elx-0201", "elx-0202", "elx-0203"]);
    boards.forEach((b, i) => {
      const prov = readNvsImage(b.double.flash.slice(0x9000, 0xf000)).namespaces.get("prov");
      expect(prov?.get("device_id")).toEqual({ type: "string", value: results[i]!.deviceId });
    });
    const file = JSON.parse(await readFile(bindingsPath(state), "utf8")) as BindingsFile;
    expect(file.boards.map((x) => `${x.deviceId}@${x.mac}`).sort()).toEqual(results.map((r) => `${r.deviceId}@${r.mac}`).sort());
  });
});
