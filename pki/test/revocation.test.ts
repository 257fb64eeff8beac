// Revocation that bites: `revoke <id>` takes every certificate a device ever had onto the CRL, and
// single serials, services and the broker can be revoked; public/revocations.json tells the broker
// which identities have no valid certificate left.
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { x509 } from "../src/x509";
import {
  ensureDevPki,
  issueBroker,
  issueDevices,
  revokeDevice,
  revokeIdentity,
  revokeSerial,
  rotateDevice,
  splitCrls,
  type PkiPaths,
  type RevocationList,
} from "../src/index";
import { loadDatabase } from "../src/database";
import { PkiError } from "../src/errors";

let dir: string;
let paths: PkiPaths;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "est-pki-revoke-"));
  paths = await ensureDevPki({
    stateDir: dir,
    devices: ["rv-1", "rv-2"],
    services: ["ingest", "monitor"],
    deviceKeyType: "p256",
  });
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function crlSerials(): Promise<Set<string>> {
  const text = await readFile(paths.crl, "utf8");
  return new Set(
    splitCrls(text).flatMap((b) =>
      new x509.X509Crl(b).entries.map((e) => e.serialNumber.toLowerCase().replace(/^0+/, "")),
    ),
  );
}

async function serialsOf(kind: string, name?: string): Promise<string[]> {
  const db = await loadDatabase(paths.database);
  return db.issued
    .filter((r) => r.kind === kind && (name === undefined || r.name === name))
    .map((r) => r.serial);
}

const revocations = async (): Promise<RevocationList> =>
  JSON.parse(await readFile(paths.revocations, "utf8")) as RevocationList;

describe("revoke", () => {
  it("revokes every certificate a device had: issued, replaced by --force, rotated", async () => {
    await issueDevices({ stateDir: dir, ids: ["rv-1"], keyType: "p256", force: true });
    await rotateDevice({ stateDir: dir, id: "rv-1" });
    const all = await serialsOf("device", "rv-1");
    expect(all).toHaveLength(3);

    const revoked = await revokeDevice(dir, "rv-1", "keyCompromise");
    expect(revoked.sort()).toEqual([...all].sort());
    const onCrl = await crlSerials();
    for (const s of all) expect(onCrl.has(s), `serial ${s} on the CRL`).toBe(true);
    for (const s of await serialsOf("device", "rv-2")) expect(onCrl.has(s)).toBe(false);

    const list = await revocations();
    expect(list.denied).toEqual(["rv-1"]);
    expect(list.revoked.filter((r) => r.name === "rv-1")).toHaveLength(3);
  });

  it("revokes one serial; the identity stays allowed while it has a valid certificate", async () => {
    const first = (await serialsOf("device", "rv-2"))[0] as string;
    await rotateDevice({ stateDir: dir, id: "rv-2" });
    const colons = first.match(/../g)?.join(":").toUpperCase() ?? first;
    const rec = await revokeSerial(dir, colons, "superseded");
    expect(rec.serial).toBe(first);
    const onCrl = await crlSerials();
    expect(onCrl.has(first)).toBe(true);
    const current = (await serialsOf("device", "rv-2")).filter((s) => s !== first);
    for (const s of current) expect(onCrl.has(s)).toBe(false);
    expect((await revocations()).denied).not.toContain("rv-2");
  });

  it("revokes a service's and the broker's certificates", async () => {
    const monitor = await serialsOf("service", "monitor");
    expect(await revokeIdentity(dir, { kind: "service", name: "monitor" })).toEqual(monitor);
    const oldBroker = await serialsOf("broker");
    await issueBroker({ stateDir: dir, force: true });
    const brokers = await serialsOf("broker");
    expect(await revokeIdentity(dir, { kind: "broker" })).toEqual(brokers);
    const onCrl = await crlSerials();
    for (const s of [...monitor, ...oldBroker, ...brokers]) expect(onCrl.has(s)).toBe(true);
    for (const s of await serialsOf("service", "ingest")) expect(onCrl.has(s)).toBe(false);
    // The broker is no client: only client identities are denied by name.
    expect((await revocations()).denied).toEqual(["monitor", "rv-1"]);
  });

  it("a new certificate for a revoked device takes it off the denied list", async () => {
    await issueDevices({ stateDir: dir, ids: ["rv-1"], keyType: "p256", force: true });
    expect((await revocations()).denied).toEqual(["monitor"]);
  });

  it("refuses unknown serials, the root CA and unknown identities with a clear error", async () => {
    await expect(revokeSerial(dir, "1234abcd")).rejects.toThrow(/no certificate with serial 1234abcd/);
    await expect(revokeSerial(dir, "xyz")).rejects.toThrow(/not a hexadecimal serial/);
    const root = (await serialsOf("root"))[0] as string;
    await expect(revokeSerial(dir, root)).rejects.toThrow(/root CA cannot be revoked/);
    await expect(revokeIdentity(dir, { kind: "service", name: "bridge" })).rejects.toBeInstanceOf(PkiError);
    await expect(revokeDevice(dir, "nobody")).rejects.toThrow(/unknown device "nobody"/);
  });
});
