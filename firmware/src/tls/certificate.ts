/**
 * The parts of an X.509 v3 certificate (RFC 5280 §4.1) that deciding whether to trust a server needs:
 * names, validity, public key, and the extensions that say what the key may do (basicConstraints §4.2.1.9,
 * keyUsage §4.2.1.3, extKeyUsage §4.2.1.12). Signatures are checked by the platform (Moddable's crypt or
 * node:crypto); this module only finds what they cover. Pure: runs under XS and Node.
 */
import { DerError, DerTag, children, expectTlv, oidString, readTlv, smallInteger, timeValue } from "./der";
import type { Tlv } from "./der";

export const Oid = Object.freeze({
  BASIC_CONSTRAINTS: "2.5.29.19",
  KEY_USAGE: "2.5.29.15",
  EXT_KEY_USAGE: "2.5.29.37",
  SERVER_AUTH: "1.3.6.1.5.5.7.3.1",
  ANY_EXTENDED_KEY_USAGE: "2.5.29.37.0",
} as const);

/** keyUsage bit 5 (keyCertSign), counted from the most significant bit of the first octet. */
const KEY_CERT_SIGN = 5;

export interface Certificate {
  der: Uint8Array;
  /** The DER of tbsCertificate: what the issuer signed. */
  tbs: Uint8Array;
  /** The serial number's INTEGER content octets (a leading 0x00 keeps a high bit positive). */
  serial: Uint8Array;
  issuer: Uint8Array;
  subject: Uint8Array;
  notBefore: number;
  notAfter: number;
  /** The whole SubjectPublicKeyInfo, DER: what a key pin hashes (RFC 7469 §2.4). */
  spki: Uint8Array;
  /** basicConstraints: absent means "not a CA" (RFC 5280 §4.2.1.9). */
  isCa: boolean;
  /** pathLenConstraint, or undefined for none. */
  pathLength: number | undefined;
  /** keyUsage bits as a bit string, or undefined when the extension is absent. */
  keyUsage: Uint8Array | undefined;
  /** extKeyUsage purposes, or undefined when the extension is absent. */
  extKeyUsage: string[] | undefined;
  /** An extension marked critical that this module does not understand: such a certificate must be refused. */
  unknownCritical: string[];
}

/** Parses a certificate; throws DerError on anything malformed (the caller treats that as "not trusted"). */
export function parseCertificate(der: Uint8Array): Certificate {
  const outer = expectTlv(der, 0, der.length, DerTag.SEQUENCE, "Certificate");
  if (outer.end !== der.length) throw new DerError("trailing bytes after the certificate");
  const [tbsTlv, algorithm, signature] = children(der, outer);
  if (!tbsTlv || !algorithm || !signature || tbsTlv.tag !== DerTag.SEQUENCE)
    throw new DerError("Certificate: wrong shape");
  const fields = children(der, tbsTlv);
  let i = 0;
  // [0] EXPLICIT version: v3 certificates carry it; extensions exist only in v3.
  if (fields[i]?.tag === 0xa0) i++;
  const serial = fields[i++];
  const signatureAlgorithm = fields[i++];
  const issuer = fields[i++];
  const validity = fields[i++];
  const subject = fields[i++];
  const spki = fields[i++];
  if (!serial || !signatureAlgorithm || !issuer || !validity || !subject || !spki)
    throw new DerError("TBSCertificate: fields missing");
  if (issuer.tag !== DerTag.SEQUENCE || subject.tag !== DerTag.SEQUENCE || spki.tag !== DerTag.SEQUENCE) {
    throw new DerError("TBSCertificate: wrong shape");
  }
  const [from, to] = children(der, validity);
  if (!from || !to) throw new DerError("Validity: wrong shape");

  const cert: Certificate = {
    der,
    tbs: der.subarray(tbsTlv.start, tbsTlv.end),
    serial: der.subarray(serial.valueStart, serial.end),
    issuer: der.subarray(issuer.start, issuer.end),
    subject: der.subarray(subject.start, subject.end),
    notBefore: timeValue(der, from),
    notAfter: timeValue(der, to),
    spki: der.subarray(spki.start, spki.end),
    isCa: false,
    pathLength: undefined,
    keyUsage: undefined,
    extKeyUsage: undefined,
    unknownCritical: [],
  };
  for (; i < fields.length; i++) {
    const f = fields[i]!;
    if (f.tag === 0xa3) readExtensions(der, f, cert);
  }
  return cert;
}

/**
 * The serial as lowercase hex without leading zero octets: what OpenSSL, Node's X509Certificate.serialNumber
 * (lowercased) and the PKI's revocation list print, so a board's status names its certificate the same way.
 */
export function serialHex(cert: Certificate): string {
  let i = 0;
  while (i < cert.serial.length - 1 && cert.serial[i] === 0) i++;
  let out = "";
  for (; i < cert.serial.length; i++) out += (cert.serial[i]! < 16 ? "0" : "") + cert.serial[i]!.toString(16);
  return out;
}

/** True when keyUsage is absent or asserts keyCertSign. */
export function mayCertify(cert: Certificate): boolean {
  if (!cert.keyUsage) return true;
  const octet = cert.keyUsage[KEY_CERT_SIGN >> 3];
  return octet !== undefined && (octet & (0x80 >> (KEY_CERT_SIGN & 7))) !== 0;
}

/** True when extKeyUsage is absent or allows TLS server authentication. */
export function mayServeTls(cert: Certificate): boolean {
  if (!cert.extKeyUsage) return true;
  return cert.extKeyUsage.includes(Oid.SERVER_AUTH) || cert.extKeyUsage.includes(Oid.ANY_EXTENDED_KEY_USAGE);
}

function readExtensions(der: Uint8Array, wrapper: Tlv, cert: Certificate): void {
  const list = readTlv(der, wrapper.valueStart, wrapper.end);
  if (list.tag !== DerTag.SEQUENCE) throw new DerError("Extensions: wrong shape");
  for (const ext of children(der, list)) {
    const parts = children(der, ext);
    const id = parts[0];
    if (!id) throw new DerError("Extension: empty");
    const oid = oidString(der, id);
    let critical = false;
    let value = parts[1];
    if (value?.tag === DerTag.BOOLEAN) {
      critical = der[value.valueStart] !== 0;
      value = parts[2];
    }
    if (!value || value.tag !== DerTag.OCTET_STRING) throw new DerError(`Extension ${oid}: no value`);
    const inner = readTlv(der, value.valueStart, value.end);
    if (oid === Oid.BASIC_CONSTRAINTS) {
      const items = children(der, inner);
      let k = 0;
      if (items[k]?.tag === DerTag.BOOLEAN) cert.isCa = der[items[k++]!.valueStart] !== 0;
      if (items[k]?.tag === DerTag.INTEGER) cert.pathLength = smallInteger(der, items[k]!);
    } else if (oid === Oid.KEY_USAGE) {
      if (inner.tag !== DerTag.BIT_STRING || inner.end <= inner.valueStart)
        throw new DerError("keyUsage: not a BIT STRING");
      cert.keyUsage = der.subarray(inner.valueStart + 1, inner.end);
    } else if (oid === Oid.EXT_KEY_USAGE) {
      cert.extKeyUsage = children(der, inner).map((p) => oidString(der, p));
    } else if (critical) cert.unknownCritical.push(oid);
  }
}
