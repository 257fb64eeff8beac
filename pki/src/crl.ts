import { x509 } from "./x509";
import { signingAlgorithm } from "./keys";
import type { CaDatabase, IssuedRecord, RevocationReason } from "./database";
import { pem } from "./keys";
import type { Signer } from "./sign";

export const DEFAULT_CRL_DAYS = { issuing: 90, root: 365 } as const;

const CRL_NUMBER_OID = "2.5.29.20";

/** The CRLs in a PEM file, one string each: Node's `crl` option reads only the first CRL of a string. */
export function splitCrls(pemText: string): string[] {
  return (pemText.match(/-----BEGIN X509 CRL-----[\s\S]+?-----END X509 CRL-----/g) ?? []).map(
    (b) => `${b}\n`,
  );
}

/**
 * One CRL per CA, both in one PEM file. Mosquitto (crl_check) needs the CRL of the leaf's issuer; Node's
 * TLS and `openssl verify -crl_check_all` check every CA in the chain and fail without the root's CRL.
 * The root CRL lists revoked issuing CAs; the issuing CRL lists revoked brokers, services and devices. After an
 * issuing CA renewal the CA it replaced keeps its own CRL (signed with its own key) for the leaves it issued:
 * OpenSSL looks a leaf's CRL up by its issuer's name, so one CRL per issuing CA, all in the one file.
 */
export async function buildCrlPem(o: {
  db: CaDatabase;
  /** The root CA, or its current CRL to keep when the root key is offline. */
  root: Signer | { reuse: string };
  issuing: Signer;
  /** Issuing CAs replaced by a renewal whose certificates may still be in use: each gets its own CRL. */
  previousIssuing?: readonly Signer[];
  now: Date;
  issuingDays?: number;
  rootDays?: number;
}): Promise<{
  issuing: string;
  root: string;
  previous: { serial: string; pem: string }[];
  combined: string;
}> {
  const number = o.db.crlNumber;
  const leaves = o.db.issued.filter((r) => r.revoked && r.kind !== "root" && r.kind !== "issuing");
  const cas = o.db.issued.filter((r) => r.revoked && r.kind === "issuing");
  const days = o.issuingDays ?? DEFAULT_CRL_DAYS.issuing;
  const serialOf = (s: Signer) => s.cert.serialNumber.toLowerCase();
  const issuingCrl = await buildCrl(
    o.issuing,
    leaves.filter((r) => r.issuer === undefined || r.issuer === serialOf(o.issuing)),
    o.now,
    days,
    number,
  );
  const issuing = pem("X509 CRL", new Uint8Array(issuingCrl.rawData));
  const previous: { serial: string; pem: string }[] = [];
  for (const ca of o.previousIssuing ?? []) {
    const crl = await buildCrl(
      ca,
      leaves.filter((r) => r.issuer === serialOf(ca)),
      o.now,
      days,
      number,
    );
    previous.push({ serial: serialOf(ca), pem: pem("X509 CRL", new Uint8Array(crl.rawData)) });
  }
  const root =
    "reuse" in o.root
      ? o.root.reuse
      : pem(
          "X509 CRL",
          new Uint8Array(
            (await buildCrl(o.root, cas, o.now, o.rootDays ?? DEFAULT_CRL_DAYS.root, number)).rawData,
          ),
        );
  return { issuing, root, previous, combined: issuing + previous.map((p) => p.pem).join("") + root };
}

async function buildCrl(
  ca: Signer,
  revoked: IssuedRecord[],
  now: Date,
  days: number,
  number: number,
): Promise<x509.X509Crl> {
  return x509.X509CrlGenerator.create({
    issuer: ca.cert.subjectName,
    thisUpdate: new Date(now.getTime() - 60_000),
    nextUpdate: new Date(now.getTime() + days * 86_400_000),
    signingKey: ca.key,
    signingAlgorithm: signingAlgorithm(ca.keyType),
    extensions: [
      new x509.AuthorityKeyIdentifierExtension(ca.keyId),
      new x509.Extension(CRL_NUMBER_OID, false, derInteger(number)),
    ],
    entries: revoked.map((r) => ({
      serialNumber: evenHex(r.serial),
      revocationDate: new Date(r.revoked?.at ?? now),
      reason: x509.X509CrlReason[(r.revoked?.reason ?? "unspecified") satisfies RevocationReason],
    })),
  });
}

/** DER INTEGER of a non-negative number (the CRL number). */
export function derInteger(n: number): Uint8Array {
  if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`bad CRL number ${n}`);
  let hex = n.toString(16);
  if (hex.length % 2) hex = `0${hex}`;
  if (parseInt(hex.slice(0, 2), 16) >= 0x80) hex = `00${hex}`;
  const body = Buffer.from(hex, "hex");
  return new Uint8Array([0x02, body.length, ...body]);
}

function evenHex(h: string): string {
  return h.length % 2 ? `0${h}` : h;
}
