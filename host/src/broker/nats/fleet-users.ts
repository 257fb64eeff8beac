/**
 * Who may connect to the cluster's MQTT listeners, worked out from certificates and CRLs (pure: no I/O).
 *
 * NATS 2.9 maps a verified client certificate to the user named by its subject DN (`verify_and_map`) and
 * reads no CRL. So revocation is enforced twice: a DN whose every certificate is revoked, expired or
 * unknown has no user, and only the public keys of certificates that are valid now are pinned
 * (`pinned_certs`), which also shuts out a revoked certificate that shares its DN with the device's
 * rotated, valid one.
 */
import { createHash } from "node:crypto";
import { x509 } from "../../../../pki/src/x509";
import { subjectTokenProblem } from "./permissions";

export type ClientKind = "device" | "service";

/** One certificate file the PKI holds for an identity (current or archived after a rotation). */
export interface ClientCertificate {
  kind: ClientKind;
  /** The identity the PKI filed it under (device id or service name); the certificate's CN must match. */
  name: string;
  certPem: string;
}

export interface FleetUser {
  kind: ClientKind;
  name: string;
  /** The subject DN as nats-server renders it for verify_and_map. */
  dn: string;
}

export interface FleetUsers {
  users: FleetUser[];
  /** Hex SHA-256 of the SubjectPublicKeyInfo of every certificate valid now, sorted. */
  pins: string[];
  /** Certificates left out, and why (for the launcher's log). */
  skipped: { kind: ClientKind; name: string; serial?: string; reason: string }[];
}

export interface FleetUsersInput {
  certificates: readonly ClientCertificate[];
  /** PEM text holding one or more CRLs (the PKI's crl.pem has the issuing and the root CRL). */
  crlPem: string;
  now: Date;
  /** When given (the fleet manifest's device ids), a device outside it gets no user. */
  devicesInFleet?: ReadonlySet<string>;
}

const SHORT_NAMES: Readonly<Record<string, string>> = {
  "2.5.4.3": "CN",
  "2.5.4.11": "OU",
  "2.5.4.10": "O",
  "2.5.4.6": "C",
  "2.5.4.7": "L",
  "2.5.4.8": "ST",
};

/** RFC 4514 specials; our names have none, and a DN that needs escaping is refused rather than guessed. */
// eslint-disable-next-line no-control-regex
const NEEDS_ESCAPE = /[,+"\\<>;=#\u0000-\u001f]|^\s|\s$/;

/**
 * Go's pkix.Name.String(), which nats-server compares: RDNs in reverse order (RFC 2253), short type
 * names, joined by ",". Checked against nats-server 2.9.10 in host/test/broker/nats/cluster-access.test.ts.
 */
export function natsSubjectDn(cert: x509.X509Certificate): string {
  const rdns = cert.subjectName.toJSON();
  const parts: string[] = [];
  for (const rdn of [...rdns].reverse()) {
    const entries = Object.entries(rdn);
    if (entries.length !== 1) throw new Error("a multi-valued RDN is not supported");
    const [type, values] = entries[0] as [string, string[]];
    const short = SHORT_NAMES[type] ?? type;
    if (!Object.values(SHORT_NAMES).includes(short))
      throw new Error(`subject attribute ${type} is not supported`);
    if (values.length !== 1) throw new Error("a multi-valued RDN is not supported");
    const value = values[0] ?? "";
    if (value.length === 0 || NEEDS_ESCAPE.test(value))
      throw new Error(`subject value "${value}" would need escaping`);
    parts.push(`${short}=${value}`);
  }
  return parts.join(",");
}

/** What nats-server's `pinned_certs` holds: hex SHA-256 of the DER SubjectPublicKeyInfo. */
export function publicKeyPin(cert: x509.X509Certificate): string {
  return createHash("sha256").update(Buffer.from(cert.publicKey.rawData)).digest("hex");
}

function revokedSerials(crlPem: string): Set<string> {
  const revoked = new Set<string>();
  const blocks = crlPem.match(/-----BEGIN (?:X509 )?CRL-----[\s\S]+?-----END (?:X509 )?CRL-----/g) ?? [];
  if (blocks.length === 0) throw new Error("the CRL file holds no CRL");
  for (const block of blocks) {
    const der = x509.PemConverter.decode(block.replace(/X509 CRL/g, "CRL"))[0];
    if (!der) continue;
    const crl = new x509.X509Crl(der);
    for (const entry of crl.entries) revoked.add(`${crl.issuer}|${entry.serialNumber.toLowerCase()}`);
  }
  return revoked;
}

export function fleetUsers(input: FleetUsersInput): FleetUsers {
  const revoked = revokedSerials(input.crlPem);
  const now = input.now.getTime();
  const users = new Map<string, FleetUser>();
  const pins = new Set<string>();
  const skipped: FleetUsers["skipped"] = [];

  for (const c of input.certificates) {
    const skip = (reason: string, serial?: string): void => {
      skipped.push({ kind: c.kind, name: c.name, ...(serial ? { serial } : {}), reason });
    };
    const tokenProblem = subjectTokenProblem(c.name);
    if (tokenProblem) {
      skip(`the name ${tokenProblem}`);
      continue;
    }
    if (c.kind === "device" && input.devicesInFleet && !input.devicesInFleet.has(c.name)) {
      skip("not in the fleet manifest");
      continue;
    }
    let cert: x509.X509Certificate;
    try {
      cert = new x509.X509Certificate(c.certPem);
    } catch (err) {
      skip(`unreadable certificate: ${err instanceof Error ? err.message : String(err)}`);
      continue;
    }
    const serial = cert.serialNumber.toLowerCase();
    const cn = cert.subjectName.getField("CN");
    if (cn.length !== 1 || cn[0] !== c.name) {
      skip(`its CN (${cn.join(", ")}) is not "${c.name}"`, serial);
      continue;
    }
    if (revoked.has(`${cert.issuer}|${serial}`)) {
      skip("revoked", serial);
      continue;
    }
    if (cert.notAfter.getTime() <= now) {
      skip("expired", serial);
      continue;
    }
    if (cert.notBefore.getTime() > now) {
      skip("not yet valid", serial);
      continue;
    }
    let dn: string;
    try {
      dn = natsSubjectDn(cert);
    } catch (err) {
      skip(err instanceof Error ? err.message : String(err), serial);
      continue;
    }
    const other = users.get(dn);
    if (other && (other.kind !== c.kind || other.name !== c.name)) {
      skip(`its subject DN is also ${other.kind} "${other.name}"'s`, serial);
      continue;
    }
    users.set(dn, { kind: c.kind, name: c.name, dn });
    pins.add(publicKeyPin(cert));
  }
  return {
    users: [...users.values()].sort((a, b) => (a.dn < b.dn ? -1 : a.dn > b.dn ? 1 : 0)),
    pins: [...pins].sort(),
    skipped,
  };
}
