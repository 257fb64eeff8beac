// The real openssl binary and Node's X509Certificate must agree with what the PKI wrote: chains verify,
// the CRLs list exactly the revoked serials, extensions match each identity's role.
import { X509Certificate } from "node:crypto";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensureDevPki, issueDevices, revokeDevice, rotateDevice, type PkiPaths } from "../src/index";
import { removeDir, tempStateDir, tool } from "./helpers";

let dir: string;
let paths: PkiPaths;
const cert = async (p: string): Promise<X509Certificate> => new X509Certificate(await readFile(p));

beforeAll(async () => {
  dir = await tempStateDir();
  paths = await ensureDevPki({
    stateDir: dir,
    devices: ["ely-01", "ely-02", "ely_03"],
    deviceKeyType: "p256",
    brokerHosts: ["broker.example", "10.0.0.5", "localhost"],
  });
  await issueDevices({ stateDir: dir, ids: ["ely-rsa"], keyType: "rsa-2048" });
  await revokeDevice(dir, "ely-02", "keyCompromise");
});
afterAll(() => removeDir(dir));

async function verify(extra: string[], target: string): Promise<{ ok: boolean; out: string }> {
  const r = await tool("openssl", ["verify", ...extra, "-CAfile", paths.caBundle, target], {
    allowFail: true,
  });
  return { ok: r.code === 0 && /: OK\s*$/.test(r.stdout), out: r.stdout + r.stderr };
}

describe("openssl", () => {
  it("verifies every identity against the CA bundle, with -crl_check and -crl_check_all", async () => {
    for (const p of [
      paths.device("ely-01").cert,
      paths.device("ely_03").cert,
      paths.device("ely-rsa").cert,
      paths.service("ingest").cert,
    ]) {
      for (const flags of [
        [],
        ["-crl_check", "-CRLfile", paths.crl],
        ["-crl_check_all", "-CRLfile", paths.crl],
      ]) {
        const r = await verify(flags, p);
        expect(r.ok, `${p} ${flags.join(" ")}: ${r.out}`).toBe(true);
      }
    }
  });

  it("verifies the broker certificate for its purpose and host names", async () => {
    const leaf = join(dir, "broker-leaf.pem");
    // broker/cert.pem is leaf + issuing CA; openssl verify checks the first certificate of a file.
    await writeFile(
      leaf,
      (await readFile(paths.broker.cert, "utf8")).split(/(?<=-----END CERTIFICATE-----\n)/)[0] ?? "",
    );
    for (const host of ["broker.example", "localhost"]) {
      expect(
        (
          await verify(
            ["-purpose", "sslserver", "-verify_hostname", host, "-crl_check_all", "-CRLfile", paths.crl],
            leaf,
          )
        ).ok,
      ).toBe(true);
    }
    expect((await verify(["-verify_ip", "10.0.0.5"], leaf)).ok).toBe(true);
    expect((await verify(["-verify_hostname", "other.example"], leaf)).ok).toBe(false);
    expect((await verify(["-purpose", "sslclient"], leaf)).ok).toBe(false);
  });

  it("refuses a device certificate as a TLS server and accepts it as a client", async () => {
    const p = paths.device("ely-01").cert;
    expect((await verify(["-purpose", "sslclient"], p)).ok).toBe(true);
    expect((await verify(["-purpose", "sslserver"], p)).ok).toBe(false);
  });

  it("reports the revoked device as revoked, with either CRL check", async () => {
    for (const flag of ["-crl_check", "-crl_check_all"]) {
      const r = await verify([flag, "-CRLfile", paths.crl], paths.device("ely-02").cert);
      expect(r.ok).toBe(false);
      expect(r.out).toMatch(/certificate revoked/);
    }
    // Without the CRL the same certificate is otherwise fine: the refusal is the CRL's doing.
    expect((await verify([], paths.device("ely-02").cert)).ok).toBe(true);
  });

  it("lists the revoked serial in the issuing CA's CRL and nothing in the root's", async () => {
    const serial = (await cert(paths.device("ely-02").cert)).serialNumber.toUpperCase();
    const issuing = await tool("openssl", ["crl", "-in", paths.crlIssuing, "-noout", "-text"]);
    expect(issuing.stdout).toContain(`Serial Number: ${serial}`);
    expect(issuing.stdout).toContain("Key Compromise");
    expect(issuing.stdout.match(/Serial Number:/g)).toHaveLength(1);
    const root = await tool("openssl", ["crl", "-in", paths.crlRoot, "-noout", "-text"]);
    expect(root.stdout).toContain("No Revoked Certificates");
    // Each CRL is signed by its CA.
    await tool("openssl", ["crl", "-in", paths.crlIssuing, "-noout", "-CAfile", paths.caBundle]);
    await tool("openssl", ["crl", "-in", paths.crlRoot, "-noout", "-CAfile", paths.root]);
    // The combined file holds both, issuing first.
    expect(await readFile(paths.crl, "utf8")).toBe(
      (await readFile(paths.crlIssuing, "utf8")) + (await readFile(paths.crlRoot, "utf8")),
    );
  });

  it("adds a rotated-and-revoked certificate to the CRL while the new one verifies", async () => {
    const old = (await cert(paths.device("ely-01").cert)).serialNumber.toUpperCase();
    await rotateDevice({ stateDir: dir, id: "ely-01", revokeOld: true });
    const fresh = await cert(paths.device("ely-01").cert);
    expect(fresh.serialNumber.toUpperCase()).not.toBe(old);
    expect((await verify(["-crl_check_all", "-CRLfile", paths.crl], paths.device("ely-01").cert)).ok).toBe(
      true,
    );
    const crl = await tool("openssl", ["crl", "-in", paths.crlIssuing, "-noout", "-text"]);
    expect(crl.stdout).toContain(`Serial Number: ${old}`);
    expect(crl.stdout).toContain("Superseded");
    const archived = join(paths.devicesDir, "ely-01", "archive", old.toLowerCase(), "cert.pem");
    expect((await cert(archived)).serialNumber.toUpperCase()).toBe(old);
  });

  it("reads the device DER files: the certificate, and the key as PKCS#8", async () => {
    for (const id of ["ely-rsa", "ely_03"]) {
      const p = paths.device(id);
      const der = await tool("openssl", [
        "x509",
        "-inform",
        "DER",
        "-in",
        p.certDer ?? "",
        "-noout",
        "-subject",
      ]);
      expect(der.stdout).toContain(`CN = ${id}`);
      const key = await tool("openssl", [
        "pkey",
        "-inform",
        "DER",
        "-in",
        p.keyDer ?? "",
        "-noout",
        "-check",
      ]);
      expect(key.stdout + key.stderr).toMatch(/valid/i);
      // PKCS#8 (what Moddable's clientKey takes) rather than the traditional RSAPrivateKey form.
      const asn1 = await tool("openssl", ["asn1parse", "-inform", "DER", "-in", p.keyDer ?? ""]);
      expect(asn1.stdout).toMatch(id === "ely-rsa" ? /rsaEncryption/ : /id-ecPublicKey/);
      expect(Buffer.compare(await readFile(p.certDer ?? ""), (await cert(p.cert)).raw)).toBe(0);
    }
  });
});

describe("Node's X509Certificate agrees", () => {
  it("chains device → issuing → root by signature and name", async () => {
    const root = await cert(paths.root);
    const issuing = await cert(paths.issuing);
    const device = await cert(paths.device("ely_03").cert);
    expect(root.checkIssued(root)).toBe(true);
    expect(root.verify(root.publicKey)).toBe(true);
    expect(issuing.checkIssued(root)).toBe(true);
    expect(issuing.verify(root.publicKey)).toBe(true);
    expect(device.checkIssued(issuing)).toBe(true);
    expect(device.verify(issuing.publicKey)).toBe(true);
    expect(device.verify(root.publicKey)).toBe(false);
    expect(root.ca && issuing.ca).toBe(true);
    expect(device.ca).toBe(false);
  });

  it("sees the role of each identity in its subject, EKU and key", async () => {
    const device = await cert(paths.device("ely-rsa").cert);
    expect(device.subject.split("\n")).toContain("CN=ely-rsa");
    expect(device.keyUsage).toEqual(["1.3.6.1.5.5.7.3.2"]);
    expect(device.publicKey.asymmetricKeyDetails).toMatchObject({
      modulusLength: 2048,
      publicExponent: 65537n,
    });
    const p256 = await cert(paths.device("ely-01").cert);
    expect(p256.publicKey.asymmetricKeyDetails).toMatchObject({ namedCurve: "prime256v1" });
    const broker = await cert(paths.broker.cert);
    expect(broker.keyUsage).toEqual(["1.3.6.1.5.5.7.3.1"]);
    expect(broker.subjectAltName).toBe("DNS:broker.example, IP Address:10.0.0.5, DNS:localhost");
    expect(broker.checkHost("broker.example")).toBe("broker.example");
    expect(broker.checkIP("10.0.0.5")).toBe("10.0.0.5");
    expect(broker.publicKey.asymmetricKeyType).toBe("rsa");
    const service = await cert(paths.service("ingest").cert);
    expect(service.keyUsage).toEqual(["1.3.6.1.5.5.7.3.2"]);
    expect(service.subject.split("\n")).toContain("OU=services");
  });

  it("gives serials of at least 64 random bits, all different", async () => {
    const serials = await Promise.all(
      ["ely-01", "ely-02", "ely_03", "ely-rsa"].map(
        async (id) => (await cert(paths.device(id).cert)).serialNumber,
      ),
    );
    for (const s of serials) expect(s.replace(/^0+/, "").length).toBeGreaterThanOrEqual(16);
    expect(new Set(serials).size).toBe(serials.length);
  });
});
