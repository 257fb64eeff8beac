/**
 * Whether a PKCS#8 private key (RFC 5208 §5) belongs to a certificate's SubjectPublicKeyInfo (RFC 5280
 * §4.1.2.7), by comparing the public half each carries: an RSA key's modulus and public exponent
 * (RSAPrivateKey, RFC 8017 A.1.2, against RSAPublicKey A.1.1), an EC key's public point (ECPrivateKey's
 * `publicKey`, RFC 5915 §3, against the SPKI's BIT STRING). A board accepts a rotated identity only when this
 * holds: a mismatched pair would fail every TLS handshake. No arithmetic, only DER, so it runs under XS.
 * Throws DerError on malformed input.
 */
import { DerError, DerTag, children, expectTlv, readTlv, sameBytes } from "./der";
import type { Tlv } from "./der";

export type KeyMatch = "match" | "mismatch" | "unsupported";

const RSA_ENCRYPTION = Uint8Array.of(0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01);
const EC_PUBLIC_KEY = Uint8Array.of(0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01);

export function keyMatchesCertificate(spki: Uint8Array, pkcs8: Uint8Array): KeyMatch {
  const s = expectTlv(spki, 0, spki.length, DerTag.SEQUENCE, "SubjectPublicKeyInfo");
  const [sAlg, sKey] = children(spki, s);
  if (!sAlg || !sKey || sKey.tag !== DerTag.BIT_STRING || sKey.end <= sKey.valueStart)
    throw new DerError("SubjectPublicKeyInfo: wrong shape");
  const p = expectTlv(pkcs8, 0, pkcs8.length, DerTag.SEQUENCE, "PrivateKeyInfo");
  if (p.end !== pkcs8.length) throw new DerError("trailing bytes after the private key");
  const [, pAlg, pKey] = children(pkcs8, p);
  if (!pAlg || !pKey || pKey.tag !== DerTag.OCTET_STRING) throw new DerError("PrivateKeyInfo: wrong shape");
  // Same algorithm and parameters (for EC, the curve), byte for byte.
  if (!sameBytes(bytesOf(spki, sAlg), bytesOf(pkcs8, pAlg))) return "mismatch";
  const oid = children(spki, sAlg)[0];
  if (!oid) throw new DerError("AlgorithmIdentifier: empty");
  const algorithm = bytesOf(spki, oid);
  // The BIT STRING's first content octet counts unused bits; keys use whole octets.
  const publicBits = spki.subarray(sKey.valueStart + 1, sKey.end);

  if (sameBytes(algorithm, RSA_ENCRYPTION)) {
    const pub = expectTlv(publicBits, 0, publicBits.length, DerTag.SEQUENCE, "RSAPublicKey");
    const [n, e] = children(publicBits, pub);
    const priv = expectTlv(pkcs8, pKey.valueStart, pKey.end, DerTag.SEQUENCE, "RSAPrivateKey");
    const [, pn, pe] = children(pkcs8, priv);
    if (!n || !e || !pn || !pe) throw new DerError("RSA key: wrong shape");
    return sameBytes(bytesOf(publicBits, n), bytesOf(pkcs8, pn)) &&
      sameBytes(bytesOf(publicBits, e), bytesOf(pkcs8, pe))
      ? "match"
      : "mismatch";
  }
  if (sameBytes(algorithm, EC_PUBLIC_KEY)) {
    const priv = expectTlv(pkcs8, pKey.valueStart, pKey.end, DerTag.SEQUENCE, "ECPrivateKey");
    // [1] publicKey is optional in RFC 5915; without it there is nothing to compare short of curve arithmetic.
    const tagged = children(pkcs8, priv).find((c) => c.tag === 0xa1);
    if (!tagged) return "unsupported";
    const bits = readTlv(pkcs8, tagged.valueStart, tagged.end);
    if (bits.tag !== DerTag.BIT_STRING || bits.end <= bits.valueStart)
      throw new DerError("publicKey: not a BIT STRING");
    return sameBytes(publicBits, pkcs8.subarray(bits.valueStart + 1, bits.end)) ? "match" : "mismatch";
  }
  return "unsupported";
}

function bytesOf(bytes: Uint8Array, tlv: Tlv): Uint8Array {
  return bytes.subarray(tlv.start, tlv.end);
}
