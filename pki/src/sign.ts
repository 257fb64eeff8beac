import { x509, type CryptoKey } from "./x509";
import { signingAlgorithm, type CaKeyType, type KeyMaterial } from "./keys";
import type { IdentityKind } from "./database";
import { clampToIssuer, profileExtensions, randomSerial, subjectFor, validityWindow } from "./profiles";

/** What signing needs from a CA: its certificate (for the issuer name and key id), its key and key type. */
export interface Signer {
  cert: x509.X509Certificate;
  key: CryptoKey;
  keyType: CaKeyType;
  /** Hex SubjectKeyIdentifier of the CA certificate, copied into the AuthorityKeyIdentifier of what it signs. */
  keyId: string;
  /** The CA's private key, for node:crypto signing in the bulk path. */
  material: KeyMaterial;
}

export interface CertRequest {
  kind: IdentityKind;
  name: string;
  keyType: CaKeyType;
  spki: Uint8Array;
  days: number;
  now: Date;
  hosts?: readonly string[];
  serial?: string;
  /** For tests of refusal paths: explicit validity instead of now/days. */
  notBefore?: Date;
  notAfter?: Date;
}

/** Issues a certificate; without a signer it is self-signed with `selfKey` (the root CA). */
export async function signCertificate(
  req: CertRequest,
  signer: Signer | { selfKey: CryptoKey },
): Promise<x509.X509Certificate> {
  const window = validityWindow(req.now, req.days);
  const subject = subjectFor(req.kind, req.name);
  const publicKey = toArrayBuffer(req.spki);
  const ski = await x509.SubjectKeyIdentifierExtension.create(publicKey);
  const extensions = [...profileExtensions(req.kind, req.keyType, req.hosts), ski];
  const issuedBy = "cert" in signer ? signer : undefined;
  if (issuedBy) extensions.push(new x509.AuthorityKeyIdentifierExtension(issuedBy.keyId));
  return x509.X509CertificateGenerator.create({
    serialNumber: req.serial ?? randomSerial(),
    subject,
    issuer: issuedBy ? issuedBy.cert.subjectName : subject,
    notBefore: req.notBefore ?? window.notBefore,
    notAfter: issuedBy
      ? clampToIssuer(req.notAfter ?? window.notAfter, issuedBy.cert.notAfter, req.now)
      : (req.notAfter ?? window.notAfter),
    publicKey,
    signingKey: issuedBy ? issuedBy.key : (signer as { selfKey: CryptoKey }).selfKey,
    signingAlgorithm: signingAlgorithm(issuedBy ? issuedBy.keyType : req.keyType),
    extensions,
  });
}

export function keyIdOf(cert: x509.X509Certificate): string {
  const ski = cert.getExtension(x509.SubjectKeyIdentifierExtension);
  if (!ski) throw new Error(`certificate ${cert.subject} has no subject key identifier`);
  return ski.keyId;
}

export function toArrayBuffer(u: Uint8Array): ArrayBuffer {
  return u.buffer.slice(u.byteOffset, u.byteOffset + u.byteLength) as ArrayBuffer;
}
