import { createPublicKey, type KeyObject } from "node:crypto";
import { x509 } from "./x509";
import { PkiError } from "./errors";
import type { KeyType } from "./paths";
import { subjectAttributes, subjectFor } from "./profiles";

/**
 * Checks a board's PKCS#10 request before its key is certified: the CA puts its own subject and extensions in
 * the certificate anyway, but a request for another device's name, a weak key or a broken self-signature
 * means the board (or whoever answered for it) is not doing what the rotation asked, and is refused.
 */
export async function checkDeviceCsr(
  csrDer: Uint8Array,
  id: string,
): Promise<{ spki: Uint8Array; keyType: KeyType }> {
  const { csr, signatureOid, subject } = parse(csrDer);
  const signature = SHA256_SIGNATURES[signatureOid];
  if (signature === undefined)
    throw bad(
      `the CSR is signed with ${OTHER_SIGNATURES[signatureOid] ?? signatureOid}; only SHA-256 signatures (${Object.values(SHA256_SIGNATURES).join(", ")}) are accepted`,
    );
  const spki = new Uint8Array(csr.publicKey.rawData);
  const keyType = deviceKeyType(spki);
  let verified: boolean;
  try {
    verified = await csr.verify();
  } catch (err) {
    throw bad(`the CSR's self-signature cannot be checked (${errorText(err)})`, err);
  }
  if (!verified)
    throw bad(`the CSR's self-signature (${signature}) does not verify with the public key it carries`);
  checkSubject(subject, id);
  return { spki, keyType };
}

const SHA256_SIGNATURES: Readonly<Record<string, string>> = {
  "1.2.840.113549.1.1.11": "sha256WithRSAEncryption",
  "1.2.840.10045.4.3.2": "ecdsa-with-SHA256",
};

/** Names for the algorithms a refused request is most likely to use, so the message says more than an OID. */
const OTHER_SIGNATURES: Readonly<Record<string, string>> = {
  "1.2.840.113549.1.1.4": "md5WithRSAEncryption",
  "1.2.840.113549.1.1.5": "sha1WithRSAEncryption",
  "1.2.840.113549.1.1.10": "RSASSA-PSS",
  "1.2.840.113549.1.1.12": "sha384WithRSAEncryption",
  "1.2.840.113549.1.1.13": "sha512WithRSAEncryption",
  "1.2.840.10045.4.1": "ecdsa-with-SHA1",
  "1.2.840.10045.4.3.3": "ecdsa-with-SHA384",
  "1.2.840.10045.4.3.4": "ecdsa-with-SHA512",
  "1.3.101.112": "Ed25519",
};

const bad = (message: string, cause?: unknown): PkiError =>
  new PkiError("bad_csr", message, cause === undefined ? undefined : { cause });

const errorText = (err: unknown): string => (err instanceof Error ? err.message : String(err));

type Attribute = { type: string; value: string | undefined };

function parse(der: Uint8Array): {
  csr: x509.Pkcs10CertificateRequest;
  signatureOid: string;
  subject: Attribute[][];
} {
  try {
    // The library's parser reads BER and ignores what follows the request; the walk below holds it to one
    // DER CertificationRequest, and gives the signature algorithm's and the subject's OIDs, which it renames.
    const outer = readTlv(der, 0);
    if (outer.tag !== SEQUENCE || outer.end !== der.length) throw new Error("not one DER SEQUENCE");
    const [info, algorithm, signature] = children(outer);
    const [version, subject] = info?.tag === SEQUENCE ? children(info) : [];
    const [algorithmOid] = algorithm?.tag === SEQUENCE ? children(algorithm) : [];
    if (
      version?.tag !== INTEGER ||
      subject?.tag !== SEQUENCE ||
      algorithmOid?.tag !== OID ||
      signature?.tag !== BIT_STRING
    )
      throw new Error("not a CertificationRequest");
    return {
      csr: new x509.Pkcs10CertificateRequest(der),
      signatureOid: dotted(algorithmOid.body),
      subject: children(subject).map((rdn) => {
        if (rdn.tag !== SET) throw new Error("subject RDN is not a SET");
        return children(rdn).map(attribute);
      }),
    };
  } catch (err) {
    throw bad(`not a DER PKCS#10 certificate request (${errorText(err)})`, err);
  }
}

function attribute(t: Tlv): Attribute {
  const [type, value] = t.tag === SEQUENCE ? children(t) : [];
  if (type?.tag !== OID || value === undefined) throw new Error("malformed subject attribute");
  return { type: dotted(type.body), value: stringValue(value) };
}

/** The string types a DN value comes in from mbedTLS, OpenSSL and this PKI; anything else matches nothing. */
function stringValue(t: Tlv): string | undefined {
  if (t.tag === UTF8_STRING) return new TextDecoder("utf-8", { fatal: true }).decode(t.body);
  if (t.tag === PRINTABLE_STRING || t.tag === IA5_STRING) return String.fromCharCode(...t.body);
  return undefined;
}

const KEY_RULE = "a device key must be RSA-2048 with exponent 65537, or EC P-256";

function deviceKeyType(spki: Uint8Array): KeyType {
  let key: KeyObject;
  try {
    key = createPublicKey({ key: Buffer.from(spki), format: "der", type: "spki" });
  } catch (err) {
    throw bad(`the CSR carries a public key this CA cannot read (${errorText(err)}); ${KEY_RULE}`, err);
  }
  const d = key.asymmetricKeyDetails;
  if (key.asymmetricKeyType === "rsa") {
    if (d?.modulusLength === 2048 && d.publicExponent === 0x10001n) return "rsa-2048";
    const exponent = d?.publicExponent === 0x10001n ? "" : ` with exponent ${String(d?.publicExponent)}`;
    throw bad(`the CSR carries an RSA-${d?.modulusLength ?? "?"} key${exponent}; ${KEY_RULE}`);
  }
  if (key.asymmetricKeyType === "ec") {
    if (d?.namedCurve === "prime256v1") return "p256";
    throw bad(
      `the CSR carries an EC ${CURVES[d?.namedCurve ?? ""] ?? d?.namedCurve ?? "?"} key; ${KEY_RULE}`,
    );
  }
  throw bad(`the CSR carries a key of type ${key.asymmetricKeyType ?? "unknown"}; ${KEY_RULE}`);
}

const CURVES: Readonly<Record<string, string>> = {
  secp384r1: "P-384",
  secp521r1: "P-521",
  secp256k1: "secp256k1",
};

function checkSubject(subject: Attribute[][], id: string): void {
  const wanted = subjectAttributes("device", id);
  const same =
    subject.length === wanted.length &&
    subject.every((rdn, i) => {
      const [type, value] = wanted[i] ?? [];
      return rdn.length === 1 && rdn[0]?.type === type && rdn[0]?.value === value;
    });
  if (!same)
    throw bad(
      `the CSR's subject is "${formatSubject(subject)}", not the device subject "${subjectFor("device", id)}"`,
    );
}

const SHORT: Readonly<Record<string, string>> = { "2.5.4.10": "O", "2.5.4.11": "OU", "2.5.4.3": "CN" };

function formatSubject(subject: Attribute[][]): string {
  return subject
    .map((rdn) => rdn.map((a) => `${SHORT[a.type] ?? a.type}=${a.value ?? "(not a string)"}`).join(" + "))
    .join(", ");
}

// A DER reader just deep enough for the request's outer structure and its subject.

const INTEGER = 0x02;
const BIT_STRING = 0x03;
const OID = 0x06;
const UTF8_STRING = 0x0c;
const PRINTABLE_STRING = 0x13;
const IA5_STRING = 0x16;
const SEQUENCE = 0x30;
const SET = 0x31;

interface Tlv {
  tag: number;
  body: Uint8Array;
  end: number;
}

function readTlv(b: Uint8Array, at: number): Tlv {
  const tag = b[at];
  const first = b[at + 1];
  if (tag === undefined || first === undefined) throw new Error("truncated");
  if ((tag & 0x1f) === 0x1f) throw new Error("multi-byte tag");
  let len = first;
  let p = at + 2;
  if (first & 0x80) {
    const n = first & 0x7f;
    // 0x80 is BER's indefinite length; more than 4 length octets is no request a board sends.
    if (n === 0 || n > 4) throw new Error("unsupported length");
    len = 0;
    for (const byte of b.subarray(p, p + n)) len = len * 256 + byte;
    p += n;
    if (p > b.length) throw new Error("truncated");
  }
  if (p + len > b.length) throw new Error("truncated");
  return { tag, body: b.subarray(p, p + len), end: p + len };
}

function children(t: Tlv): Tlv[] {
  const out: Tlv[] = [];
  for (let at = 0; at < t.body.length; at = (out[out.length - 1] as Tlv).end) out.push(readTlv(t.body, at));
  return out;
}

function dotted(body: Uint8Array): string {
  const arcs: number[] = [];
  let n = 0;
  for (const byte of body) {
    n = n * 128 + (byte & 0x7f);
    if (!(byte & 0x80)) {
      arcs.push(n);
      n = 0;
    }
  }
  const first = arcs.shift();
  if (first === undefined) throw new Error("empty OID");
  const top = Math.min(Math.floor(first / 40), 2);
  return [top, first - top * 40, ...arcs].join(".");
}
