import { randomBytes } from "node:crypto";
import { readdir } from "node:fs/promises";
import { join } from "node:path";
import { x509 } from "./x509";
import { PkiError } from "./errors";
import { generateKey, importSigningKey, parsePrivateKey, pem, type KeyMaterial } from "./keys";
import { pkiPaths, type PkiPaths } from "./paths";
import { DEFAULT_VALIDITY_DAYS } from "./profiles";
import { keyIdOf, signCertificate, type Signer } from "./sign";
import {
  ensureDir,
  exists,
  readText,
  withLock,
  writeFiles,
  KEY_MODE,
  PUBLIC_MODE,
  type FileWrite,
} from "./store";
import { databaseFile, databaseText, loadDatabase, type CaDatabase, type IssuedRecord } from "./database";
import { buildCrlPem } from "./crl";
import { revocationsFile } from "./revocations";

/**
 * CA names carry a random instance id: two fleets (or a dev and a test PKI) then never present
 * the same issuer name, which would make OpenSSL pick the wrong CA and report a confusing error.
 */
export function caNames(instance = randomBytes(4).toString("hex")): { root: string; issuing: string } {
  return { root: `EST Root CA ${instance}`, issuing: `EST Issuing CA ${instance} 1` };
}

export interface LoadedCa {
  paths: PkiPaths;
  rootCert: x509.X509Certificate;
  /** Undefined when the root key has been taken offline: then the root CRL is reused until it ages. */
  root?: Signer;
  issuing: Signer;
  /** Issuing CAs replaced by a renewal and not yet expired: they still sign the CRLs of what they issued. */
  previousIssuing: Signer[];
  db: CaDatabase;
}

export interface InitCaOptions {
  force?: boolean;
  rootDays?: number;
  issuingDays?: number;
  now?: Date;
}

/**
 * Root CA (RSA-3072, self-signed) + issuing CA (RSA-2048, pathlen 0). RSA because Moddable's TLS
 * verifies the broker chain and its ECDSA support is the less travelled path; the root key is only
 * needed to sign the issuing CA and the root CRL, so it can be moved offline after `init`.
 */
export async function createCa(stateDir: string, o: InitCaOptions = {}): Promise<PkiPaths> {
  const paths = pkiPaths(stateDir);
  const refuseExisting = async (): Promise<void> => {
    if (o.force) return;
    for (const p of [paths.rootKey, paths.issuingKey, paths.root, paths.issuing]) {
      if (await exists(p))
        throw new PkiError("exists", `a CA already exists (${p}); refusing to replace it without --force`);
    }
  };
  await refuseExisting();
  const now = o.now ?? new Date();
  const names = caNames();
  const [rootKey, issuingKey] = await Promise.all([generateKey("rsa-3072"), generateKey("rsa-2048")]);
  const rootSelf = await importSigningKey(rootKey);
  const rootCert = await signCertificate(
    {
      kind: "root",
      name: names.root,
      keyType: "rsa-3072",
      spki: rootKey.spki,
      days: o.rootDays ?? DEFAULT_VALIDITY_DAYS.root,
      now,
    },
    { selfKey: rootSelf },
  );
  const root: Signer = {
    cert: rootCert,
    key: rootSelf,
    keyType: "rsa-3072",
    keyId: keyIdOf(rootCert),
    material: rootKey,
  };
  const issuingCert = await signCertificate(
    {
      kind: "issuing",
      name: names.issuing,
      keyType: "rsa-2048",
      spki: issuingKey.spki,
      days: o.issuingDays ?? DEFAULT_VALIDITY_DAYS.issuing,
      now,
    },
    root,
  );
  const issuing: Signer = {
    cert: issuingCert,
    key: await importSigningKey(issuingKey),
    keyType: "rsa-2048",
    keyId: keyIdOf(issuingCert),
    material: issuingKey,
  };
  const db: CaDatabase = {
    version: 1,
    crlNumber: 1,
    issued: [
      record(rootCert, "root", names.root, "rsa-3072", now),
      record(issuingCert, "issuing", names.issuing, "rsa-2048", now),
    ],
  };
  const crls = await buildCrlPem({ db, root, issuing, now });

  await ensureDir(paths.publicDir);
  await ensureDir(paths.caPrivateDir, 0o700);
  const how = o.force ? "replace" : "new";
  // Two runs creating a CA at once must not mix one's keys with the other's certificates.
  await withLock(join(paths.caPrivateDir, ".lock"), async () => {
    await refuseExisting();
    await writeFiles([
      { path: paths.rootKey, data: pem("PRIVATE KEY", rootKey.pkcs8), mode: KEY_MODE, how },
      { path: paths.issuingKey, data: pem("PRIVATE KEY", issuingKey.pkcs8), mode: KEY_MODE, how },
      { path: paths.database, data: databaseText(db), mode: KEY_MODE, how: "replace" },
      { path: paths.root, data: rootCert.toString("pem") + "\n", mode: PUBLIC_MODE, how: "replace" },
      { path: paths.issuing, data: issuingCert.toString("pem") + "\n", mode: PUBLIC_MODE, how: "replace" },
      { path: paths.rootDer, data: new Uint8Array(rootCert.rawData), mode: PUBLIC_MODE, how: "replace" },
      {
        path: paths.issuingDer,
        data: new Uint8Array(issuingCert.rawData),
        mode: PUBLIC_MODE,
        how: "replace",
      },
      { path: paths.caBundle, data: caBundlePem(issuingCert, rootCert), mode: PUBLIC_MODE, how: "replace" },
      { path: paths.crlIssuing, data: crls.issuing, mode: PUBLIC_MODE, how: "replace" },
      { path: paths.crlRoot, data: crls.root, mode: PUBLIC_MODE, how: "replace" },
      { path: paths.crl, data: crls.combined, mode: PUBLIC_MODE, how: "replace" },
      revocationsFile(paths.revocations, db),
    ]);
  });
  return paths;
}

/** What clients and the broker trust: the issuing CA(s), current first, then the root. */
export function caBundlePem(
  issuing: x509.X509Certificate,
  root: x509.X509Certificate,
  previous: readonly x509.X509Certificate[] = [],
): string {
  return [issuing, ...previous, root].map((c) => `${c.toString("pem")}\n`).join("");
}

export async function loadCa(stateDir: string): Promise<LoadedCa> {
  const paths = pkiPaths(stateDir);
  if (!(await exists(paths.issuingKey)) || !(await exists(paths.issuing))) {
    throw new PkiError("no_ca", `no CA in ${paths.dir} (run: npm run pki -- init)`);
  }
  // Only the root CRL (and a new issuing CA) needs the root key; day-to-day issuance works without it.
  const root = (await exists(paths.rootKey))
    ? await loadSigner(paths.root, paths.rootKey, "root CA")
    : undefined;
  const issuing = await loadSigner(paths.issuing, paths.issuingKey, "issuing CA");
  const rootCert = root?.cert ?? (await loadCert(paths.root, "root CA"));
  const db = await loadDatabase(paths.database);
  return { paths, rootCert, root, issuing, previousIssuing: await loadPreviousIssuing(paths), db };
}

/** The replaced issuing CAs whose certificates have not expired (an expired one can vouch for nothing). */
async function loadPreviousIssuing(paths: PkiPaths, now = new Date()): Promise<Signer[]> {
  let names: string[];
  try {
    names = await readdir(paths.previousIssuingKeyDir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw err;
  }
  const out: Signer[] = [];
  for (const name of names.sort()) {
    const m = /^([0-9a-f]+)\.key\.pem$/.exec(name);
    if (!m) continue;
    const signer = await loadSigner(
      join(paths.previousIssuingDir, `${m[1]}.pem`),
      join(paths.previousIssuingKeyDir, name),
      `previous issuing CA ${m[1]}`,
    );
    if (signer.cert.notAfter.getTime() > now.getTime()) out.push(signer);
  }
  return out;
}

/** Whether the current issuing CA, or one a renewal replaced and that has not expired, signed `cert`. */
export async function signedByIssuing(ca: LoadedCa, cert: x509.X509Certificate): Promise<boolean> {
  for (const s of [ca.issuing, ...ca.previousIssuing])
    if (await cert.verify({ publicKey: s.cert.publicKey, signatureOnly: true })) return true;
  return false;
}

async function loadCert(path: string, what: string): Promise<x509.X509Certificate> {
  try {
    return new x509.X509Certificate(await readText(path, `${what} certificate`));
  } catch (err) {
    if (err instanceof PkiError) throw err;
    throw new PkiError(
      "ca_unreadable",
      `cannot load the ${what} certificate: ${err instanceof Error ? err.message : String(err)}`,
      { cause: err },
    );
  }
}

async function loadSigner(certPath: string, keyPath: string, what: string): Promise<Signer> {
  let cert: x509.X509Certificate;
  let material: KeyMaterial;
  try {
    cert = new x509.X509Certificate(await readText(certPath, `${what} certificate`));
    material = parsePrivateKey(await readText(keyPath, `${what} key`)).material;
  } catch (err) {
    if (err instanceof PkiError && err.code !== "not_found") throw err;
    const why = err instanceof Error ? err.message : String(err);
    throw new PkiError("ca_unreadable", `cannot load the ${what}: ${why}`, { cause: err });
  }
  const certSpki = Buffer.from(cert.publicKey.rawData);
  if (!certSpki.equals(material.spki))
    throw new PkiError(
      "ca_unreadable",
      `the ${what} key (${keyPath}) does not match its certificate (${certPath})`,
    );
  return {
    cert,
    key: await importSigningKey(material),
    keyType: material.type,
    keyId: keyIdOf(cert),
    material,
  };
}

export function record(
  cert: x509.X509Certificate,
  kind: IssuedRecord["kind"],
  name: string,
  keyType: string,
  now: Date,
): IssuedRecord {
  return {
    serial: cert.serialNumber.toLowerCase(),
    kind,
    name,
    keyType,
    notBefore: cert.notBefore.toISOString(),
    notAfter: cert.notAfter.toISOString(),
    issuedAt: now.toISOString(),
  };
}

/** With the root key offline, the current root CRL is kept as long as a third of its lifetime remains. */
async function offlineRootCrl(ca: LoadedCa, now: Date): Promise<{ reuse: string }> {
  const text = await readText(ca.paths.crlRoot, "root CRL");
  const crl = new x509.X509Crl(text);
  const next = crl.nextUpdate?.getTime() ?? 0;
  if (next - now.getTime() < (next - crl.thisUpdate.getTime()) / 3) {
    throw new PkiError(
      "no_ca",
      `the root CRL expires on ${new Date(next).toISOString()} and the root key is offline; put ${ca.paths.rootKey} back and run: npm run pki -- crl`,
    );
  }
  if (ca.db.issued.some((r) => r.kind === "issuing" && r.revoked)) {
    throw new PkiError(
      "no_ca",
      `an issuing CA was revoked: the root CRL must be re-signed with the root key (${ca.paths.rootKey})`,
    );
  }
  return { reuse: text };
}

/**
 * Re-signs both CRLs from the database (bumping the CRL number) and replaces the CRL files, the
 * database and any `extra` files in one batch.
 */
export async function writeCrl(ca: LoadedCa, now = new Date(), extra: FileWrite[] = []): Promise<void> {
  ca.db.crlNumber += 1;
  const crls = await buildCrlPem({
    db: ca.db,
    root: ca.root ?? (await offlineRootCrl(ca, now)),
    issuing: ca.issuing,
    previousIssuing: ca.previousIssuing,
    now,
  });
  await writeFiles([
    ...extra,
    ...crls.previous.map((c): FileWrite => ({
      path: join(ca.paths.previousIssuingDir, `${c.serial}.crl.pem`),
      data: c.pem,
      mode: PUBLIC_MODE,
      how: "replace",
    })),
    databaseFile(ca.paths.database, ca.db),
    { path: ca.paths.crlIssuing, data: crls.issuing, mode: PUBLIC_MODE, how: "replace" },
    { path: ca.paths.crlRoot, data: crls.root, mode: PUBLIC_MODE, how: "replace" },
    { path: ca.paths.crl, data: crls.combined, mode: PUBLIC_MODE, how: "replace" },
    revocationsFile(ca.paths.revocations, ca.db),
  ]);
}
