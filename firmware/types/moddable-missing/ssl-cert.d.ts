// The SDK ships no typings for its TLS certificate manager (modules/crypt/ssl/ssl_cert.js, which the
// firmware's manifest maps to "ssl/cert-sdk" and extends in ssl/certificate-manager.ts) nor for x509
// (modules/crypt/etc/x509.js). Reduced to what the firmware uses.
declare module "ssl/cert-sdk" {
  export interface SdkCertificateOptions {
    /** The trust anchor, DER. */
    certificate?: ArrayBuffer;
    clientCertificates?: ArrayBuffer[];
    clientKey?: ArrayBuffer;
    verify?: boolean;
  }
  export interface X509Decoded {
    tbs: ArrayBuffer;
    algo: object;
    sig: ArrayBuffer;
    spki: object;
  }
  export default class CertificateManager {
    constructor(options: SdkCertificateOptions);
    /** Called by the TLS handshake with the server's chain, leaf first; false or a throw refuses it. */
    verify(certs: (ArrayBuffer | Uint8Array)[], options: object): boolean;
    /** True when `x509`'s signature verifies under `spki`. */
    _verify(spki: object, x509: X509Decoded): boolean;
  }
}

declare module "x509" {
  import type { X509Decoded } from "ssl/cert-sdk";
  const X509: {
    decode(certificate: ArrayBuffer): X509Decoded;
    /** The public key of a certificate, in the form CertificateManager._verify takes. */
    decodeSPKI(certificate: ArrayBuffer): object;
  };
  export default X509;
}
