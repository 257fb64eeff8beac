import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { deriveDeviceKey, DeviceKeyCache } from "../../src/crypto/device-keys";
import {
  commitGrant,
  emptyGrants,
  grantsPath,
  GrantsView,
  grantPending,
  lookupGrant,
  promotePending,
  reserveGeneration,
  retireGrants,
  updateGrants,
  type GrantsFile,
} from "../../src/crypto/payload-grants";

const T0 = new Date("2026-06-01T00:00:00Z");
const HOUR = 3_600_000;
const dirs: string[] = [];
afterAll(async () => {
  await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
});

/** Reserve + commit, as one provisioning does. */
function provision(
  f: GrantsFile,
  id: string,
  o: { moved?: boolean; graceMs?: number; now?: Date; legacyKeyId?: number | null } = {},
): { file: GrantsFile; generation: number; keyId: number } {
  const r = reserveGeneration(f, id, o.legacyKeyId != null ? [o.legacyKeyId] : []);
  const file = commitGrant(r.file, id, {
    secretId: 1,
    generation: r.generation,
    now: o.now ?? T0,
    movedFromAnotherBoard: o.moved ?? false,
    ...(o.graceMs !== undefined ? { graceMs: o.graceMs } : {}),
    ...(o.legacyKeyId !== undefined ? { legacyKeyId: o.legacyKeyId } : {}),
  });
  return { file, generation: r.generation, keyId: r.keyId };
}

describe("device key generations", () => {
  it("every generation of one device derives a different key, and none equals the pre-generation key", () => {
    const master = new Uint8Array(32).fill(3);
    const keys = [0, 1, 2, 3, 0x1_0000].map((g) =>
      Buffer.from(deriveDeviceKey(master, "elx-1", g)).toString("hex"),
    );
    expect(new Set(keys).size).toBe(keys.length);
    // Generation 0 is what boards provisioned before generations carry: unchanged.
    expect(deriveDeviceKey(master, "elx-1", 0)).toEqual(deriveDeviceKey(master, "elx-1"));
    // The NUL separator: device "a" generation g never meets another device's info.
    expect(deriveDeviceKey(master, "a", 1)).not.toEqual(deriveDeviceKey(master, "a\u0000"));
  });

  it("a reserved generation is never handed out again, even if its provisioning never committed", () => {
    let f = emptyGrants();
    const a = reserveGeneration(f, "d");
    f = a.file; // the board write failed: no commit
    const b = reserveGeneration(f, "d");
    expect(b.generation).toBeGreaterThan(a.generation);
    expect(b.keyId).not.toBe(a.keyId);
  });
});

describe("which key ids the ingest accepts for a device", () => {
  it("re-provisioning the same board: the previous key id opens during the grace period, then is retired", () => {
    const one = provision(emptyGrants(), "d");
    const two = provision(one.file, "d", { graceMs: 24 * HOUR, now: new Date(T0.getTime() + HOUR) });
    const at = (ms: number) => T0.getTime() + ms;
    expect(lookupGrant(two.file, "d", two.keyId, at(2 * HOUR))).toEqual({
      kind: "key",
      secretId: 1,
      generation: two.generation,
    });
    expect(lookupGrant(two.file, "d", one.keyId, at(2 * HOUR))).toEqual({
      kind: "key",
      secretId: 1,
      generation: one.generation,
    });
    expect(lookupGrant(two.file, "d", one.keyId, at(26 * HOUR))).toMatchObject({ kind: "retired" });
    // A third provisioning retires the first at once (only one previous key at a time).
    const three = provision(two.file, "d", { now: new Date(at(3 * HOUR)) });
    expect(lookupGrant(three.file, "d", one.keyId, at(3 * HOUR))).toMatchObject({ kind: "retired" });
    expect(lookupGrant(three.file, "d", two.keyId, at(3 * HOUR))).toMatchObject({ kind: "key" });
  });

  it("an identity moved to another board: the old board's key id is retired at once", () => {
    const one = provision(emptyGrants(), "d");
    const moved = provision(one.file, "d", { moved: true });
    expect(lookupGrant(moved.file, "d", one.keyId, T0.getTime())).toEqual({
      kind: "retired",
      why: expect.stringContaining("moved to another board") as string,
    });
    expect(lookupGrant(moved.file, "d", 200, T0.getTime())).toEqual({ kind: "unknown" });
    // Moved to a board that gets no payload key: nothing of the device opens any more.
    const plain = retireGrants(moved.file, "d", T0, "moved to another board");
    expect(lookupGrant(plain, "d", moved.keyId, T0.getTime())).toMatchObject({ kind: "retired" });
  });

  it("a board provisioned before generations existed: its key id (= secret id) becomes the previous one", () => {
    const first = provision(emptyGrants(), "d", { legacyKeyId: 1, graceMs: HOUR });
    expect(first.keyId).not.toBe(1); // kept clear of the legacy key id
    expect(lookupGrant(first.file, "d", 1, T0.getTime())).toEqual({
      kind: "key",
      secretId: 1,
      generation: 0,
    });
    expect(lookupGrant(first.file, "d", 1, T0.getTime() + 2 * HOUR)).toMatchObject({ kind: "retired" });
    // Devices the file knows nothing of: the caller's legacy rule.
    expect(lookupGrant(first.file, "other", 1, T0.getTime())).toBeUndefined();
  });

  it("key ids wrap after 255 provisionings without ever colliding with the live ones", () => {
    let f = emptyGrants();
    const seen: number[] = [];
    for (let i = 0; i < 600; i++) {
      const p = provision(f, "d", { graceMs: HOUR });
      f = p.file;
      seen.push(p.keyId);
      const live = f.devices.d!.grants.filter((g) => g.state !== "retired").map((g) => g.keyId);
      expect(new Set(live).size).toBe(live.length);
    }
    const gens = f.devices.d!.grants.map((g) => g.generation);
    expect(new Set(gens).size).toBe(gens.length);
  });
});

describe("the ingest's view of the file", () => {
  it("picks up a grant written while it runs, and the cache refuses the retired key id", async () => {
    const dir = await mkdtemp(join(tmpdir(), "grants-"));
    dirs.push(dir);
    let now = T0.getTime();
    const view = new GrantsView({ stateDir: dir }, () => now);
    const master = new Uint8Array(32).fill(5);
    const cache = new DeviceKeyCache(new Map([[1, master]]), view);
    // Nothing recorded for the device: key id = secret id, generation 0.
    expect(cache.keyFor(1, "d")).toEqual(deriveDeviceKey(master, "d"));

    const g1 = await updateGrants(dir, (f) => {
      const p = provision(f, "d", { legacyKeyId: 1, graceMs: 0 });
      return { file: p.file, result: p };
    });
    now += 1500; // the view re-checks a device it knows nothing of at most once a second (it asked above)
    expect(cache.keyFor(g1.keyId, "d")).toEqual(deriveDeviceKey(master, "d", g1.generation));
    expect(cache.keyFor(1, "d")).toEqual({ retired: expect.stringContaining("re-provisioned") as string });
    expect(cache.keyFor(99, "d")).toBeUndefined();

    // A damaged file keeps the last good view instead of refusing every device.
    await writeFile(grantsPath(dir), "{ not json");
    expect(cache.keyFor(g1.keyId, "d")).toEqual(deriveDeviceKey(master, "d", g1.generation));
    expect(cache.keyFor(1, "d")).toMatchObject({ retired: expect.any(String) as string });
  });
});

describe("a field rotation's payload key (npm run trust)", () => {
  const at = (ms: number) => T0.getTime() + ms;

  it("rotate: the new key opens at once (pending) beside the old one; finish: the old one opens for the grace, then is retired", () => {
    // An emulated board (or one provisioned before grants): its legacy key becomes the recorded current one.
    const rotated = grantPending(emptyGrants(), "d", { now: T0, legacyKeyId: 1 });
    const neu = rotated.grant;
    expect(neu).toMatchObject({ state: "pending", secretId: 1 });
    expect(neu.keyId).not.toBe(1);
    expect(lookupGrant(rotated.file, "d", neu.keyId, at(0))).toEqual({
      kind: "key",
      secretId: 1,
      generation: neu.generation,
    });
    expect(lookupGrant(rotated.file, "d", 1, at(0))).toEqual({ kind: "key", secretId: 1, generation: 0 });
    // One rotation at a time per device.
    expect(() => grantPending(rotated.file, "d", { now: T0, legacyKeyId: 1 })).toThrow(/pending/);

    const finished = promotePending(rotated.file, "d", {
      generation: neu.generation,
      now: new Date(at(HOUR)),
      graceMs: 24 * HOUR,
    });
    expect(finished.devices.d!.grants.find((g) => g.keyId === neu.keyId)!.state).toBe("current");
    expect(lookupGrant(finished, "d", 1, at(2 * HOUR))).toMatchObject({ kind: "key", generation: 0 });
    expect(lookupGrant(finished, "d", 1, at(26 * HOUR))).toEqual({
      kind: "retired",
      why: expect.stringContaining("rotated") as string,
    });
    expect(lookupGrant(finished, "d", neu.keyId, at(26 * HOUR))).toMatchObject({ kind: "key" });

    // The next rotation takes a new generation and key id; finishing it with no grace retires at once.
    const again = grantPending(finished, "d", { now: new Date(at(3 * HOUR)), legacyKeyId: 1 });
    expect(again.grant.generation).toBeGreaterThan(neu.generation);
    expect([1, neu.keyId]).not.toContain(again.grant.keyId);
    const done = promotePending(again.file, "d", {
      generation: again.grant.generation,
      now: new Date(at(3 * HOUR)),
      graceMs: 0,
    });
    expect(lookupGrant(done, "d", neu.keyId, at(3 * HOUR))).toMatchObject({ kind: "retired" });
    expect(lookupGrant(done, "d", 1, at(3 * HOUR))).toMatchObject({ kind: "retired" });
    expect(lookupGrant(done, "d", again.grant.keyId, at(3 * HOUR))).toMatchObject({ kind: "key" });
  });

  it("re-provisioning during a rotation retires the key the rotation sent", () => {
    const one = provision(emptyGrants(), "d");
    const rotated = grantPending(one.file, "d", { now: T0, legacyKeyId: 1 });
    const two = provision(rotated.file, "d", { graceMs: HOUR });
    expect(lookupGrant(two.file, "d", rotated.grant.keyId, T0.getTime())).toMatchObject({ kind: "retired" });
    expect(lookupGrant(two.file, "d", one.keyId, T0.getTime())).toMatchObject({ kind: "key" });
  });

  it("the ingest's view opens the new key at its first reading and refuses the retired one within a second of finish", async () => {
    const dir = await mkdtemp(join(tmpdir(), "grants-rotation-"));
    dirs.push(dir);
    let now = T0.getTime();
    const view = new GrantsView({ stateDir: dir }, () => now);
    const master = new Uint8Array(32).fill(6);
    const cache = new DeviceKeyCache(new Map([[1, master]]), view);
    expect(cache.keyFor(1, "d")).toEqual(deriveDeviceKey(master, "d"));

    const grant = await updateGrants(dir, (f) => {
      const r = grantPending(f, "d", { now: new Date(now), legacyKeyId: 1 });
      return { file: r.file, result: r.grant };
    });
    now += 10; // well within the second the view would otherwise wait for a device it knows nothing of
    expect(cache.keyFor(grant.keyId, "d")).toEqual(deriveDeviceKey(master, "d", grant.generation));
    expect(cache.keyFor(1, "d")).toEqual(deriveDeviceKey(master, "d"));

    await updateGrants(dir, (f) => ({
      file: promotePending(f, "d", { generation: grant.generation, now: new Date(now), graceMs: 0 }),
      result: undefined,
    }));
    // Memoised as usable: still opens until the view's next look at the file, at most a second later.
    now += 1000;
    expect(cache.keyFor(1, "d")).toEqual({ retired: expect.stringContaining("rotated") as string });
    expect(cache.keyFor(grant.keyId, "d")).toEqual(deriveDeviceKey(master, "d", grant.generation));
  });
});
