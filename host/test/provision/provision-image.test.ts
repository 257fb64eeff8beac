import { mkdtemp, readFile, writeFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runCli } from "./harness";

const FIXTURES = resolve(import.meta.dirname, "../fixtures/nvs");
let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "provision-image-"));
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("npm run provision -- image / inspect", () => {
  it("builds the ESP-IDF fixture image byte for byte from its CSV", async () => {
    const out = join(dir, "record.bin");
    const run = await runCli(
      ["image", "--csv", join(FIXTURES, "provisioning-record.csv"), "--size", "0x6000", "--out", out],
      dir,
    );
    expect(run.stderr).toBe("");
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(
      /wrote .*record\.bin: 24576 bytes, 61 of 756 entries used, last page kept free/,
    );
    expect((await readFile(out)).equals(await readFile(join(FIXTURES, "provisioning-record.bin")))).toBe(
      true,
    );
  });

  it("inspects an image without printing secrets", async () => {
    const run = await runCli(["inspect", join(FIXTURES, "provisioning-record.bin")], dir);
    expect(run.code).toBe(0);
    expect(run.stdout).toContain('device_id       string "elx-site1-0001"');
    expect(run.stdout).toContain("interval        i32    -5");
    expect(run.stdout).toContain("payload_key     blob   <secret, 32 bytes>");
    expect(run.stdout).toContain("ca_der          blob   1536 bytes");
    expect(run.stdout).toMatch(/spare page present/);
  });

  it("fails with one clear line when the data does not fit", async () => {
    const run = await runCli(
      [
        "image",
        "--csv",
        join(FIXTURES, "generated/full-partition.csv"),
        "--size",
        "0x3000",
        "--out",
        join(dir, "full.bin"),
      ],
      dir,
    );
    expect(run.code).toBe(1);
    expect(run.stderr.trim()).toBe(
      'provision: partition full at "big": 3 pages of which the last stays free as NVS\'s spare page; use a larger partition or less data',
    );
  });

  it("reports a corrupted image", async () => {
    const bad = new Uint8Array(await readFile(join(FIXTURES, "provisioning-record.bin")));
    bad[0x1c0] = bad[0x1c0]! ^ 0xff;
    const path = join(dir, "bad.bin");
    await writeFile(path, bad);
    const run = await runCli(["inspect", path], dir);
    expect(run.code).toBe(1);
    expect(run.stdout).toMatch(/problem: page 0 entry 11 "ca_der": data CRC mismatch/);
  });
});
