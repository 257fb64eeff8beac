/**
 * What a board needs to answer a key request on its downlink (trust-rotation.ts): a new key pair made where it
 * will be used, and a PKCS#10 CSR for its public key, so the private key never leaves the board. On the board
 * this is the mbedTLS module (firmware/native/key-request); the emulator makes the same two objects with
 * node:crypto. Synchronous: the handler writes the key into NVS before anything is published.
 */
export interface KeyMakerRequest {
  /** mbedTLS's DN string, first pair first (DER order): "O=Electrolyser Secure Telemetry,OU=devices,CN=dev-0001". */
  subject: string;
  /** RSA modulus size: 2048, 3072 or 4096. */
  bits: number;
}

export interface MadeKey {
  /** PKCS#8 DER of the new private key. Secret: stored in NVS, never published. */
  keyDer: ArrayBuffer;
  /** PKCS#10 DER, signed with the new key (SHA-256). */
  csrDer: ArrayBuffer;
}

export interface KeyMaker {
  generate(request: KeyMakerRequest): MadeKey;
}
