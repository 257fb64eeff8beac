import { describe, expect, it } from "vitest";
import { mkdtemp, readFile, readdir, rm, stat, writeFile, mkdir } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  deriveDeviceKey,
  loadOrCreatePayloadMaster,
  loadPayloadKeyring,
  payloadMasterPath,
} from "../../src/crypto/device-keys";

describe("payload secrets and device keys", () => {
  it("creates the fleet secret once, mode 0600, and never replaces it", async () => {
    const dir = await mkdtemp(join(tmpdir(), "est-keys-"));
    const a = await loadOrCreatePayloadMaster(dir, 0);
    const b = await loadOrCreatePayloadMaster(dir, 0);
    expect(Buffer.from(a).equals(Buffer.from(b))).toBe(true);
    expect((await stat(payloadMasterPath(dir, 0))).mode & 0o777).toBe(0o600);
    expect((await readFile(payloadMasterPath(dir, 0))).length).toBe(32);
    const ring = await loadPayloadKeyring(dir);
    expect([...ring.keys()]).toEqual([0]);
  });

  it("gives every concurrent caller on an empty secrets folder the same secret (20 rounds of 6)", async () => {
    // On the code before the fix (write temp + rename) 6 callers got up to 3 different secrets in every round.
    for (let round = 0; round < 20; round++) {
      const dir = await mkdtemp(join(tmpdir(), "est-keys-race-"));
      try {
        const got = await Promise.all(Array.from({ length: 6 }, () => loadOrCreatePayloadMaster(dir, 1)));
        const onDisk = Buffer.from(await readFile(payloadMasterPath(dir, 1))).toString("hex");
        expect(new Set(got.map((m) => Buffer.from(m).toString("hex")))).toEqual(new Set([onDisk]));
        expect(await readdir(join(dir, "secrets"))).toEqual(["payload-master-1.key"]);
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    }
  });

  it("refuses a damaged secret instead of overwriting it", async () => {
    const dir = await mkdtemp(join(tmpdir(), "est-keys-"));
    await mkdir(join(dir, "secrets"));
    await writeFile(payloadMasterPath(dir, 1), "short");
    await expect(loadOrCreatePayloadMaster(dir, 1)).rejects.toThrow(/5 bytes, expected 32/);
    expect((await readFile(payloadMasterPath(dir, 1))).toString()).toBe("short");
  });

  it("derives distinct keys per device and per secret", () => {
    const m1 = new Uint8Array(32).fill(1);
    const m2 = new Uint8Array(32).fill(2);
    const k = (m: Uint8Array, id: string): string => Buffer.from(deriveDeviceKey(m, id)).toString("hex");
    expect(k(m1, "a")).not.toBe(k(m1, "b"));
    expect(k(m1, "a")).not.toBe(k(m2, "a"));
    expect(k(m1, "a")).toBe(k(m1, "a"));
    expect(() => deriveDeviceKey(new Uint8Array(16), "a")).toThrow(/32 bytes/);
  });
});
