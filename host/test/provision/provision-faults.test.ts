import { readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { bindingsPath } from "../../src/provision/bindings";
import { writeFileAtomic } from "../../../shared/state-dir";
import { startVirtualBoard, type VirtualBoard } from "../../testkit/esp32-rom-double/virtual-board";
import type { DoubleFaults } from "../../testkit/esp32-rom-double/esp32-rom-double";
import { BROKER, makeState, readOrNull, runCli } from "./harness";

const NVS = 0x9000;
const NVS_SIZE = 0x6000;
const EXISTING_BINDINGS = '{"version":1,"boards":[],"released":[]}\n';
// Compact on purpose: any rewrite (even of an unchanged manifest) would show as a byte difference.
const EXISTING_MANIFEST =
  '{"version":1,"fleet":"f","sites":[{"id":"s"}],"devices":[{"id":"elx-0101","site":"s","board":"esp32-devkitc"}]}\n';

let state: string;
let manifest: string;
const boards: VirtualBoard[] = [];

beforeAll(async () => {
  state = await makeState(["elx-0101"]);
  await writeFileAtomic(bindingsPath(state), EXISTING_BINDINGS);
  manifest = join(state, "fleet.json");
  await writeFileAtomic(manifest, EXISTING_MANIFEST);
});

afterAll(async () => {
  await rm(state, { recursive: true, force: true });
});

afterEach(async () => {
  await Promise.all(boards.splice(0).map((b) => b.stop()));
});

async function provisionWith(faults: DoubleFaults, extra: string[] = []) {
  const b = await startVirtualBoard({ faults });
  boards.push(b);
  const run = await runCli(
    [b.hostPath, "--broker", BROKER, "--device", "elx-0101", "--manifest", manifest, ...extra],
    state,
  );
  return { b, run };
}

/** A failed run: exit 1, exactly one error line, bindings and manifest untouched. */
async function expectFailure(run: { code: number | null; stderr: string }, message: RegExp): Promise<void> {
  expect(run.code).toBe(1);
  const lines = run.stderr.trim().split("\n");
  expect(lines).toHaveLength(1);
  expect(lines[0]).toMatch(/^provision: /);
  expect(lines[0]).toMatch(message);
  expect(await readOrNull(bindingsPath(state))).toBe(EXISTING_BINDINGS);
  expect(await readOrNull(manifest)).toBe(EXISTING_MANIFEST);
}

/** A successful run recorded the board in the manifest; put both files back for the next case. */
async function expectRecordedThenRestore(): Promise<void> {
  expect(await readFile(manifest, "utf8")).toMatch(/"provisioning": \{\n\s+"mac": "24:0a:c4:12:34:56"/);
  await writeFileAtomic(bindingsPath(state), EXISTING_BINDINGS);
  await writeFileAtomic(manifest, EXISTING_MANIFEST);
}

describe("provisioning faults from the ROM-loader double", () => {
  it("no SYNC answer: says nothing answered, writes nothing", async () => {
    const { b, run } = await provisionWith({ noSync: true }, ["--connect-attempts", "2"]);
    await expectFailure(run, /no answer to SYNC; is an ESP32 connected and powered, in download mode/);
    expect(b.double.log.filter((l) => l === "SYNC").length).toBeGreaterThanOrEqual(5);
    expect(b.double.flash.subarray(NVS, NVS + NVS_SIZE).every((x) => x === 0xff)).toBe(true);
  });

  it("an application's boot text instead of the ROM: says the board is not in download mode", async () => {
    const { run } = await provisionWith({ bootText: "spi-boot" }, ["--connect-attempts", "2"]);
    await expectFailure(
      run,
      /booted its application \(boot:0x13 SPI_FAST_FLASH_BOOT\) instead of the download mode; hold BOOT \(IO0\) low/,
    );
  });

  it("the ROM's own boot banner before sync is skipped and provisioning succeeds", async () => {
    const { b, run } = await provisionWith({ bootText: "download" });
    expect(run.stderr).toBe("");
    expect(run.code).toBe(0);
    expect(b.double.log.filter((l) => l === "SYNC").length).toBeGreaterThanOrEqual(2);
    // Leave the bindings and the manifest as the other cases expect them.
    await expectRecordedThenRestore();
  });

  it("data blocks failing their checksum every time: reports it after the retries", async () => {
    const { b, run } = await provisionWith({ badChecksum: "always" });
    await expectFailure(
      run,
      /rejected data blocks with a bad checksum while writing flash at 0x9000, three times in a row/,
    );
    expect(b.double.log.filter((l) => l.startsWith("FLASH_DEFL_DATA")).length).toBe(3);
  });

  it("one corrupted block is retried and the board is provisioned", async () => {
    const { b, run } = await provisionWith({ badChecksum: "once" }, ["--verify"]);
    expect({ code: run.code, stderr: run.stderr }).toEqual({ code: 0, stderr: "" });
    expect(run.stdout).toMatch(/provisioned and verified: elx-0101/);
    expect(b.double.log.filter((l) => l.startsWith("FLASH_DEFL_DATA")).length).toBe(2);
    await expectRecordedThenRestore();
  });

  it("a wrong MD5 after the write: refuses to record the board", async () => {
    const { run } = await provisionWith({ wrongMd5: true });
    await expectFailure(run, /the flash MD5 differs from the image after writing flash at 0x9000/);
  });

  it("a board that disappears mid-write: says so", async () => {
    const { b, run } = await provisionWith({ disappearDuringWrite: true });
    await expectFailure(
      run,
      /the board disappeared while writing flash at 0x9000 .*reconnect it and run again/,
    );
    expect(b.gone).toBe(true);
  });
});
