import { PkiError } from "./errors";
import { readText, writeReplace, KEY_MODE, exists, type FileWrite } from "./store";

export type IdentityKind = "root" | "issuing" | "broker" | "service" | "device";

export const REVOCATION_REASONS = [
  "unspecified",
  "keyCompromise",
  "cACompromise",
  "affiliationChanged",
  "superseded",
  "cessationOfOperation",
] as const;
export type RevocationReason = (typeof REVOCATION_REASONS)[number];

export interface IssuedRecord {
  /** Lower-case hex, as X509Certificate.serialNumber shows it. */
  serial: string;
  kind: IdentityKind;
  name: string;
  keyType: string;
  notBefore: string;
  notAfter: string;
  issuedAt: string;
  revoked?: { at: string; reason: RevocationReason };
  /** Set when a later certificate replaced this one (rotate); the old one stays valid until revoked or expired. */
  supersededBy?: string;
  /**
   * Serial of the issuing CA that signed this leaf. Absent: the current issuing CA (a renewal stamps every
   * leaf without one with the serial of the CA it replaces, so the rule holds across renewals).
   */
  issuer?: string;
}

/** The CA's own record (ca-private/database.json): what it issued, what it revoked, the CRL counter. */
export interface CaDatabase {
  version: 1;
  crlNumber: number;
  issued: IssuedRecord[];
}

export function emptyDatabase(): CaDatabase {
  return { version: 1, crlNumber: 0, issued: [] };
}

export async function loadDatabase(path: string): Promise<CaDatabase> {
  if (!(await exists(path))) return emptyDatabase();
  const text = await readText(path, "CA database");
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new PkiError("ca_unreadable", `CA database ${path} is not valid JSON`);
  }
  const db = parsed as Partial<CaDatabase>;
  if (db.version !== 1 || !Array.isArray(db.issued) || typeof db.crlNumber !== "number") {
    throw new PkiError("ca_unreadable", `CA database ${path} has an unknown format`);
  }
  return db as CaDatabase;
}

export function databaseText(db: CaDatabase): string {
  return `${JSON.stringify(db, null, 1)}\n`;
}

/** The database as one more file of a writeFiles batch, so records and files change together. */
export function databaseFile(path: string, db: CaDatabase): FileWrite {
  return { path, data: databaseText(db), mode: KEY_MODE, how: "replace" };
}

export function saveDatabase(path: string, db: CaDatabase): Promise<void> {
  return writeReplace(path, databaseText(db), KEY_MODE);
}

/** The certificate currently in use for a name: the newest one not superseded. */
export function currentRecord(db: CaDatabase, kind: IdentityKind, name: string): IssuedRecord | undefined {
  return db.issued.filter((r) => r.kind === kind && r.name === name && !r.supersededBy).at(-1);
}

export function findBySerial(db: CaDatabase, serial: string): IssuedRecord | undefined {
  const s = normaliseSerial(serial);
  return db.issued.find((r) => r.serial === s);
}

export function normaliseSerial(serial: string): string {
  return serial
    .toLowerCase()
    .replace(/[^0-9a-f]/g, "")
    .replace(/^0+(?=.)/, "");
}
