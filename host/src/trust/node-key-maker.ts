import { createPublicKey, generateKeyPairSync, sign, type KeyObject } from "node:crypto";
import type { KeyMaker, KeyMakerRequest, MadeKey } from "../../../firmware/src/identity/key-maker";
import { bitString, explicit, oid, seq, set, tlv, unsignedInteger } from "../../../pki/src/der";

/** The modulus sizes the board's mbedTLS key request accepts (firmware/native/key-request). */
const RSA_BITS: readonly number[] = [2048, 3072, 4096];

const NAME_OIDS: Readonly<Record<string, string>> = { O: "2.5.4.10", OU: "2.5.4.11", CN: "2.5.4.3" };

const SIGNATURE_OIDS = {
  rsa: { sha256: "1.2.840.113549.1.1.11", sha1: "1.2.840.113549.1.1.5" },
  ec: { sha256: "1.2.840.10045.4.3.2", sha1: "1.2.840.10045.4.1" },
} as const;

const UTF8_STRING = 0x0c;
const NULL = tlv(0x05);

/**
 * mbedTLS's subject string ("O=…,OU=…,CN=…", first pair first) as a DER Name. Only the attributes the PKI
 * puts in a subject are known, and escapes are refused rather than half-supported: a subject this cannot
 * encode exactly would give a CSR the CA refuses anyway, and later, with a less clear message.
 */
export function subjectName(subject: string): Uint8Array {
  if (subject.includes("\\")) throw new RangeError(`escaped characters are not supported in "${subject}"`);
  const rdns = subject.split(",").map((pair) => {
    const eq = pair.indexOf("=");
    const key = eq < 0 ? "" : pair.slice(0, eq).trimStart();
    const value = pair.slice(eq + 1);
    const type = NAME_OIDS[key];
    if (type === undefined)
      throw new RangeError(`unsupported subject attribute "${pair}" (use O, OU and CN) in "${subject}"`);
    if (value === "") throw new RangeError(`empty value for ${key} in "${subject}"`);
    return set(seq(oid(type), tlv(UTF8_STRING, new TextEncoder().encode(value))));
  });
  return seq(...rdns);
}

/**
 * A PKCS#10 request for `privateKey`'s public key, signed with it; no attributes (mbedTLS writes an empty
 * set). Exported beyond the KeyMaker so tests can make requests a board never would (weak keys, SHA-1) and
 * check that the CA refuses them.
 */
export function certificationRequest(
  subject: string,
  privateKey: KeyObject,
  hash: "sha256" | "sha1" = "sha256",
): Uint8Array {
  const kind = privateKey.asymmetricKeyType;
  if (kind !== "rsa" && kind !== "ec") throw new RangeError(`cannot sign a CSR with a ${kind ?? "?"} key`);
  const spki = createPublicKey(privateKey).export({ type: "spki", format: "der" });
  const info = seq(unsignedInteger(new Uint8Array([0])), subjectName(subject), spki, explicit(0));
  // RSA's AlgorithmIdentifier carries NULL parameters, ECDSA's none (RFC 4055 2.1, RFC 5758 3.2).
  const algorithm = seq(oid(SIGNATURE_OIDS[kind][hash]), ...(kind === "rsa" ? [NULL] : []));
  return seq(info, algorithm, bitString(sign(hash, info, privateKey)));
}

/** A copy in an ArrayBuffer of its own: a Buffer may be a view into Node's shared pool. */
const fresh = (bytes: Uint8Array): ArrayBuffer => new Uint8Array(bytes).buffer;

/** What an emulated board answers a key request with; the real board does the same with mbedTLS. */
export const nodeKeyMaker: KeyMaker = {
  generate(request: KeyMakerRequest): MadeKey {
    if (!RSA_BITS.includes(request.bits))
      throw new RangeError(`RSA key size must be ${RSA_BITS.join(", ")} bits, got ${request.bits}`);
    // Before the key: a bad subject should not cost a key generation.
    subjectName(request.subject);
    const { privateKey } = generateKeyPairSync("rsa", {
      modulusLength: request.bits,
      publicExponent: 0x10001,
    });
    return {
      keyDer: fresh(privateKey.export({ type: "pkcs8", format: "der" })),
      csrDer: fresh(certificationRequest(request.subject, privateKey)),
    };
  },
};
