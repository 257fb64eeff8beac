import { createHash } from "node:crypto";
import { readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { parseDocument } from "yaml";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { parseIdentity, PROV_NAMESPACE } from "../../../firmware/src/identity/nvs-layout";
import { parseManifest } from "../../../manifests/src/index";
import { listDeviceIds, pkiPaths } from "../../../pki/src/index";
import { readNvsImage } from "../../src/nvs/reader";
import { bindingsPath, type BindingsFile } from "../../src/provision/bindings";
import { nvsValueForFirmware } from "../../src/provision/nvs-image";
import { startVirtualBoard, type VirtualBoard } from "../../testkit/esp32-rom-double/virtual-board";
import { BROKER, makeState, readOrNull, runCli } from "./harness";

const NVS = 0x9000;
const NVS_SIZE = 0x6000;

let state: string;
const boards: VirtualBoard[] = [];

beforeAll(async () => {
  // m-0003 is deliberately not issued: provisioning from the manifest must issue it.
  state = await makeState(["m-0001", "m-0002"]);
});

afterAll(async () => {
  await rm(state, { recursive: true, force: true });
});

afterEach(async () => {
  await Promise.all(boards.splice(0).map((b) => b.stop()));
});

async function board(last: number): Promise<VirtualBoard> {
  const b = await startVirtualBoard({ mac: Uint8Array.of(0x24, 0x0a, 0xc4, 0x09, 0x00, last) });
  boards.push(b);
  return b;
}

const macOf = (last: number): string => `24:0a:c4:09:00:${last.toString(16).padStart(2, "0")}`;

function flashedIdentity(b: VirtualBoard) {
  const prov = readNvsImage(b.double.flash.slice(NVS, NVS + NVS_SIZE)).namespaces.get(PROV_NAMESPACE);
  const parsed = parseIdentity((k) => nvsValueForFirmware(prov?.get(k)));
  if (!parsed.ok) throw new Error(JSON.stringify(parsed.errors));
  return parsed.identity;
}

/** Manifest devices in an order unlike the PKI's sorted one, each at its own site. */
function manifestJson(devices: Record<string, unknown>[]): string {
  return `${JSON.stringify(
    {
      version: 1,
      fleet: "plant",
      sites: [{ id: "hall-a" }, { id: "hall-b" }],
      defaults: { board: "esp32-devkitc" },
      devices,
    },
    null,
    2,
  )}\n`;
}

async function bindingsFile(): Promise<BindingsFile> {
  return JSON.parse(await readFile(bindingsPath(state), "utf8")) as BindingsFile;
}

function sha256Hex(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

describe("provisioning from a fleet manifest", () => {
  const path = (): string => join(state, "fleet.json");

  it("hands out the manifest's devices in its order, issues a missing identity, takes the site and interval from the manifest, and records the binding in it", async () => {
    await writeFile(
      path(),
      manifestJson([
        { id: "m-0003", site: "hall-b", intervalMs: 2000 },
        { id: "m-0001", site: "hall-a" },
        { id: "m-0002", site: "hall-a" },
      ]),
    );
    const b = await board(1);
    const run = await runCli(
      [b.hostPath, "--broker", BROKER, "--manifest", path(), "--site", "ignored-site", "--interval", "7000"],
      state,
    );
    expect(run.stderr).toBe("");
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/issuing the identity of m-0003 \(rsa-2048\) from the fleet PKI/);
    expect(run.stdout).toMatch(/provisioned: m-0003 on 24:0a:c4:09:00:01/);

    const identity = flashedIdentity(b);
    expect(identity.deviceId).toBe("m-0003");
    expect(identity.site).toBe("hall-b");
    // The interval the ingest holds the board to (rate_exceeded), not the flag's.
    expect(identity.intervalMs).toBe(2000);
    expect(await listDeviceIds(pkiPaths(state))).toContain("m-0003");
    const certDer = new Uint8Array(await readFile(pkiPaths(state).device("m-0003").certDer!));
    expect(identity.tls!.certDer).toEqual(certDer);

    const text = await readFile(path(), "utf8");
    const manifest = parseManifest(text, "json", path());
    const binding = (await bindingsFile()).boards.find((x) => x.deviceId === "m-0003")!;
    expect(manifest.devices.map((d) => d.id)).toEqual(["m-0003", "m-0001", "m-0002"]);
    expect(manifest.devices[0]!.provisioning).toEqual({
      mac: macOf(1),
      certSerial: binding.certSerial,
      certSha256: sha256Hex(certDer),
      keyId: 1,
      at: binding.provisionedAt,
    });
    expect(manifest.devices.slice(1).every((d) => d.provisioning === undefined)).toBe(true);
    // The manifest stays 2-space JSON, and holds no secret.
    expect(text).toBe(`${JSON.stringify(JSON.parse(text), null, 2)}\n`);
    const key = Buffer.from(identity.tls!.keyDer);
    for (const secret of [
      key.toString("base64").slice(40, 80),
      key.toString("hex").slice(80, 160),
      Buffer.from(identity.payload!.key).toString("hex"),
      Buffer.from(identity.payload!.key).toString("base64"),
    ]) {
      expect(text).not.toContain(secret);
    }

    // The next board gets the next unbound device of the manifest, not the PKI's first.
    const c = await board(2);
    const second = await runCli(
      [c.hostPath, "--broker", BROKER, "--manifest", path(), "--no-encrypt"],
      state,
    );
    expect(second.code).toBe(0);
    expect(flashedIdentity(c).deviceId).toBe("m-0001");
    const after = parseManifest(await readFile(path(), "utf8"), "json", path());
    expect(after.devices.map((d) => d.provisioning?.mac ?? null)).toEqual([macOf(1), macOf(2), null]);
    expect(after.devices[1]!.provisioning!.keyId).toBeNull();
  });

  it("refuses on a binding only the manifest records (no bindings-file entry), unless --force", async () => {
    const manifestPath = join(state, "recorded.json");
    // Recorded by another workstation: this state folder's bindings file knows nothing of it.
    const other = {
      mac: "24:0a:c4:77:77:77",
      certSerial: "0abc",
      certSha256: "b".repeat(64),
      keyId: 1,
      at: "2026-01-02T03:04:05.000Z",
    };
    const original = manifestJson([
      { id: "m-0002", site: "hall-a", provisioning: other },
      { id: "m-0001", site: "hall-a" },
    ]);
    await writeFile(manifestPath, original);
    const bindingsBefore = await readOrNull(bindingsPath(state));
    expect(bindingsBefore).not.toContain("24:0a:c4:77:77:77");

    const b = await board(3);
    const refused = await runCli(
      [b.hostPath, "--broker", BROKER, "--manifest", manifestPath, "--device", "m-0002"],
      state,
    );
    expect(refused.code).toBe(1);
    expect(refused.stderr.trim()).toBe(
      `provision: identity "m-0002" is already on board 24:0a:c4:77:77:77 (provisioned ${other.at}, per ${manifestPath}); use --force to move it to ${macOf(3)}`,
    );
    expect(await readFile(manifestPath, "utf8")).toBe(original);
    expect(await readOrNull(bindingsPath(state))).toBe(bindingsBefore);
    expect(b.double.log.some((l) => l.startsWith("FLASH_DEFL"))).toBe(false);

    b.double.reset();
    const moved = await runCli(
      [b.hostPath, "--broker", BROKER, "--manifest", manifestPath, "--device", "m-0002", "--force"],
      state,
    );
    expect(moved.stderr).toBe("");
    expect(moved.code).toBe(0);
    const m = parseManifest(await readFile(manifestPath, "utf8"), "json", manifestPath);
    expect(m.devices.find((d) => d.id === "m-0002")!.provisioning!.mac).toBe(macOf(3));
  });

  it("refuses a second identity on a board only the manifest binds", async () => {
    const manifestPath = join(state, "board-bound.json");
    const original = manifestJson([
      { id: "m-0004", site: "hall-a" },
      {
        id: "m-0002",
        site: "hall-a",
        provisioning: {
          mac: macOf(4),
          certSerial: "01",
          certSha256: "c".repeat(64),
          keyId: null,
          at: "2026-02-03T04:05:06.000Z",
        },
      },
    ]);
    await writeFile(manifestPath, original);
    const b = await board(4);
    const refused = await runCli(
      [b.hostPath, "--broker", BROKER, "--manifest", manifestPath, "--device", "m-0004"],
      state,
    );
    expect(refused.code).toBe(1);
    expect(refused.stderr.trim()).toBe(
      `provision: board ${macOf(4)} already holds identity "m-0002" (provisioned 2026-02-03T04:05:06.000Z, per ${manifestPath}); use --force to give it "m-0004" instead`,
    );
    expect(await readFile(manifestPath, "utf8")).toBe(original);
  });

  it("--device must be a device of the manifest: one line, before the board is touched", async () => {
    const manifestPath = join(state, "small.json");
    const original = manifestJson([{ id: "m-0001", site: "hall-a" }]);
    await writeFile(manifestPath, original);
    const b = await board(5);
    const run = await runCli(
      [b.hostPath, "--broker", BROKER, "--manifest", manifestPath, "--device", "m-0002"],
      state,
    );
    expect(run.code).toBe(1);
    expect(run.stderr.trim().split("\n")).toEqual([
      `provision: device "m-0002" is not in the manifest ${manifestPath} (it lists m-0001); add it there or pass another --manifest`,
    ]);
    expect(b.double.log).not.toContain("SYNC");
    expect(await readFile(manifestPath, "utf8")).toBe(original);
  });

  it("--dry-run issues no identity and leaves the manifest as it was", async () => {
    const manifestPath = join(state, "dry.json");
    const original = manifestJson([{ id: "m-0006", site: "hall-b" }]);
    await writeFile(manifestPath, original);
    const b = await board(7);
    const run = await runCli(
      [b.hostPath, "--broker", BROKER, "--manifest", manifestPath, "--dry-run"],
      state,
    );
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(
      /dry run: nothing written or issued; m-0006 has no identity yet \(a real run issues a rsa-2048 one\) and would be bound to 24:0a:c4:09:00:07/,
    );
    expect(await listDeviceIds(pkiPaths(state))).not.toContain("m-0006");
    expect(await readFile(manifestPath, "utf8")).toBe(original);
    expect(b.double.log.some((l) => l.startsWith("FLASH_DEFL"))).toBe(false);
  });

  it("edits a YAML manifest keeping its comments", async () => {
    const manifestPath = join(state, "fleet.yaml");
    const original = [
      "# Plant fleet: edited by hand and by npm run provision",
      "version: 1",
      "fleet: plant",
      "sites:",
      "  - id: hall-a # north building",
      "defaults:",
      "  board: esp32-devkitc",
      "devices:",
      "  # cabinet 7, left rail",
      "  - id: m-0005",
      "    site: hall-a # moved here in March",
      "",
    ].join("\n");
    await writeFile(manifestPath, original);
    const b = await board(6);
    const run = await runCli([b.hostPath, "--broker", BROKER, "--manifest", manifestPath], state);
    expect(run.stderr).toBe("");
    expect(run.code).toBe(0);
    expect(flashedIdentity(b).deviceId).toBe("m-0005");
    const text = await readFile(manifestPath, "utf8");
    for (const comment of [
      "# Plant fleet: edited by hand and by npm run provision",
      "# north building",
      "# cabinet 7, left rail",
      "# moved here in March",
    ]) {
      expect(text).toContain(comment);
    }
    expect(parseDocument(text).errors).toEqual([]);
    const m = parseManifest(text, "yaml", manifestPath);
    expect(m.devices[0]!.provisioning).toMatchObject({ mac: macOf(6), keyId: 1 });
    expect(m.devices[0]!.provisioning!.certSha256).toBe(
      sha256Hex(new Uint8Array(await readFile(pkiPaths(state).device("m-0005").certDer!))),
    );
  });
});
