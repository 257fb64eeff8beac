import { join } from "node:path";
import { x509 } from "./x509";
import { loadDatabase } from "./database";
import { pkiPaths } from "./paths";
import { exists, readText } from "./store";

export interface ExpiryRecord {
  /** A certificate's kind, or "crl" for the CRL of the CA named by `name` (issuing, root). */
  kind: "root" | "issuing" | "broker" | "service" | "device" | "crl";
  name: string;
  serial?: string;
  /** notAfter of a certificate, nextUpdate of a CRL. */
  expires: Date;
}

/**
 * When every certificate in use and both CRLs stop being valid. Certificates in use are those neither
 * revoked nor superseded (a rotated certificate's expiry no longer matters); an expired one is still listed,
 * so it shows as overdue instead of silently disappearing. Read from the CA database and public/, no CA key.
 */
export async function expiryRecords(stateDir: string): Promise<ExpiryRecord[]> {
  const paths = pkiPaths(stateDir);
  const db = await loadDatabase(paths.database);
  const certs: ExpiryRecord[] = db.issued
    .filter((r) => !r.revoked && !r.supersededBy)
    .map((r) => ({
      kind: r.kind,
      // The CA records carry their instance name; the kind is what people look for.
      name: r.kind === "root" || r.kind === "issuing" ? r.kind : r.name,
      serial: r.serial,
      expires: new Date(r.notAfter),
    }));
  const crls: ExpiryRecord[] = [];
  // After a renewal the replaced issuing CA (still vouching for what it issued) has a CRL of its own.
  const previous = db.issued
    .filter(
      (r) => r.kind === "issuing" && r.supersededBy && !r.revoked && Date.parse(r.notAfter) > Date.now(),
    )
    .map((r) => [`issuing-${r.serial}`, join(paths.previousIssuingDir, `${r.serial}.crl.pem`)] as const);
  for (const [name, path] of [["issuing", paths.crlIssuing], ...previous, ["root", paths.crlRoot]] as const) {
    if (!(await exists(path))) continue;
    const next = new x509.X509Crl(await readText(path, `${name} CRL`)).nextUpdate;
    if (next) crls.push({ kind: "crl", name, expires: next });
  }
  return [...certs, ...crls];
}
