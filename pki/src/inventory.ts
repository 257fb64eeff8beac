import { x509 } from "./x509";
import { loadCa } from "./ca";
import type { IdentityKind, IssuedRecord } from "./database";
import { readDeviceCert } from "./identities";
import { exists, readText } from "./store";
import { PkiError } from "./errors";

export type CertStatus = "valid" | "revoked" | "expired" | "not-yet-valid" | "superseded";

export interface InventoryRow extends IssuedRecord {
  status: CertStatus;
}

export function statusOf(r: IssuedRecord, now: Date): CertStatus {
  if (r.revoked) return "revoked";
  if (Date.parse(r.notAfter) <= now.getTime()) return "expired";
  if (Date.parse(r.notBefore) > now.getTime()) return "not-yet-valid";
  if (r.supersededBy) return "superseded";
  return "valid";
}

export async function listIdentities(
  stateDir: string,
  o: { kind?: IdentityKind; all?: boolean; now?: Date } = {},
): Promise<InventoryRow[]> {
  const ca = await loadCa(stateDir);
  const now = o.now ?? new Date();
  return ca.db.issued
    .filter((r) => (o.kind ? r.kind === o.kind : true))
    .map((r) => ({ ...r, status: statusOf(r, now) }))
    .filter((r) => o.all || r.status !== "superseded");
}

export interface CertificateSummary {
  subject: string;
  issuer: string;
  serial: string;
  notBefore: string;
  notAfter: string;
  keyAlgorithm: string;
  extendedKeyUsage: string[];
  subjectAltNames: string[];
  isCa: boolean;
  status?: CertStatus;
}

/** `target` is a device id, "broker", "root", "issuing", "service:<name>" or a certificate file. */
export async function inspect(
  stateDir: string,
  target: string,
  now = new Date(),
): Promise<CertificateSummary> {
  const ca = await loadCa(stateDir);
  let cert: x509.X509Certificate;
  if (target === "root") cert = ca.rootCert;
  else if (target === "issuing") cert = ca.issuing.cert;
  else if (target === "broker")
    cert = new x509.X509Certificate(await readText(ca.paths.broker.cert, "broker certificate"));
  else if (target.startsWith("service:"))
    cert = new x509.X509Certificate(
      await readText(ca.paths.service(target.slice(8)).cert, "service certificate"),
    );
  else if (target.includes("/") && (await exists(target)))
    cert = new x509.X509Certificate(await readText(target, "certificate"));
  else if (/^[A-Za-z0-9_][A-Za-z0-9._-]{0,31}$/.test(target)) cert = await readDeviceCert(ca.paths, target);
  else
    throw new PkiError(
      "bad_input",
      `cannot inspect "${target}": not a device id, root, issuing, broker, service:<name> or a certificate file`,
    );
  const serial = cert.serialNumber.toLowerCase();
  const rec = ca.db.issued.find((r) => r.serial === serial);
  const eku = cert.getExtension(x509.ExtendedKeyUsageExtension);
  const san = cert.getExtension(x509.SubjectAlternativeNameExtension);
  const bc = cert.getExtension(x509.BasicConstraintsExtension);
  const alg = cert.publicKey.algorithm as { name: string; namedCurve?: string; modulusLength?: number };
  return {
    subject: cert.subject,
    issuer: cert.issuer,
    serial,
    notBefore: cert.notBefore.toISOString(),
    notAfter: cert.notAfter.toISOString(),
    keyAlgorithm: `${alg.name}${alg.namedCurve ? ` ${alg.namedCurve}` : ""}${alg.modulusLength ? ` ${alg.modulusLength}` : ""}`,
    extendedKeyUsage: (eku?.usages ?? []).map((u) => ekuName(String(u))),
    subjectAltNames: (san?.names.items ?? []).map((n) => `${n.type}:${n.value}`),
    isCa: bc?.ca ?? false,
    ...(rec ? { status: statusOf(rec, now) } : {}),
  };
}

function ekuName(oid: string): string {
  const names: Record<string, string> = {
    "1.3.6.1.5.5.7.3.1": "serverAuth",
    "1.3.6.1.5.5.7.3.2": "clientAuth",
  };
  return names[oid] ?? oid;
}
