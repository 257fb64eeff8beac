// The state folder: layout and permissions, idempotence, no silent overwrite, refusals that change nothing.
import { X509Certificate } from "node:crypto";
import { readFile, rename, stat } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  PkiError,
  createCa,
  ensureDevPki,
  exportDeviceBundle,
  issueBroker,
  issueDevice,
  issueDevices,
  issueService,
  listIdentities,
  pkiPaths,
  revokeDevice,
  rotateDevice,
} from "../src/index";
import { removeDir, snapshot, tempStateDir, tool } from "./helpers";

let dir: string;
beforeEach(async () => {
  dir = await tempStateDir();
});
afterEach(() => removeDir(dir));

const mode = async (p: string): Promise<number> => (await stat(p)).mode & 0o777;

async function expectPkiError(p: Promise<unknown>, code: string, message: RegExp): Promise<void> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(PkiError);
  expect((err as PkiError).code).toBe(code);
  expect((err as PkiError).message).toMatch(message);
  expect((err as PkiError).message).not.toContain("\n");
}

describe("layout", () => {
  it("pkiPaths is pure: it computes paths without touching the disk", async () => {
    const p = pkiPaths(dir);
    expect(p.caBundle).toBe(`${dir}/pki/public/ca-bundle.pem`);
    expect(p.device("dev-1")).toEqual({
      cert: `${dir}/pki/devices/dev-1/cert.pem`,
      key: `${dir}/pki/devices/dev-1/key.pem`,
      certDer: `${dir}/pki/devices/dev-1/cert.der`,
      keyDer: `${dir}/pki/devices/dev-1/key.der`,
    });
    expect(p.service("ingest").cert).toBe(`${dir}/pki/services/ingest/cert.pem`);
    expect(p.broker.key).toBe(`${dir}/pki/broker/key.pem`);
    expect(await snapshot(dir)).toEqual({});
  });

  it("keeps CA keys in a 0700 folder apart from what services mount; every key file is 0600", async () => {
    const p = await ensureDevPki({ stateDir: dir, devices: ["dev-1"], deviceKeyType: "p256" });
    expect(await mode(p.caPrivateDir)).toBe(0o700);
    for (const k of [
      p.rootKey,
      p.issuingKey,
      p.database,
      p.broker.key,
      p.service("ingest").key,
      p.device("dev-1").key,
      p.device("dev-1").keyDer ?? "",
    ]) {
      expect(await mode(k), k).toBe(0o600);
    }
    for (const f of [p.root, p.caBundle, p.crl, p.broker.cert, p.device("dev-1").cert])
      expect(await mode(f), f).toBe(0o644);
    // Nothing secret in the mountable folders.
    const mountable = [
      ...Object.keys(await snapshot(p.publicDir)),
      ...Object.keys(await snapshot(`${p.dir}/broker`)),
    ];
    expect(
      mountable.filter(
        (f) => f.includes("ca-private") || f.endsWith("root.key.pem") || f.endsWith("issuing.key.pem"),
      ),
    ).toEqual([]);
    expect(Object.keys(await snapshot(p.publicDir)).sort()).toEqual([
      "/ca-bundle.pem",
      "/crl-issuing.pem",
      "/crl-root.pem",
      "/crl.pem",
      "/issuing.der",
      "/issuing.pem",
      "/revocations.json",
      "/root.der",
      "/root.pem",
    ]);
  });

  it("writes a CRL with no entries right after the CA is created", async () => {
    const p = await createCa(dir);
    expect(await readFile(p.crl, "utf8")).toMatch(
      /^-----BEGIN X509 CRL-----[\s\S]+-----END X509 CRL-----\n-----BEGIN X509 CRL-----[\s\S]+-----END X509 CRL-----\n$/,
    );
  });
});

describe("ensureDevPki", () => {
  it("is idempotent: a second call changes nothing, a later one only adds what is missing", async () => {
    const progress: number[] = [];
    await ensureDevPki({
      stateDir: dir,
      devices: ["a1", "a2"],
      deviceKeyType: "p256",
      onProgress: (d) => progress.push(d),
    });
    expect(progress).toEqual([1, 2]);
    const before = await snapshot(dir);
    await ensureDevPki({ stateDir: dir, devices: ["a1", "a2"], deviceKeyType: "p256" });
    expect(await snapshot(dir)).toEqual(before);
    await ensureDevPki({
      stateDir: dir,
      devices: ["a1", "a2", "a3"],
      services: ["ingest", "bridge"],
      deviceKeyType: "p256",
    });
    const after = await snapshot(dir);
    for (const [f, h] of Object.entries(before))
      if (!f.endsWith("database.json")) expect(after[f], f).toBe(h);
    expect(
      Object.keys(after)
        .filter((f) => !(f in before))
        .sort(),
    ).toEqual([
      "/pki/devices/a3/cert.der",
      "/pki/devices/a3/cert.pem",
      "/pki/devices/a3/key.der",
      "/pki/devices/a3/key.pem",
      "/pki/services/bridge/cert.pem",
      "/pki/services/bridge/key.pem",
    ]);
    const rows = await listIdentities(dir);
    expect(
      rows.map((r) => `${r.kind}:${r.name}`).filter((n) => !n.startsWith("root") && !n.startsWith("issuing")),
    ).toEqual([
      "broker:localhost",
      "service:ingest",
      "device:a1",
      "device:a2",
      "service:bridge",
      "device:a3",
    ]);
  });

  it("issues RSA-2048 device keys by default", async () => {
    const p = await ensureDevPki({ stateDir: dir, devices: ["board-1"] });
    const cert = new X509Certificate(await readFile(p.device("board-1").cert));
    expect(cert.publicKey.asymmetricKeyDetails?.modulusLength).toBe(2048);
  });

  it("two concurrent first runs end with one consistent CA", async () => {
    await Promise.all([
      ensureDevPki({ stateDir: dir, devices: ["r1"], deviceKeyType: "p256" }),
      ensureDevPki({ stateDir: dir, devices: ["r2"], deviceKeyType: "p256" }),
    ]);
    const p = pkiPaths(dir);
    for (const id of ["r1", "r2"]) {
      const v = await tool("openssl", [
        "verify",
        "-crl_check_all",
        "-CAfile",
        p.caBundle,
        "-CRLfile",
        p.crl,
        p.device(id).cert,
      ]);
      expect(v.stdout).toMatch(/: OK/);
    }
    const issuing = new X509Certificate(await readFile(p.issuing));
    const key = (await import("node:crypto")).createPrivateKey(await readFile(p.issuingKey));
    expect(issuing.checkPrivateKey(key)).toBe(true);
  });

  it("re-signs a CRL that has less than a third of its lifetime left", async () => {
    const p = await createCa(dir, { now: new Date(Date.now() - 80 * 86_400_000) });
    const before = await readFile(p.crlIssuing, "utf8");
    await ensureDevPki({ stateDir: dir, devices: [], deviceKeyType: "p256" });
    const after = await readFile(p.crlIssuing, "utf8");
    expect(after).not.toBe(before);
    const text = (await tool("openssl", ["crl", "-in", p.crlIssuing, "-noout", "-nextupdate"])).stdout;
    expect(Date.parse(text.replace("nextUpdate=", "")) - Date.now()).toBeGreaterThan(80 * 86_400_000);
    // Fresh again: a further call leaves it alone.
    await ensureDevPki({ stateDir: dir, devices: [], deviceKeyType: "p256" });
    expect(await readFile(p.crlIssuing, "utf8")).toBe(after);
  });

  it("two concurrent runs on one state folder both succeed and lose no record", async () => {
    await createCa(dir);
    await Promise.all([
      issueDevices({ stateDir: dir, ids: ["c1", "c2"], keyType: "p256" }),
      issueDevices({ stateDir: dir, ids: ["c3", "c4"], keyType: "p256" }),
    ]);
    expect((await listIdentities(dir, { kind: "device" })).map((r) => r.name).sort()).toEqual([
      "c1",
      "c2",
      "c3",
      "c4",
    ]);
  });
});

describe("refusals leave the state untouched", () => {
  it("without a CA", async () => {
    await expectPkiError(
      issueDevices({ stateDir: dir, ids: ["d1"], keyType: "p256" }),
      "no_ca",
      /no CA in .* \(run: npm run pki -- init\)/,
    );
    expect(await snapshot(dir)).toEqual({});
  });

  it("never replaces a CA, broker, service or device without force", async () => {
    await ensureDevPki({ stateDir: dir, devices: ["d1"], deviceKeyType: "p256" });
    const before = await snapshot(dir);
    await expectPkiError(createCa(dir), "exists", /a CA already exists/);
    await expectPkiError(issueBroker({ stateDir: dir }), "exists", /broker certificate already exists/);
    await expectPkiError(
      issueService({ stateDir: dir, name: "ingest" }),
      "exists",
      /service "ingest" already has a certificate/,
    );
    await expectPkiError(
      issueDevice({ stateDir: dir, id: "d1", keyType: "p256" }),
      "exists",
      /device "d1" already has a certificate/,
    );
    expect(await snapshot(dir)).toEqual(before);
    // With force the key really is new.
    await issueBroker({ stateDir: dir, force: true });
    expect((await snapshot(dir))["/pki/broker/key.pem"]).not.toBe(before["/pki/broker/key.pem"]);
  });

  it("for invalid and duplicate ids, and ids that clash with a service", async () => {
    await ensureDevPki({ stateDir: dir, devices: [], deviceKeyType: "p256" });
    const before = await snapshot(dir);
    await expectPkiError(
      issueDevices({ stateDir: dir, ids: ["ok-1", "bad/id"], keyType: "p256" }),
      "invalid_id",
      /device id "bad\/id" contains '\/'/,
    );
    await expectPkiError(
      issueDevices({ stateDir: dir, ids: ["ok-1", "x+y"], keyType: "p256" }),
      "invalid_id",
      /contains '\+'/,
    );
    await expectPkiError(
      issueDevices({ stateDir: dir, ids: ["-flag"], keyType: "p256" }),
      "invalid_id",
      /must not start with/,
    );
    await expectPkiError(
      issueDevices({ stateDir: dir, ids: ["a".repeat(33)], keyType: "p256" }),
      "invalid_id",
      /longer than 32/,
    );
    await expectPkiError(
      issueDevices({ stateDir: dir, ids: ["tab\tid"], keyType: "p256" }),
      "invalid_id",
      /control character/,
    );
    await expectPkiError(
      issueDevices({ stateDir: dir, ids: ["dup", "other", "dup"], keyType: "p256" }),
      "duplicate_id",
      /duplicate device id "dup"/,
    );
    await expectPkiError(
      issueDevices({ stateDir: dir, ids: ["Dup", "dup"], keyType: "p256" }),
      "duplicate_id",
      /ignoring case/,
    );
    await expectPkiError(
      issueDevices({ stateDir: dir, ids: ["ingest"], keyType: "p256" }),
      "name_clash",
      /reserved for a service identity/,
    );
    // Reserved whether or not the service has a certificate yet, and ignoring case: the ACL
    // would give a board called "monitor" read access to the whole fleet.
    await expectPkiError(
      issueDevices({ stateDir: dir, ids: ["Monitor"], keyType: "p256" }),
      "name_clash",
      /reserved for a service identity/,
    );
    await expectPkiError(revokeDevice(dir, "nobody"), "not_found", /unknown device "nobody"/);
    await expectPkiError(revokeDevice(dir, "../x"), "invalid_id", /must not start with '\.'/);
    await expectPkiError(revokeDevice(dir, "a/../../x"), "invalid_id", /contains '\/'/);
    expect(await snapshot(dir)).toEqual(before);
  });
});

describe("root key offline", () => {
  it("issuing and revoking work without the root key; the root CRL is kept as it was", async () => {
    const p = await ensureDevPki({ stateDir: dir, devices: ["on-1"], deviceKeyType: "p256" });
    const offline = join(dir, "usb-stick-root.key.pem");
    await rename(p.rootKey, offline);
    const rootCrl = await readFile(p.crlRoot, "utf8");
    await issueDevices({ stateDir: dir, ids: ["on-2"], keyType: "p256" });
    await revokeDevice(dir, "on-1");
    expect(await readFile(p.crlRoot, "utf8")).toBe(rootCrl);
    const revoked = await tool(
      "openssl",
      ["verify", "-crl_check_all", "-CAfile", p.caBundle, "-CRLfile", p.crl, p.device("on-1").cert],
      { allowFail: true },
    );
    expect(revoked.stdout + revoked.stderr).toMatch(/certificate revoked/);
    const fine = await tool("openssl", [
      "verify",
      "-crl_check_all",
      "-CAfile",
      p.caBundle,
      "-CRLfile",
      p.crl,
      p.device("on-2").cert,
    ]);
    expect(fine.stdout).toMatch(/: OK/);
  });
});

describe("export", () => {
  it("gives the firmware's DER identity and the CA certificates", async () => {
    const p = await ensureDevPki({ stateDir: dir, devices: ["exp-1"] });
    const b = await exportDeviceBundle(dir, "exp-1");
    const cert = new X509Certificate(Buffer.from(b.certDer));
    expect(cert.subject).toContain("CN=exp-1");
    expect(Buffer.from(b.certDer).equals(await readFile(p.device("exp-1").certDer ?? ""))).toBe(true);
    expect(Buffer.from(b.keyDer).equals(await readFile(p.device("exp-1").keyDer ?? ""))).toBe(true);
    expect(
      cert.checkPrivateKey(
        (await import("node:crypto")).createPrivateKey({
          key: Buffer.from(b.keyDer),
          format: "der",
          type: "pkcs8",
        }),
      ),
    ).toBe(true);
    expect(cert.verify(new X509Certificate(Buffer.from(b.issuingDer)).publicKey)).toBe(true);
    expect(new X509Certificate(Buffer.from(b.rootDer)).ca).toBe(true);
    expect(b.keyType).toBe("rsa-2048");
  });

  it("refuses revoked, expired and not-yet-valid identities", async () => {
    await ensureDevPki({ stateDir: dir, devices: ["rev"], deviceKeyType: "p256" });
    const day = 86_400_000;
    await issueDevices({
      stateDir: dir,
      ids: ["old"],
      keyType: "p256",
      notBefore: new Date(Date.now() - 9 * day),
      notAfter: new Date(Date.now() - day),
    });
    await issueDevices({
      stateDir: dir,
      ids: ["new"],
      keyType: "p256",
      notBefore: new Date(Date.now() + day),
      notAfter: new Date(Date.now() + 9 * day),
    });
    await revokeDevice(dir, "rev", "cessationOfOperation");
    await expectPkiError(
      exportDeviceBundle(dir, "rev"),
      "revoked",
      /device "rev" certificate [0-9a-f]+ was revoked .*cessationOfOperation/,
    );
    await expectPkiError(
      exportDeviceBundle(dir, "old"),
      "expired",
      /device "old" certificate [0-9a-f]+ expired on/,
    );
    await expectPkiError(exportDeviceBundle(dir, "new"), "not_yet_valid", /not valid before/);
    // A rotated identity can be exported again.
    await rotateDevice({ stateDir: dir, id: "rev" });
    expect((await exportDeviceBundle(dir, "rev")).deviceId).toBe("rev");
  });
});
