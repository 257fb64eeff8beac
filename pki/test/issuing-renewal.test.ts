// `npm run pki -- issuing-ca --renew`: a new issuing CA under the same root, with the old one kept (bundle,
// CRL, key) for what it issued. Broker-level behaviour (both CAs' boards connect, revocation of either) is in
// host/test/broker/issuing-renewal.test.ts against Mosquitto.
import { execFile } from "node:child_process";
import { readdir, readFile, rename } from "node:fs/promises";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { afterAll, describe, expect, it } from "vitest";
import { ensureDevPki, exportDeviceBundle, issueDevice, pkiPaths, renewIssuingCa } from "../src/index";
import { splitCrls } from "../src/crl";
import { loadDatabase } from "../src/database";
import { expiryRecords } from "../src/expiry";
import { nextIssuingName } from "../src/issuing-renewal";
import { removeDir, snapshot, tempStateDir, tool } from "./helpers";

const repo = resolve(import.meta.dirname, "../..");
const run = promisify(execFile);
const dirs: string[] = [];
afterAll(async () => {
  await Promise.all(dirs.map(removeDir));
});

async function freshPki(devices: string[]): Promise<string> {
  const dir = await tempStateDir();
  dirs.push(dir);
  await ensureDevPki({ stateDir: dir, devices, services: ["ingest"], deviceKeyType: "p256" });
  return dir;
}

const certsIn = (pem: string) => pem.match(/-----BEGIN CERTIFICATE-----/g)?.length ?? 0;

describe("issuing CA renewal", () => {
  it("names the new CA apart from every earlier one", () => {
    expect(nextIssuingName("EST Issuing CA ab12 1", [])).toBe("EST Issuing CA ab12 2");
    expect(nextIssuingName("EST Issuing CA ab12 2", ["EST Issuing CA ab12 3"])).toBe("EST Issuing CA ab12 4");
  });

  it("keeps the old CA trusted and revocable, with openssl verifying both chains against the root", async () => {
    const dir = await freshPki(["d-old"]);
    const p = pkiPaths(dir);
    await renewIssuingCa({ stateDir: dir });
    await issueDevice({ stateDir: dir, id: "d-new", keyType: "p256" });
    await renewIssuingCa({ stateDir: dir }); // twice: three issuing CAs, all still valid

    expect(certsIn(await readFile(p.caBundle, "utf8"))).toBe(4);
    expect(splitCrls(await readFile(p.crl, "utf8"))).toHaveLength(4);
    expect((await readdir(p.previousIssuingKeyDir)).sort()).toHaveLength(2);
    const db = await loadDatabase(p.database);
    expect(db.issued.filter((r) => r.kind === "issuing").map((r) => r.name.replace(/^.* /, ""))).toEqual([
      "1",
      "2",
      "3",
    ]);
    // Every leaf names the CA that signed it (the current CA's own ones are left unmarked).
    const dev = (id: string) => db.issued.find((r) => r.kind === "device" && r.name === id)!;
    const issuing = db.issued.filter((r) => r.kind === "issuing");
    expect(dev("d-old").issuer).toBe(issuing[0]!.serial);
    expect(dev("d-new").issuer).toBe(issuing[1]!.serial);

    // What a CRL-checking verifier (Mosquitto's OpenSSL) sees: both leaves verify, with their CA's CRL.
    for (const id of ["d-old", "d-new"]) {
      const ok = await tool("openssl", [
        "verify",
        "-crl_check",
        "-CAfile",
        p.caBundle,
        "-CRLfile",
        p.crl,
        p.device(id).cert,
      ]);
      expect(ok.stdout).toMatch(/: OK/);
    }
    // Provisioning still exports an old-CA board (signed by a CA that is no longer the current one).
    await expect(exportDeviceBundle(dir, "d-old")).resolves.toMatchObject({ deviceId: "d-old" });
    // The replaced CAs' CRLs are watched for expiry too.
    const crls = (await expiryRecords(dir)).filter((r) => r.kind === "crl").map((r) => r.name);
    expect(crls).toHaveLength(4);
  });

  it("needs the root key: with it offline, a clear error and nothing changed", async () => {
    const dir = await freshPki([]);
    const p = pkiPaths(dir);
    await rename(p.rootKey, join(dir, "root-offline.key.pem"));
    const before = await snapshot(p.dir);
    await expect(renewIssuingCa({ stateDir: dir })).rejects.toThrow(
      /renewing the issuing CA needs the root key, which is offline: put it back at \S+root\.key\.pem/,
    );
    expect(await snapshot(p.dir)).toEqual(before);
  });

  it("the CLI prints --help, renews, and says what stays valid", async () => {
    const dir = await freshPki(["c-1"]);
    const cli = (args: string[]) =>
      run(process.execPath, ["--import", "tsx", join(repo, "pki/src/cli.ts"), ...args, "--state-dir", dir], {
        cwd: repo,
      });
    expect((await cli(["issuing-ca", "--help"])).stdout).toMatch(/--renew/);
    const out = (await cli(["issuing-ca", "--renew"])).stdout;
    expect(out).toMatch(/^pki: issuing CA renewed: EST Issuing CA \S+ 2 /m);
    expect(out).toMatch(/3 certificate\(s\) of the previous CA stay valid/); // c-1, the ingest, the broker
    expect(out).toMatch(/broker certificate re-issued from the new CA on the same key/);
  });
});
