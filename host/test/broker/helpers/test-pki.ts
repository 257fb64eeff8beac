/**
 * A throwaway CA for the broker tests: it issues what the fleet PKI refuses to issue
 * (expired certificates, wildcard CNs, certificates from a foreign CA) so the broker's
 * own checks are what the tests exercise.
 */
// @peculiar/x509 (through tsyringe) needs the Reflect metadata API loaded first.
import "reflect-metadata";
import { webcrypto } from "node:crypto";
import { chmod, writeFile } from "node:fs/promises";
import { join } from "node:path";
import * as x509 from "@peculiar/x509";
import type { BrokerPki } from "../../../src/broker/mosquitto";

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

type CryptoKey = webcrypto.CryptoKey;
type CryptoKeyPair = webcrypto.CryptoKeyPair;

export type KeyKind = "rsa" | "p256";

const RSA: webcrypto.RsaHashedKeyGenParams = {
  name: "RSASSA-PKCS1-v1_5",
  modulusLength: 2048,
  publicExponent: new Uint8Array([1, 0, 1]),
  hash: "SHA-256",
};
const P256: webcrypto.EcKeyGenParams = { name: "ECDSA", namedCurve: "P-256" };
const SIGN_RSA = { name: "RSASSA-PKCS1-v1_5" };
const SIGN_EC = { name: "ECDSA", hash: "SHA-256" };

const DAY = 86_400_000;

async function generate(kind: KeyKind): Promise<CryptoKeyPair> {
  return (await webcrypto.subtle.generateKey(kind === "rsa" ? RSA : P256, true, [
    "sign",
    "verify",
  ])) as CryptoKeyPair;
}

async function pkcs8Pem(key: CryptoKey): Promise<string> {
  const der = await webcrypto.subtle.exportKey("pkcs8", key);
  return x509.PemConverter.encode(der, "PRIVATE KEY");
}

function randomSerial(): string {
  const b = webcrypto.getRandomValues(new Uint8Array(12));
  b[0] = ((b[0] ?? 0) & 0x7f) | 0x01;
  return Buffer.from(b).toString("hex");
}

export interface TestCa {
  cert: x509.X509Certificate;
  keys: CryptoKeyPair;
  kind: KeyKind;
  certPem: string;
}

export interface IssuedCert {
  cn: string;
  serial: string;
  certPem: string;
  keyPem: string;
  kind: KeyKind;
}

export async function createCa(cn: string, kind: KeyKind): Promise<TestCa> {
  const keys = await generate(kind);
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomSerial(),
    name: [{ CN: [cn] }],
    notBefore: new Date(Date.now() - DAY),
    notAfter: new Date(Date.now() + 365 * DAY),
    keys,
    signingAlgorithm: kind === "rsa" ? SIGN_RSA : SIGN_EC,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { cert, keys, kind, certPem: cert.toString("pem") };
}

export interface IssueOptions {
  cn: string;
  kind: KeyKind;
  usage: "client" | "server";
  notBefore?: Date;
  notAfter?: Date;
  /** Reuse a key pair (generating RSA keys is the slow part of the suite). */
  keys?: CryptoKeyPair;
}

/**
 * The JSON name form avoids the string form reading "+" as a multi-valued RDN separator;
 * a value starting with "#" is read as hex DER (RFC 4514), so such a CN is given that way.
 */
function cnValue(cn: string): string {
  if (!cn.startsWith("#")) return cn;
  const bytes = Buffer.from(cn, "utf8");
  if (bytes.length > 127) throw new Error("test CN too long");
  return `#0c${bytes.length.toString(16).padStart(2, "0")}${bytes.toString("hex")}`;
}

export async function issue(ca: TestCa, o: IssueOptions): Promise<IssuedCert> {
  const keys = o.keys ?? (await generate(o.kind));
  const serial = randomSerial();
  const extensions: x509.Extension[] = [
    new x509.BasicConstraintsExtension(false, undefined, true),
    new x509.KeyUsagesExtension(
      o.kind === "rsa"
        ? x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment
        : x509.KeyUsageFlags.digitalSignature,
      true,
    ),
    new x509.ExtendedKeyUsageExtension([
      o.usage === "client" ? x509.ExtendedKeyUsage.clientAuth : x509.ExtendedKeyUsage.serverAuth,
    ]),
    await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    await x509.AuthorityKeyIdentifierExtension.create(ca.keys.publicKey),
  ];
  if (o.usage === "server") {
    extensions.push(
      new x509.SubjectAlternativeNameExtension([
        { type: "dns", value: "localhost" },
        { type: "ip", value: "127.0.0.1" },
      ]),
    );
  }
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serial,
    subject: [{ CN: [cnValue(o.cn)] }],
    issuer: ca.cert.subjectName,
    notBefore: o.notBefore ?? new Date(Date.now() - DAY),
    notAfter: o.notAfter ?? new Date(Date.now() + 30 * DAY),
    publicKey: keys.publicKey,
    signingKey: ca.keys.privateKey,
    signingAlgorithm: ca.kind === "rsa" ? SIGN_RSA : SIGN_EC,
    extensions,
  });
  return {
    cn: o.cn,
    serial: cert.serialNumber,
    certPem: cert.toString("pem"),
    keyPem: await pkcs8Pem(keys.privateKey),
    kind: o.kind,
  };
}

/** The CN values as stored in the certificate (no string escaping in the way). */
export function subjectCn(certPem: string): string[] {
  return new x509.X509Certificate(certPem).subjectName.getField("CN");
}

export async function crlPem(ca: TestCa, revokedSerials: readonly string[]): Promise<string> {
  const crl = await x509.X509CrlGenerator.create({
    issuer: ca.cert.subjectName,
    thisUpdate: new Date(),
    nextUpdate: new Date(Date.now() + 30 * DAY),
    entries: revokedSerials.map((serialNumber) => ({
      serialNumber,
      revocationDate: new Date(Date.now() - 1000),
      reason: x509.X509CrlReason.keyCompromise,
    })),
    signingKey: ca.keys.privateKey,
    signingAlgorithm: ca.kind === "rsa" ? SIGN_RSA : SIGN_EC,
  });
  // OpenSSL (and so mosquitto) only reads the "X509 CRL" label; the library writes "CRL".
  return x509.PemConverter.encode(crl.rawData, "X509 CRL");
}

export async function writePem(dir: string, name: string, pem: string, mode = 0o644): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, pem, { mode });
  await chmod(path, mode);
  return path;
}

export interface BrokerTestPki {
  ca: TestCa;
  paths: BrokerPki;
  brokerCert: IssuedCert;
  /** Rewrites the CRL file, as `pki revoke` does. */
  revoke(serials: readonly string[]): Promise<void>;
}

/** Fleet CA (RSA, like the firmware-facing production chain) and an RSA broker certificate. */
export async function createBrokerTestPki(dir: string): Promise<BrokerTestPki> {
  const ca = await createCa("Test Fleet CA", "rsa");
  const brokerCert = await issue(ca, { cn: "broker", kind: "rsa", usage: "server" });
  const paths: BrokerPki = {
    caBundle: await writePem(dir, "ca.pem", ca.certPem),
    crl: await writePem(dir, "crl.pem", await crlPem(ca, [])),
    broker: {
      cert: await writePem(dir, "broker.crt.pem", brokerCert.certPem),
      key: await writePem(dir, "broker.key.pem", brokerCert.keyPem, 0o600),
    },
  };
  return {
    ca,
    paths,
    brokerCert,
    async revoke(serials) {
      await writePem(dir, "crl.pem.tmp", await crlPem(ca, serials));
      const { rename } = await import("node:fs/promises");
      await rename(join(dir, "crl.pem.tmp"), paths.crl);
    },
  };
}
