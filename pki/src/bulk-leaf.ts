import { createHash, createPrivateKey, sign, type KeyObject } from "node:crypto";
import { x509 } from "./x509";
import { bitString, explicit, octetString, oid, seq, set, tlv, unsignedInteger, x509Time } from "./der";
import {
  clampToIssuer,
  profileExtensions,
  randomSerial,
  subjectAttributes,
  validityWindow,
} from "./profiles";
import type { CaKeyType } from "./keys";
import type { Signer } from "./sign";

/**
 * Device certificates in bulk without the general ASN.1 machinery, which costs about 4 ms of one
 * core per certificate and would alone exceed the 1 s budget for 1000 P-256 devices. Only the parts
 * that differ between devices (serial, validity, subject, key, key id) are encoded here; the issuer
 * name, the profile's extensions and the authority key id are taken once from @peculiar/x509, and a
 * test checks the result is byte-identical to what the library itself produces.
 */
export interface LeafCert {
  der: Uint8Array;
  serial: string;
  notBefore: Date;
  notAfter: Date;
}

export interface LeafTemplate {
  issuerName: Uint8Array;
  fixedExtensions: Uint8Array[];
  authorityKeyId: Uint8Array;
  signatureAlgorithm: Uint8Array;
  signingKey: KeyObject;
  /** No leaf outlives its issuer (clampToIssuer). */
  issuerNotAfter: Date;
}

const SHA256_WITH_RSA = seq(oid("1.2.840.113549.1.1.11"), new Uint8Array([0x05, 0x00]));
const ECDSA_WITH_SHA256 = seq(oid("1.2.840.10045.4.3.2"));

export function leafTemplate(issuer: Signer, leafKeyType: CaKeyType): LeafTemplate {
  return {
    issuerName: new Uint8Array(issuer.cert.subjectName.toArrayBuffer()),
    fixedExtensions: profileExtensions("device", leafKeyType).map((e) => new Uint8Array(e.rawData)),
    authorityKeyId: new Uint8Array(new x509.AuthorityKeyIdentifierExtension(issuer.keyId).rawData),
    signatureAlgorithm: issuer.keyType === "p256" ? ECDSA_WITH_SHA256 : SHA256_WITH_RSA,
    signingKey: createPrivateKey({ key: Buffer.from(issuer.material.pkcs8), format: "der", type: "pkcs8" }),
    issuerNotAfter: issuer.cert.notAfter,
  };
}

export function encodeName(attrs: readonly (readonly [string, string])[]): Uint8Array {
  return seq(...attrs.map(([type, value]) => set(seq(oid(type), directoryString(value)))));
}

/** PrintableString where its alphabet allows, else UTF8String: the rule @peculiar/x509 applies. */
function directoryString(value: string): Uint8Array {
  const printable = /^[A-Za-z0-9 '()+,\-./:=?]*$/.test(value);
  return tlv(printable ? 0x13 : 0x0c, Buffer.from(value, "utf8"));
}

/** RFC 5280 method 1: SHA-1 of the subjectPublicKey BIT STRING's bits. */
export function subjectKeyIdExtension(spki: Uint8Array): Uint8Array {
  const keyBits = subjectPublicKeyBits(spki);
  const id = createHash("sha1").update(keyBits).digest();
  return seq(oid("2.5.29.14"), octetString(octetString(id)));
}

function subjectPublicKeyBits(spki: Uint8Array): Uint8Array {
  // SubjectPublicKeyInfo ::= SEQUENCE { algorithm AlgorithmIdentifier, subjectPublicKey BIT STRING }
  let at = 0;
  const readHeader = (): { len: number; start: number } => {
    at++; // tag
    let len = spki[at++] ?? 0;
    if (len & 0x80) {
      const n = len & 0x7f;
      len = 0;
      for (let i = 0; i < n; i++) len = len * 256 + (spki[at++] ?? 0);
    }
    return { len, start: at };
  };
  readHeader(); // outer SEQUENCE
  const alg = readHeader();
  at = alg.start + alg.len;
  const bits = readHeader();
  return spki.subarray(bits.start + 1, bits.start + bits.len); // skip the unused-bits octet
}

export function buildTbs(
  t: LeafTemplate,
  o: { serial: string; notBefore: Date; notAfter: Date; name: string; spki: Uint8Array },
): Uint8Array {
  return seq(
    explicit(0, new Uint8Array([0x02, 0x01, 0x02])),
    unsignedInteger(Buffer.from(o.serial, "hex")),
    t.signatureAlgorithm,
    t.issuerName,
    seq(x509Time(o.notBefore), x509Time(o.notAfter)),
    encodeName(subjectAttributes("device", o.name)),
    o.spki,
    explicit(3, seq(...t.fixedExtensions, subjectKeyIdExtension(o.spki), t.authorityKeyId)),
  );
}

/** Signs on the libuv pool (node:crypto's async sign), so both cores work on a batch. */
export function issueLeaf(
  t: LeafTemplate,
  o: {
    name: string;
    spki: Uint8Array;
    now: Date;
    days: number;
    notBefore?: Date;
    notAfter?: Date;
    serial?: string;
  },
): Promise<LeafCert> {
  const w = validityWindow(o.now, o.days);
  // Certificates carry whole seconds; keep the record equal to what is encoded.
  const notBefore = wholeSeconds(o.notBefore ?? w.notBefore);
  const notAfter = wholeSeconds(clampToIssuer(o.notAfter ?? w.notAfter, t.issuerNotAfter, o.now));
  const serial = o.serial ?? randomSerial();
  const tbs = buildTbs(t, { serial, notBefore, notAfter, name: o.name, spki: o.spki });
  return new Promise((resolve, reject) => {
    sign("sha256", tbs, t.signingKey, (err, signature) => {
      if (err) return reject(err);
      resolve({ der: seq(tbs, t.signatureAlgorithm, bitString(signature)), serial, notBefore, notAfter });
    });
  });
}

function wholeSeconds(d: Date): Date {
  return new Date(Math.floor(d.getTime() / 1000) * 1000);
}
