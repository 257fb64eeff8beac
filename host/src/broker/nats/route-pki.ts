/**
 * The cluster's own trust for routes (node ↔ node) and its NATS protocol port: a small CA that signs
 * nothing but the nodes' certificates, kept apart from the fleet CA so no board or service certificate
 * can ever join the cluster as a route. A route certificate is both a TLS server and a TLS client (a node
 * dials its peers with it), which the fleet PKI's broker profile (serverAuth only) is not.
 *
 * Files (private keys 0600) live in `<dir>/`: ca.pem, <node>.pem, <node>.key.pem. Kept across runs;
 * reissued when missing, unreadable or within REISSUE_BEFORE_DAYS of expiry.
 */
import { readFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { webcrypto } from "node:crypto";
import { x509 } from "../../../../pki/src/x509";
import { writeFileAtomic } from "../../../../shared/state-dir";
import type { TlsFiles } from "./node-config";

const DAY = 86_400_000;
const VALIDITY_DAYS = 365;
const REISSUE_BEFORE_DAYS = 30;
const EC = { name: "ECDSA", namedCurve: "P-256" } as const;
const SIGN = { name: "ECDSA", hash: "SHA-256" } as const;

export interface RoutePki {
  ca: string;
  node(name: string): TlsFiles;
  /** A NATS-protocol client of the cluster (clientAuth only), subject `CN=<name>`: see clientDn(). */
  client(name: string): TlsFiles;
}

/** The subject DN a route-CA client certificate maps to on the NATS port (`verify_and_map`). */
export function clientDn(name: string): string {
  return `CN=${name},OU=cluster clients`;
}

/**
 * The files of a route-CA identity named by its prefix, as `--jetstream-identity` and `--identity` take it:
 * PREFIX.pem, PREFIX.key.pem and the CA beside them (`<dir>/client-ingest-worker-1` → its cert, key, `<dir>/ca.pem`).
 */
export function identityFiles(prefix: string): TlsFiles {
  return { cert: `${prefix}.pem`, key: `${prefix}.key.pem`, ca: join(dirname(prefix), "ca.pem") };
}

function serial(): string {
  const b = webcrypto.getRandomValues(new Uint8Array(16));
  b[0] = 0x10 + ((b[0] ?? 0) % 0x70);
  return Buffer.from(b).toString("hex");
}

async function stillValid(path: string, now: number): Promise<boolean> {
  try {
    const cert = new x509.X509Certificate(await readFile(path, "utf8"));
    return cert.notAfter.getTime() - now > REISSUE_BEFORE_DAYS * DAY;
  } catch {
    return false;
  }
}

async function keyPem(key: webcrypto.CryptoKey): Promise<string> {
  return x509.PemConverter.encode(await webcrypto.subtle.exportKey("pkcs8", key), "PRIVATE KEY");
}

/**
 * Ensures a route CA, one certificate per node (SAN: the hosts the routes dial) and one client certificate
 * per NATS-protocol client (`clients`: the launcher's own `cluster-admin`, ingest workers).
 */
export async function ensureRoutePki(
  dir: string,
  nodes: readonly string[],
  hosts: readonly string[] = ["127.0.0.1", "localhost"],
  clients: readonly string[] = [],
): Promise<RoutePki> {
  const now = Date.now();
  const caFile = join(dir, "ca.pem");
  const paths = (name: string): TlsFiles => ({
    cert: join(dir, `${name}.pem`),
    key: join(dir, `${name}.key.pem`),
    ca: caFile,
  });
  const clientPaths = (name: string): TlsFiles => paths(`client-${name}`);
  const valid = await Promise.all(
    [caFile, ...nodes.map((n) => paths(n).cert), ...clients.map((c) => clientPaths(c).cert)].map((p) =>
      stillValid(p, now),
    ),
  );
  if (valid.every(Boolean)) return { ca: caFile, node: paths, client: clientPaths };

  // Anything missing or old: a fresh CA and node set, so every node trusts exactly the same CA.
  const caKeys = (await webcrypto.subtle.generateKey(EC, false, [
    "sign",
    "verify",
  ])) as webcrypto.CryptoKeyPair;
  const ca = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial(),
    name: "CN=electrolyser NATS cluster route CA",
    notBefore: new Date(now - 5 * 60_000),
    notAfter: new Date(now + VALIDITY_DAYS * DAY),
    keys: caKeys,
    signingAlgorithm: SIGN,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign, true),
    ],
  });
  for (const name of nodes) {
    const keys = (await webcrypto.subtle.generateKey(EC, true, [
      "sign",
      "verify",
    ])) as webcrypto.CryptoKeyPair;
    const cert = await x509.X509CertificateGenerator.create({
      serialNumber: serial(),
      subject: `CN=${name}`,
      issuer: ca.subject,
      notBefore: new Date(now - 5 * 60_000),
      notAfter: new Date(now + VALIDITY_DAYS * DAY - DAY),
      publicKey: keys.publicKey,
      signingKey: caKeys.privateKey,
      signingAlgorithm: SIGN,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
        new x509.ExtendedKeyUsageExtension([
          x509.ExtendedKeyUsage.serverAuth,
          x509.ExtendedKeyUsage.clientAuth,
        ]),
        new x509.SubjectAlternativeNameExtension(
          hosts.map((h) => ({ type: /^[\d.]+$|:/.test(h) ? ("ip" as const) : ("dns" as const), value: h })),
        ),
      ],
    });
    const p = paths(name);
    await writeFileAtomic(p.key, await keyPem(keys.privateKey), 0o600);
    await writeFileAtomic(p.cert, cert.toString("pem"), 0o644);
  }
  for (const name of clients) {
    const keys = (await webcrypto.subtle.generateKey(EC, true, [
      "sign",
      "verify",
    ])) as webcrypto.CryptoKeyPair;
    const cert = await x509.X509CertificateGenerator.create({
      serialNumber: serial(),
      subject: clientDn(name),
      issuer: ca.subject,
      notBefore: new Date(now - 5 * 60_000),
      notAfter: new Date(now + VALIDITY_DAYS * DAY - DAY),
      publicKey: keys.publicKey,
      signingKey: caKeys.privateKey,
      signingAlgorithm: SIGN,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
        new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.clientAuth]),
      ],
    });
    const p = clientPaths(name);
    await writeFileAtomic(p.key, await keyPem(keys.privateKey), 0o600);
    await writeFileAtomic(p.cert, cert.toString("pem"), 0o644);
  }
  // The CA key is not kept: a new node or client set means a new CA.
  await writeFileAtomic(caFile, ca.toString("pem"), 0o644);
  return { ca: caFile, node: paths, client: clientPaths };
}
