import { readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { parseIdentity, PROV_NAMESPACE } from "../../../firmware/src/identity/nvs-layout";
import { pkiPaths } from "../../../pki/src/index";
import { loadDatabase } from "../../../pki/src/database";
import { deriveDeviceKey, loadPayloadMaster } from "../../src/crypto/device-keys";
import { readGrants } from "../../src/crypto/payload-grants";
import { readNvsImage } from "../../src/nvs/reader";
import { bindingsPath, type BindingsFile } from "../../src/provision/bindings";
import { loadIdentity } from "../../src/provision/identity";
import { identityImage, nvsValueForFirmware } from "../../src/provision/nvs-image";
import { buildPartitionTable, MODDABLE_PARTITIONS } from "../../src/provision/partition-table";
import { startVirtualBoard, type VirtualBoard } from "../../testkit/esp32-rom-double/virtual-board";
import { BROKER, makeState, readOrNull, runCli, writePskFile } from "./harness";

const NVS = 0x9000;
const NVS_SIZE = 0x6000;
const PSK = "correct horse battery staple";

let state: string;
const boards: VirtualBoard[] = [];

beforeAll(async () => {
  state = await makeState(["elx-0001", "elx-0002", "elx-0003"]);
});

afterAll(async () => {
  await rm(state, { recursive: true, force: true });
});

afterEach(async () => {
  await Promise.all(boards.splice(0).map((b) => b.stop()));
});

async function board(o: Parameters<typeof startVirtualBoard>[0] = {}): Promise<VirtualBoard> {
  const b = await startVirtualBoard(o);
  boards.push(b);
  return b;
}

const moddableTable = { address: 0x8000, data: buildPartitionTable(MODDABLE_PARTITIONS) };

function decodeIdentity(region: Uint8Array) {
  const decoded = readNvsImage(region);
  expect(decoded.problems).toEqual([]);
  const prov = decoded.namespaces.get(PROV_NAMESPACE);
  const boot = prov?.get("boot");
  const parsed = parseIdentity((k) => nvsValueForFirmware(prov?.get(k)));
  if (!parsed.ok) throw new Error(JSON.stringify(parsed.errors));
  return { identity: parsed.identity, boot: boot?.type === "i32" ? boot.value : -1, decoded };
}

async function bindings(): Promise<BindingsFile> {
  return JSON.parse(await readFile(bindingsPath(state), "utf8")) as BindingsFile;
}

describe("npm run provision against the ESP32 ROM-loader double", () => {
  it("writes the identity into NVS, verifies it, and binds the device id to the MAC", async () => {
    const b = await board({ preload: [moddableTable] });
    const pskFile = await writePskFile(state, PSK);
    const run = await runCli(
      [
        b.hostPath,
        "--broker",
        BROKER,
        "--site",
        "site-1",
        "--wifi-ssid",
        "plant-floor",
        "--wifi-psk-file",
        pskFile,
        "--verify",
      ],
      state,
    );
    expect(run.stderr).toBe("");
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/ESP32-D0WD-V3 \(revision 3\), 40 MHz crystal, MAC 24:0a:c4:12:34:56/);
    expect(run.stdout).toMatch(/flash 4 MB/);
    expect(run.stdout).toMatch(/partition table: NVS "nvs" at 0x9000, 0x6000 bytes/);
    expect(run.stdout).toMatch(/writing NVS 100%/);
    expect(run.stdout).toMatch(/read back and compared: identical/);
    expect(run.stdout).toMatch(/provisioned and verified: elx-0001 on 24:0a:c4:12:34:56/);

    // The real protocol ran: ROM sync, stub upload, baud change, compressed write, MD5, read-back.
    const log = b.double.log;
    for (const step of [
      "SYNC",
      "READ_REG 0x40001000",
      "READ_REG 0x3ff5a004",
      "READ_REG 0x3ff5a008",
      "READ_REG 0x3ff40014",
      "MEM_END 0x400a902c",
      "CHANGE_BAUDRATE 921600",
      "SPI_CMD 0x9f",
      `FLASH_DEFL_BEGIN 0x9000 ${NVS_SIZE}`,
      "FLASH_DEFL_END",
      `SPI_FLASH_MD5 0x9000 ${NVS_SIZE}`,
      `READ_FLASH 0x9000 ${NVS_SIZE}`,
    ])
      expect(log).toContain(step);
    expect(b.double.mode).toBe("stub");

    // The flash region is exactly the image of this identity, and the firmware's parser accepts it.
    const region = b.double.flash.slice(NVS, NVS + NVS_SIZE);
    const { identity, boot, decoded } = decodeIdentity(region);
    expect(decoded.hasSparePage).toBe(true);
    expect(Buffer.from(identityImage(identity, boot, NVS_SIZE).image).equals(Buffer.from(region))).toBe(true);
    const p = pkiPaths(state);
    expect(identity.deviceId).toBe("elx-0001");
    expect(identity.broker).toBe(BROKER);
    expect(identity.port).toBe(8883);
    expect(identity.site).toBe("site-1");
    expect(identity.wifi).toEqual({ ssid: "plant-floor", psk: PSK });
    expect(Buffer.from(identity.tls!.certDer).equals(await readFile(p.device("elx-0001").certDer!))).toBe(
      true,
    );
    expect(Buffer.from(identity.tls!.keyDer).equals(await readFile(p.device("elx-0001").keyDer!))).toBe(true);
    expect(Buffer.from(identity.tls!.caDer).equals(await readFile(p.rootDer))).toBe(true);
    // The first provisioning of the identity: key generation 1 of fleet secret 1, granted under key id 1.
    expect(identity.payload?.keyId).toBe(1);
    expect(identity.payload!.key).toEqual(deriveDeviceKey(await loadPayloadMaster(state, 1), "elx-0001", 1));
    expect((await readGrants(state)).devices["elx-0001"]?.grants).toEqual([
      expect.objectContaining({ keyId: 1, secretId: 1, generation: 1, state: "current" }),
    ]);
    expect(boot).toBeGreaterThanOrEqual(Math.floor(Date.now() / 60_000) - 5);
    // Nothing outside the partition was touched.
    expect(b.double.flash.subarray(0x8000, 0x8000 + 0xc00)).toEqual(moddableTable.data);
    expect(b.double.flash.subarray(NVS + NVS_SIZE, NVS + NVS_SIZE + 0x1000).every((x) => x === 0xff)).toBe(
      true,
    );

    const f = await bindings();
    expect(f.boards).toHaveLength(1);
    expect(f.boards[0]).toMatchObject({
      deviceId: "elx-0001",
      mac: "24:0a:c4:12:34:56",
      keyId: 1,
      nvsOffset: NVS,
      nvsSize: NVS_SIZE,
    });
    expect(f.boards[0]!.certSha256).toMatch(/^[0-9a-f]{64}$/);

    // Never a secret on the console or in the bindings.
    const key = Buffer.from(identity.tls!.keyDer);
    const secrets = [
      PSK,
      Buffer.from(identity.payload!.key).toString("hex"),
      Buffer.from(identity.payload!.key).toString("base64"),
      key.toString("base64").slice(40, 80),
      key.toString("hex").slice(80, 160),
    ];
    const bindingsText = await readFile(bindingsPath(state), "utf8");
    for (const s of secrets) {
      expect(run.stdout).not.toContain(s);
      expect(bindingsText).not.toContain(s);
    }
  });

  it("re-provisions a bound board with its own identity and carries its boot counter forward", async () => {
    const first = await readFile(bindingsPath(state), "utf8");
    expect(first).toContain("elx-0001");
    const b = await board({ preload: [moddableTable] });
    // The board already carries elx-0001 with a boot counter above anything time-based.
    const carried = 2_000_000_000;
    b.double.flash.set((await priorImage(carried)).image, NVS);
    const run = await runCli([b.hostPath, "--broker", BROKER], state);
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/provisioned: elx-0001 on 24:0a:c4:12:34:56/);
    expect(decodeIdentity(b.double.flash.slice(NVS, NVS + NVS_SIZE)).boot).toBe(carried);
    expect((await bindings()).boards.map((x) => x.deviceId)).toEqual(["elx-0001"]);
  });

  it("refuses to put a bound identity on a second board unless --force, then moves it", async () => {
    const b = await board({
      mac: Uint8Array.of(0x24, 0x0a, 0xc4, 0xaa, 0xbb, 0xcc),
      preload: [moddableTable],
    });
    const before = await readOrNull(bindingsPath(state));
    const refused = await runCli([b.hostPath, "--broker", BROKER, "--device", "elx-0001"], state);
    expect(refused.code).toBe(1);
    expect(refused.stderr.trim()).toBe(
      `provision: identity "elx-0001" is already on board 24:0a:c4:12:34:56 (provisioned ${(await bindings()).boards[0]!.provisionedAt}); use --force to move it to 24:0a:c4:aa:bb:cc`,
    );
    expect(await readOrNull(bindingsPath(state))).toBe(before);
    expect(b.double.flash.subarray(NVS, NVS + NVS_SIZE).every((x) => x === 0xff)).toBe(true);

    b.double.reset(); // the DTR/RTS pulse a real adapter gives, which a pty cannot carry
    const moved = await runCli([b.hostPath, "--broker", BROKER, "--device", "elx-0001", "--force"], state);
    expect(moved.code).toBe(0);
    const f = await bindings();
    expect(f.boards).toEqual([expect.objectContaining({ deviceId: "elx-0001", mac: "24:0a:c4:aa:bb:cc" })]);
    expect(f.released).toEqual([expect.objectContaining({ deviceId: "elx-0001", mac: "24:0a:c4:12:34:56" })]);
    // The old board keeps a copy of the old key: the new board got a new certificate and the old one is revoked.
    const oldSerial = f.released[0]!.certSerial;
    expect(f.boards[0]!.certSerial).not.toBe(oldSerial);
    const db = await loadDatabase(pkiPaths(state).database);
    expect(db.issued.find((r) => r.serial === oldSerial)?.revoked?.reason).toBe("superseded");
    expect(db.issued.find((r) => r.serial === f.boards[0]!.certSerial)?.revoked).toBeUndefined();
    expect(decodeIdentity(b.double.flash.slice(NVS, NVS + NVS_SIZE)).identity.deviceId).toBe("elx-0001");
  });

  it("refuses to encrypt without the fleet secret, before touching the board, and says which command creates it", async () => {
    const bare = await makeState(["elx-0601"], { payloadSecret: false });
    try {
      const b = await board({
        mac: Uint8Array.of(0x24, 0x0a, 0xc4, 0x06, 0x00, 0x01),
        preload: [moddableTable],
      });
      const flashBefore = b.double.flash.slice(NVS, NVS + NVS_SIZE);
      const run = await runCli([b.hostPath, "--broker", BROKER], bare);
      expect(run.code).toBe(1);
      expect(run.stderr).toMatch(
        /^provision: no fleet payload secret 1 at \S+payload-master-1\.key: provisioning does not create one\. Run `npm run setup`/m,
      );
      expect(b.double.flash.slice(NVS, NVS + NVS_SIZE)).toEqual(flashBefore);
      expect(await readOrNull(join(bare, "secrets", "payload-master-1.key"))).toBeNull();
      expect(await readOrNull(bindingsPath(bare))).toBeNull();
    } finally {
      await rm(bare, { recursive: true, force: true });
    }
  });

  it("gives an unbound board the next unprovisioned identity, and refuses one carrying a foreign identity", async () => {
    const b = await board({
      mac: Uint8Array.of(0x24, 0x0a, 0xc4, 0x00, 0x00, 0x02),
      preload: [moddableTable],
    });
    const run = await runCli([b.hostPath, "--broker", BROKER, "--no-encrypt"], state);
    expect(run.code).toBe(0);
    const { identity } = decodeIdentity(b.double.flash.slice(NVS, NVS + NVS_SIZE));
    expect(identity.deviceId).toBe("elx-0002");
    expect(identity.payload).toBeNull();

    const foreign = await priorImage(5, "other-fleet-7");
    const c = await board({
      mac: Uint8Array.of(0x24, 0x0a, 0xc4, 0x00, 0x00, 0x03),
      preload: [moddableTable, { address: NVS, data: foreign.image }],
    });
    const before = await readOrNull(bindingsPath(state));
    const refused = await runCli([c.hostPath, "--broker", BROKER], state);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(
      /^provision: board 24:0a:c4:00:00:03 already carries identity "other-fleet-7" in its NVS/,
    );
    expect(await readOrNull(bindingsPath(state))).toBe(before);
    expect(c.double.flash.slice(NVS, NVS + NVS_SIZE)).toEqual(foreign.image);
  });

  it("uses the NVS partition named by the board's partition table", async () => {
    const table = buildPartitionTable([
      { label: "nvs", type: 1, subtype: 2, offset: 0x11000, size: 0x5000 },
      { label: "factory", type: 0, subtype: 0, offset: 0x20000, size: 0x200000 },
    ]);
    const b = await board({
      mac: Uint8Array.of(0x24, 0x0a, 0xc4, 0x00, 0x00, 0x04),
      preload: [{ address: 0x8000, data: table }],
    });
    const run = await runCli([b.hostPath, "--broker", BROKER, "--device", "elx-0003", "--verify"], state);
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/NVS "nvs" at 0x11000, 0x5000 bytes/);
    expect(decodeIdentity(b.double.flash.slice(0x11000, 0x16000)).identity.deviceId).toBe("elx-0003");
    expect(b.double.flash.subarray(NVS, 0x11000).every((x) => x === 0xff)).toBe(true);
  });

  it("--dry-run connects and builds the image but writes nothing", async () => {
    const b = await board({ mac: Uint8Array.of(0x24, 0x0a, 0xc4, 0x00, 0x00, 0x05) });
    const before = await readOrNull(bindingsPath(state));
    const run = await runCli(
      [b.hostPath, "--broker", BROKER, "--device", "elx-0003", "--force", "--dry-run"],
      state,
    );
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/no partition table on the board; using Moddable's default NVS at 0x9000/);
    expect(run.stdout).toMatch(/dry run: nothing written/);
    expect(b.double.log.some((l) => l.startsWith("FLASH_DEFL"))).toBe(false);
    expect(b.double.flash.subarray(NVS, NVS + NVS_SIZE).every((x) => x === 0xff)).toBe(true);
    expect(await readOrNull(bindingsPath(state))).toBe(before);
  });
});

/** An image of elx-0001's identity (or another id's) as an older provisioning would have left it. */
async function priorImage(boot: number, deviceId = "elx-0001") {
  const { identity } = await loadIdentity(state, "elx-0001", { broker: BROKER, intervalMs: 5000, keyId: 1 });
  return identityImage({ ...identity, deviceId }, boot, NVS_SIZE);
}
