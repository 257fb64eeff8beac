import { randomBytes } from "node:crypto";
import { isIP } from "node:net";
import { x509 } from "./x509";
import type { CaKeyType } from "./keys";
import type { IdentityKind } from "./database";
import { PkiError } from "./errors";

/** Organisation in every subject, so a certificate from this project is recognisable in logs. */
export const ORGANISATION = "Electrolyser Secure Telemetry";

export const DEFAULT_VALIDITY_DAYS: Readonly<Record<IdentityKind, number>> = {
  root: 20 * 365,
  issuing: 5 * 365,
  broker: 825,
  service: 825,
  device: 3 * 365,
};

/** Clock skew between the CA and a board that just set its time by SNTP. */
export const BACKDATE_MS = 5 * 60_000;

/**
 * A positive 127-bit random serial (RFC 5280 allows 20 octets; CAB forum asks for 64 random bits).
 * The first octet is kept in 0x10..0x7f so the hex form has no leading zero and the INTEGER no sign octet.
 */
export function randomSerial(): string {
  const b = randomBytes(16);
  b[0] = 0x10 + ((b[0] ?? 0) % 0x70);
  return b.toString("hex");
}

const OID_O = "2.5.4.10";
const OID_OU = "2.5.4.11";
const OID_CN = "2.5.4.3";

/**
 * O, OU, CN in that (conventional) order. OU keeps devices, services, the broker and the CAs apart
 * for people reading a certificate; the broker's ACL only looks at the CN.
 */
export function subjectAttributes(kind: IdentityKind, name: string): [string, string][] {
  const unit =
    kind === "root" || kind === "issuing"
      ? "CA"
      : kind === "device"
        ? "devices"
        : kind === "service"
          ? "services"
          : "broker";
  return [
    [OID_O, ORGANISATION],
    [OID_OU, unit],
    [OID_CN, name],
  ];
}

const SHORT: Record<string, string> = { [OID_O]: "O", [OID_OU]: "OU", [OID_CN]: "CN" };

/** The same subject as a string for @peculiar/x509 (names here never contain `,` `=` `+` or quotes). */
export function subjectFor(kind: IdentityKind, name: string, separator = ", "): string {
  return subjectAttributes(kind, name)
    .map(([type, value]) => `${SHORT[type] ?? type}=${value}`)
    .join(separator);
}

/** Extensions that depend only on the kind (and the broker's names), not on the key. */
export function profileExtensions(
  kind: IdentityKind,
  keyType: CaKeyType,
  hosts: readonly string[] = [],
): x509.Extension[] {
  const { KeyUsageFlags: KU, ExtendedKeyUsage: EKU } = x509;
  const rsa = keyType !== "p256";
  switch (kind) {
    case "root":
      return [
        new x509.BasicConstraintsExtension(true, undefined, true),
        new x509.KeyUsagesExtension(KU.keyCertSign | KU.cRLSign, true),
      ];
    case "issuing":
      // pathLength 0: the issuing CA signs leaves only, never another CA.
      return [
        new x509.BasicConstraintsExtension(true, 0, true),
        new x509.KeyUsagesExtension(KU.keyCertSign | KU.cRLSign, true),
      ];
    case "broker":
      return [
        new x509.BasicConstraintsExtension(false, undefined, true),
        // keyEncipherment only matters for RSA key transport suites, which nobody here offers, but
        // some TLS stacks check for it on RSA server certificates.
        new x509.KeyUsagesExtension(KU.digitalSignature | (rsa ? KU.keyEncipherment : 0), true),
        new x509.ExtendedKeyUsageExtension([EKU.serverAuth], false),
        new x509.SubjectAlternativeNameExtension(
          hosts.map((h) => ({ type: isIP(h) ? ("ip" as const) : ("dns" as const), value: h })),
          false,
        ),
      ];
    case "service":
    case "device":
      return [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(KU.digitalSignature, true),
        new x509.ExtendedKeyUsageExtension([EKU.clientAuth], false),
      ];
  }
}

export function validityWindow(now: Date, days: number): { notBefore: Date; notAfter: Date } {
  if (!Number.isFinite(days) || days <= 0)
    throw new RangeError(`validity must be a positive number of days, got ${days}`);
  return {
    notBefore: new Date(now.getTime() - BACKDATE_MS),
    notAfter: new Date(now.getTime() + days * 86_400_000),
  };
}

/**
 * A certificate must not outlive its issuer: a chain is only as valid as its shortest link, so a leaf past
 * its CA's notAfter would look valid in `pki list` and fail at every handshake. The leaf's end is moved to
 * the issuer's; an issuer that has already expired cannot issue at all.
 */
export function clampToIssuer(notAfter: Date, issuerNotAfter: Date, now: Date): Date {
  if (issuerNotAfter.getTime() <= now.getTime())
    throw new PkiError(
      "no_ca",
      `the issuing CA expired on ${issuerNotAfter.toISOString()}; renew it before issuing (npm run pki -- init)`,
    );
  return notAfter.getTime() > issuerNotAfter.getTime() ? issuerNotAfter : notAfter;
}
