// Field rotation with a board-made key: the board sends a CSR, the CA checks it and certifies its key, and
// the host ends up with the certificate only. Refused requests name what is wrong with them.
import { createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes } from "node:crypto";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { x509 } from "../src/x509";
import {
  certifyDeviceKey,
  checkDeviceCsr,
  createCa,
  exportDeviceBundle,
  issueDevices,
  revokeDevice,
  rotateDevice,
  splitCrls,
  type PkiPaths,
} from "../src/index";
import { loadDatabase } from "../src/database";
import { exists } from "../src/store";
import { PkiError } from "../src/errors";
import { certificationRequest, nodeKeyMaker } from "../../host/src/trust/node-key-maker";
import { removeDir, tempStateDir, tool } from "./helpers";

const ID = "dev-0001";
const subjectOf = (id: string): string => `O=Electrolyser Secure Telemetry,OU=devices,CN=${id}`;

let dir: string;
let paths: PkiPaths;

beforeAll(async () => {
  dir = await tempStateDir();
  paths = await createCa(dir);
  await issueDevices({ stateDir: dir, ids: [ID, "dev-0002"], keyType: "p256" });
});

afterAll(async () => {
  await removeDir(dir);
});

async function refusal(csr: Uint8Array, id = ID): Promise<PkiError> {
  const err = await checkDeviceCsr(csr, id).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(PkiError);
  expect((err as PkiError).code).toBe("bad_csr");
  expect((err as PkiError).message).not.toContain("\n");
  return err as PkiError;
}

async function crlSerials(): Promise<Set<string>> {
  return new Set(
    splitCrls(await readFile(paths.crl, "utf8")).flatMap((b) =>
      new x509.X509Crl(b).entries.map((e) => e.serialNumber.toLowerCase().replace(/^0+/, "")),
    ),
  );
}

const rsaCsr = (id: string, modulusLength: number, publicExponent = 0x10001): Uint8Array =>
  certificationRequest(
    subjectOf(id),
    generateKeyPairSync("rsa", { modulusLength, publicExponent }).privateKey,
  );

describe("certifying a board-made key", () => {
  it("checks the CSR, certifies its key and keeps no device key on the host", async () => {
    const p = paths.device(ID);
    const oldSerial = new x509.X509Certificate(await readFile(p.cert, "utf8")).serialNumber.toLowerCase();
    const oldKeyPem = await readFile(p.key);
    const oldKeyDer = await readFile(p.keyDer as string);

    const made = nodeKeyMaker.generate({ subject: subjectOf(ID), bits: 2048 });
    const checked = await checkDeviceCsr(new Uint8Array(made.csrDer), ID);
    expect(checked.keyType).toBe("rsa-2048");
    const boardKey = createPrivateKey({ key: Buffer.from(made.keyDer), format: "der", type: "pkcs8" });
    const boardSpki = createPublicKey(boardKey).export({ type: "spki", format: "der" });
    expect(Buffer.from(checked.spki)).toEqual(boardSpki);

    const issued = await certifyDeviceKey({ stateDir: dir, id: ID, ...checked });
    const cert = new x509.X509Certificate(await readFile(p.cert, "utf8"));
    expect(cert.serialNumber.toLowerCase()).toBe(issued.serial.toLowerCase());
    expect(Buffer.from(cert.publicKey.rawData)).toEqual(boardSpki);
    expect(Buffer.from(await readFile(p.certDer as string))).toEqual(Buffer.from(cert.rawData));

    const verified = await tool("openssl", ["verify", "-CAfile", paths.caBundle, p.cert]);
    expect(verified.stdout).toContain(": OK");
    const subject = await tool("openssl", ["x509", "-in", p.cert, "-noout", "-subject"]);
    expect(subject.stdout.trim()).toBe(
      "subject=O = Electrolyser Secure Telemetry, OU = devices, CN = dev-0001",
    );

    // The host holds the certificate only; the previous identity, key included, is in the archive.
    expect(await exists(p.key)).toBe(false);
    expect(await exists(p.keyDer as string)).toBe(false);
    const archive = join(paths.devicesDir, ID, "archive", oldSerial);
    expect(await readFile(join(archive, "key.pem"))).toEqual(oldKeyPem);
    expect(await readFile(join(archive, "key.der"))).toEqual(oldKeyDer);
    expect(
      new x509.X509Certificate(await readFile(join(archive, "cert.pem"), "utf8")).serialNumber.toLowerCase(),
    ).toBe(oldSerial);

    // The old certificate is superseded, not revoked: the board keeps connecting until it switches.
    const db = await loadDatabase(paths.database);
    const oldRec = db.issued.find((r) => r.serial === oldSerial);
    expect(oldRec?.revoked).toBeUndefined();
    expect(oldRec?.supersededBy).toBe(issued.serial.toLowerCase());
    expect(db.issued.find((r) => r.serial === issued.serial.toLowerCase())).toMatchObject({
      kind: "device",
      name: ID,
      keyType: "rsa-2048",
    });
    expect((await crlSerials()).has(oldSerial)).toBe(false);

    await expect(exportDeviceBundle(dir, ID)).rejects.toThrow(/key is on the board \(rotated with a CSR/);

    const revoked = await revokeDevice(dir, ID, "keyCompromise");
    expect(revoked.sort()).toEqual([oldSerial, issued.serial.toLowerCase()].sort());
    const onCrl = await crlSerials();
    for (const s of revoked) expect(onCrl.has(s), `serial ${s} on the CRL`).toBe(true);
  });

  it("lets a host-made rotation follow: the archive of the board-made identity has no key", async () => {
    const p = paths.device(ID);
    const boardSerial = new x509.X509Certificate(await readFile(p.cert, "utf8")).serialNumber.toLowerCase();
    const rotated = await rotateDevice({ stateDir: dir, id: ID });
    const archive = join(paths.devicesDir, ID, "archive", boardSerial);
    expect(await exists(join(archive, "cert.pem"))).toBe(true);
    expect(await exists(join(archive, "cert.der"))).toBe(true);
    expect(await exists(join(archive, "key.pem"))).toBe(false);
    const bundle = await exportDeviceBundle(dir, ID);
    expect(bundle.serial).toBe(rotated.serial.toLowerCase());
  });

  it("accepts a P-256 key and refuses a key type that does not match the key", async () => {
    const { privateKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
    const checked = await checkDeviceCsr(certificationRequest(subjectOf("dev-0002"), privateKey), "dev-0002");
    expect(checked.keyType).toBe("p256");
    const err = await certifyDeviceKey({
      stateDir: dir,
      id: "dev-0002",
      spki: checked.spki,
      keyType: "rsa-2048",
    }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(PkiError);
    expect((err as PkiError).code).toBe("bad_input");
    expect(await exists(paths.device("dev-0002").key)).toBe(true);
  });
});

describe("refused CSRs", () => {
  it("refuses a CSR for another device", async () => {
    const csr = new Uint8Array(nodeKeyMaker.generate({ subject: subjectOf("dev-0002"), bits: 2048 }).csrDer);
    expect((await refusal(csr)).message).toMatch(
      /subject is ".*CN=dev-0002", not the device subject ".*CN=dev-0001"/,
    );
  });

  it("refuses a subject with the right names in another order or with more in it", async () => {
    const { privateKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
    for (const subject of [
      `CN=${ID},OU=devices,O=Electrolyser Secure Telemetry`,
      `${subjectOf(ID)},CN=x`,
      `CN=${ID}`,
    ])
      expect((await refusal(certificationRequest(subject, privateKey))).message).toMatch(
        /not the device subject/,
      );
  });

  it("refuses a CSR whose signature was altered", async () => {
    const csr = new Uint8Array(nodeKeyMaker.generate({ subject: subjectOf(ID), bits: 2048 }).csrDer);
    // The signature BIT STRING ends the request.
    csr[csr.length - 1] = (csr[csr.length - 1] ?? 0) ^ 0x01;
    expect((await refusal(csr)).message).toMatch(/self-signature .* does not verify/);
  });

  it("refuses an RSA-1024 key, an exponent other than 65537 and a curve other than P-256", async () => {
    expect((await refusal(rsaCsr(ID, 1024))).message).toMatch(/an RSA-1024 key;/);
    expect((await refusal(rsaCsr(ID, 2048, 3))).message).toMatch(/an RSA-2048 key with exponent 3;/);
    const { privateKey } = generateKeyPairSync("ec", { namedCurve: "P-384" });
    expect((await refusal(certificationRequest(subjectOf(ID), privateKey))).message).toMatch(
      /an EC P-384 key;/,
    );
  });

  it("refuses a signature that is not SHA-256 based", async () => {
    const { privateKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
    expect((await refusal(certificationRequest(subjectOf(ID), privateKey, "sha1"))).message).toMatch(
      /signed with sha1WithRSAEncryption; only SHA-256 signatures/,
    );
  });

  it("refuses bytes that are not one DER PKCS#10 request", async () => {
    const csr = new Uint8Array(nodeKeyMaker.generate({ subject: subjectOf(ID), bits: 2048 }).csrDer);
    for (const bytes of [
      randomBytes(300),
      new TextEncoder().encode("-----BEGIN CERTIFICATE REQUEST-----"),
      new Uint8Array(0),
      csr.subarray(0, csr.length - 10),
      new Uint8Array([...csr, 0]),
      new Uint8Array(await readFile(paths.device("dev-0002").certDer as string)),
    ])
      expect((await refusal(bytes)).message).toMatch(/^not a DER PKCS#10 certificate request/);
  });
});
