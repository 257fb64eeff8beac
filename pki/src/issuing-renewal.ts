/**
 * `issuing-ca --renew`: a new issuing CA signed by the same root, so boards (which trust root.der only) need
 * nothing new. The overlap: the CA it replaces keeps its key (ca-private/issuing-previous/) and stays in
 * ca-bundle.pem, with its own CRL in crl.pem, until it expires, so every certificate it issued stays valid
 * (and revocable) until that certificate expires or is re-issued. New certificates come from the new CA;
 * the broker's certificate is re-issued at once, on the same key (the boards' pins do not move).
 * Needs the root key: put ca-private/root.key.pem back for the renewal; it can go offline again after.
 */
import { join } from "node:path";
import { caBundlePem, record, writeCrl, type LoadedCa } from "./ca";
import { PkiError } from "./errors";
import { issueBroker, withCa, type IssuedIdentity } from "./identities";
import { generateKey, importSigningKey, parsePrivateKey, pem } from "./keys";
import { DEFAULT_VALIDITY_DAYS } from "./profiles";
import { keyIdOf, signCertificate, type Signer } from "./sign";
import { exists, readText, KEY_MODE, PUBLIC_MODE } from "./store";
import { currentBrokerHosts } from "./broker-key";

export interface RenewIssuingResult {
  previous: { serial: string; name: string; notAfter: Date };
  current: { serial: string; name: string; notAfter: Date };
  /** Leaves the previous CA issued that are neither revoked nor expired: valid until they expire or are re-issued. */
  stillValidFromPrevious: number;
  broker?: IssuedIdentity;
}

/** "EST Issuing CA ab12cd34 1" → "EST Issuing CA ab12cd34 2": a new name, so OpenSSL tells the CAs apart. */
export function nextIssuingName(current: string, taken: readonly string[]): string {
  const m = /^(.*\s)(\d+)$/.exec(current);
  const base = m ? m[1]! : `${current} `;
  let n = m ? Number(m[2]) + 1 : 2;
  while (taken.includes(`${base}${n}`)) n++;
  return `${base}${n}`;
}

export async function renewIssuingCa(o: {
  stateDir: string;
  days?: number;
  now?: Date;
  /** Re-issue the broker's certificate from the new CA on its current key (default true). */
  reissueBroker?: boolean;
}): Promise<RenewIssuingResult> {
  const now = o.now ?? new Date();
  const renewed = await withCa(o.stateDir, (ca) => renewUnderLock(ca, now, o.days));
  if (o.reissueBroker === false || !(await exists(renewed.paths.broker.cert))) return renewed.result;
  const key = parsePrivateKey(await readText(renewed.paths.broker.key, "broker key")).material;
  const broker = await issueBroker({
    stateDir: o.stateDir,
    hosts: await currentBrokerHosts(renewed.paths),
    key,
    force: true,
    now,
  });
  return { ...renewed.result, broker };
}

async function renewUnderLock(
  ca: LoadedCa,
  now: Date,
  days: number | undefined,
): Promise<{ paths: LoadedCa["paths"]; result: RenewIssuingResult }> {
  if (!ca.root)
    throw new PkiError(
      "no_ca",
      `renewing the issuing CA needs the root key, which is offline: put it back at ${ca.paths.rootKey}, renew, then take it offline again`,
    );
  const old = ca.issuing;
  const oldSerial = old.cert.serialNumber.toLowerCase();
  const oldRec = ca.db.issued.find((r) => r.serial === oldSerial);
  const oldName = oldRec?.name ?? old.cert.subjectName.getField("CN")[0] ?? "EST Issuing CA";
  const name = nextIssuingName(
    oldName,
    ca.db.issued.filter((r) => r.kind === "issuing").map((r) => r.name),
  );
  const material = await generateKey("rsa-2048");
  const cert = await signCertificate(
    {
      kind: "issuing",
      name,
      keyType: "rsa-2048",
      spki: material.spki,
      days: days ?? DEFAULT_VALIDITY_DAYS.issuing,
      now,
    },
    ca.root,
  );
  const issuing: Signer = {
    cert,
    key: await importSigningKey(material),
    keyType: "rsa-2048",
    keyId: keyIdOf(cert),
    material,
  };
  // Every leaf without an issuer was signed by the CA being replaced: say so before "absent" changes meaning.
  let stillValidFromPrevious = 0;
  for (const r of ca.db.issued) {
    if (r.kind === "root" || r.kind === "issuing" || r.issuer !== undefined) continue;
    r.issuer = oldSerial;
    if (!r.revoked && Date.parse(r.notAfter) > now.getTime()) stillValidFromPrevious++;
  }
  if (oldRec) oldRec.supersededBy = cert.serialNumber.toLowerCase();
  ca.db.issued.push(record(cert, "issuing", name, "rsa-2048", now));
  const previousIssuing =
    old.cert.notAfter.getTime() > now.getTime() ? [old, ...ca.previousIssuing] : ca.previousIssuing;
  const renewedCa: LoadedCa = { ...ca, issuing, previousIssuing };
  const p = ca.paths;
  // The old CA's files move aside in the same batch as the new CA's arrive, with the CRLs re-signed for both.
  await writeCrl(renewedCa, now, [
    {
      path: join(p.previousIssuingKeyDir, `${oldSerial}.key.pem`),
      data: pem("PRIVATE KEY", old.material.pkcs8),
      mode: KEY_MODE,
      how: "new",
    },
    {
      path: join(p.previousIssuingDir, `${oldSerial}.pem`),
      data: old.cert.toString("pem") + "\n",
      mode: PUBLIC_MODE,
      how: "new",
    },
    { path: p.issuingKey, data: pem("PRIVATE KEY", material.pkcs8), mode: KEY_MODE, how: "replace" },
    { path: p.issuing, data: cert.toString("pem") + "\n", mode: PUBLIC_MODE, how: "replace" },
    { path: p.issuingDer, data: new Uint8Array(cert.rawData), mode: PUBLIC_MODE, how: "replace" },
    {
      path: p.caBundle,
      data: caBundlePem(
        cert,
        ca.rootCert,
        previousIssuing.map((s) => s.cert),
      ),
      mode: PUBLIC_MODE,
      how: "replace",
    },
  ]);
  const summary = (c: Signer["cert"], n: string) => ({
    serial: c.serialNumber.toLowerCase(),
    name: n,
    notAfter: c.notAfter,
  });
  return {
    paths: p,
    result: {
      previous: summary(old.cert, oldName),
      current: summary(cert, name),
      stillValidFromPrevious,
    },
  };
}
