/**
 * Binding of key-request-native.c. Throws TypeError/RangeError on a bad argument (before allocating anything),
 * Error naming the mbedTLS call and its code when mbedTLS fails. Blocks the caller for the whole generation.
 */
export interface NativeKeyRequestResult {
  /** PKCS#8 PrivateKeyInfo DER of the new RSA key: the caller wipes it once stored. */
  keyDer: ArrayBuffer;
  /** PKCS#10 CertificationRequest DER, SHA-256 with RSA, signed by the new key. */
  csrDer: ArrayBuffer;
}

export function generate(subject: string, bits: number): NativeKeyRequestResult;
