/**
 * AES-256-GCM as the envelope needs it, synchronous so the firmware's sampling loop and
 * the ingest's hot path stay simple. Node implements it with node:crypto
 * (host/src/crypto/node-aead.ts), the firmware with Moddable's crypt + gcm.
 */
export interface Aead {
  /** Returns ciphertext with the 16-byte tag appended. */
  seal(key: Uint8Array, nonce: Uint8Array, aad: Uint8Array, plaintext: Uint8Array): Uint8Array;
  /** Returns the plaintext, or null when the tag does not verify. */
  open(key: Uint8Array, nonce: Uint8Array, aad: Uint8Array, sealed: Uint8Array): Uint8Array | null;
}

export const AES_256_KEY_BYTES = 32;
export const GCM_NONCE_BYTES = 12;
export const GCM_TAG_BYTES = 16;
