import { createPublicKey, type KeyObject } from "node:crypto";
import { x509 } from "./x509";
import { PkiError } from "./errors";
import type { KeyType } from "./paths";
import { subjectAttributes, subjectFor } from "./profiles";
import { children, DerTag, oidString, readTlv, type Tlv } from "../../firmware/src/tls/der";

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
    if (outer.tag !== DerTag.SEQUENCE || outer.end !== der.length) throw new Error("not one DER SEQUENCE");
    const [info, algorithm, signature] = children(der, outer);
    const [version, subject] = info?.tag === DerTag.SEQUENCE ? children(der, info) : [];
    const [algorithmOid] = algorithm?.tag === DerTag.SEQUENCE ? children(der, algorithm) : [];
    if (
      version?.tag !== DerTag.INTEGER ||
      subject?.tag !== DerTag.SEQUENCE ||
      algorithmOid?.tag !== DerTag.OID ||
      signature?.tag !== DerTag.BIT_STRING
    )
      throw new Error("not a CertificationRequest");
    return {
      csr: new x509.Pkcs10CertificateRequest(der),
      signatureOid: oidString(der, algorithmOid),
      subject: children(der, subject).map((rdn) => {
        if (rdn.tag !== DerTag.SET) throw new Error("subject RDN is not a SET");
        return children(der, rdn).map((a) => attribute(der, a));
      }),
    };
  } catch (err) {
    throw bad(`not a DER PKCS#10 certificate request (${errorText(err)})`, err);
  }
}

function attribute(der: Uint8Array, t: Tlv): Attribute {
  const [type, value] = t.tag === DerTag.SEQUENCE ? children(der, t) : [];
  if (type?.tag !== DerTag.OID || value === undefined) throw new Error("malformed subject attribute");
  return {
    type: oidString(der, type),
    value: stringValue(der.subarray(value.valueStart, value.end), value.tag),
  };
}

/** The string types a DN value comes in from mbedTLS, OpenSSL and this PKI; anything else matches nothing. */
function stringValue(body: Uint8Array, tag: number): string | undefined {
  if (tag === UTF8_STRING) return new TextDecoder("utf-8", { fatal: true }).decode(body);
  if (tag === PRINTABLE_STRING || tag === IA5_STRING) return String.fromCharCode(...body);
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

// DER string types of a DN value (X.680); the structural tags are the firmware reader's (DerTag).
const UTF8_STRING = 0x0c;
const PRINTABLE_STRING = 0x13;
const IA5_STRING = 0x16;
