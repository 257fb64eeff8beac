import { join } from "node:path";

export type KeyType = "rsa-2048" | "p256";

/** PEM paths; DER (certificate, PKCS#8 key) for devices, which the firmware and its NVS image use. */
export interface IdentityPaths {
  cert: string;
  key: string;
  certDer?: string;
  keyDer?: string;
}

export interface PkiPaths {
  /** Root CA certificate (PEM): the trust anchor. */
  root: string;
  /** Issuing + root CA certificates (PEM): what clients and the broker trust. */
  caBundle: string;
  /** Issuing CRL + root CRL (PEM): always exists once the CA does, possibly with no entries. */
  crl: string;
  /** The same two CRLs one per file (issuing CA's, root CA's), for tools that read one CRL per file. */
  crlIssuing: string;
  crlRoot: string;
  /** Revoked serials with their identities, and the identities with no valid certificate left (JSON), for the broker. */
  revocations: string;
  broker: IdentityPaths;
  service(name: string): IdentityPaths;
  device(id: string): IdentityPaths;
  /** `<stateDir>/pki` */
  dir: string;
  /** Safe to mount into services: CA certificates and CRLs only. */
  publicDir: string;
  /** Never mounted anywhere: CA keys and the issuance database. */
  caPrivateDir: string;
  /** Issuing CA certificate (PEM). */
  issuing: string;
  /** Root and issuing CA certificates in DER, for the firmware's trust store. */
  rootDer: string;
  issuingDer: string;
  rootKey: string;
  issuingKey: string;
  /**
   * Issuing CAs replaced by `issuing-ca --renew`, kept while certificates they issued may still be in use:
   * `<serial>.pem` and `<serial>.crl.pem` here (public), `<serial>.key.pem` in previousIssuingKeyDir.
   */
  previousIssuingDir: string;
  previousIssuingKeyDir: string;
  /** The CA's record of every certificate it issued and revoked (JSON). */
  database: string;
  servicesDir: string;
  devicesDir: string;
}

/**
 * The layout of `<stateDir>/pki/`, split by who may read it, so docker-compose can mount
 * `public/` and `broker/` into the broker and nothing else:
 *   ca-private/  root + issuing CA keys, database.json, issuing-previous/<serial>.key.pem   (0700, never mounted)
 *   public/      root.pem, issuing.pem, ca-bundle.pem, crl.pem (= crl-issuing.pem + crl-root.pem), root.der, issuing.der,
 *                revocations.json; issuing-previous/<serial>.pem, <serial>.crl.pem after an issuing CA renewal
 *                (their CRLs are in crl.pem too, their certificates in ca-bundle.pem)
 *   broker/      cert.pem (leaf + issuing CA), key.pem
 *   services/<name>/cert.pem, key.pem
 *   devices/<id>/cert.pem, key.pem, cert.der, key.der (PKCS#8)
 */
export function pkiPaths(stateDir: string): PkiPaths {
  const dir = join(stateDir, "pki");
  const publicDir = join(dir, "public");
  const caPrivateDir = join(dir, "ca-private");
  const servicesDir = join(dir, "services");
  const devicesDir = join(dir, "devices");
  const identity = (d: string, der: boolean): IdentityPaths => ({
    cert: join(d, "cert.pem"),
    key: join(d, "key.pem"),
    ...(der ? { certDer: join(d, "cert.der"), keyDer: join(d, "key.der") } : {}),
  });
  return {
    dir,
    publicDir,
    caPrivateDir,
    servicesDir,
    devicesDir,
    root: join(publicDir, "root.pem"),
    issuing: join(publicDir, "issuing.pem"),
    rootDer: join(publicDir, "root.der"),
    issuingDer: join(publicDir, "issuing.der"),
    caBundle: join(publicDir, "ca-bundle.pem"),
    crl: join(publicDir, "crl.pem"),
    crlIssuing: join(publicDir, "crl-issuing.pem"),
    crlRoot: join(publicDir, "crl-root.pem"),
    revocations: join(publicDir, "revocations.json"),
    rootKey: join(caPrivateDir, "root.key.pem"),
    issuingKey: join(caPrivateDir, "issuing.key.pem"),
    previousIssuingDir: join(publicDir, "issuing-previous"),
    previousIssuingKeyDir: join(caPrivateDir, "issuing-previous"),
    database: join(caPrivateDir, "database.json"),
    broker: identity(join(dir, "broker"), false),
    service: (name) => identity(join(servicesDir, name), false),
    device: (id) => identity(join(devicesDir, id), true),
  };
}
