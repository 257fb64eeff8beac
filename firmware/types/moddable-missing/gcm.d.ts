// modules/crypt/etc/gcm.js: AES-GCM over a crypt BlockCipher. The SDK ships no typings for it.
declare module "gcm" {
  import type { BlockCipher } from "crypt";

  export default class GCM {
    constructor(cipher: BlockCipher, tagLength?: number);
    /**
     * encrypt true: returns ciphertext || tag (ArrayBuffer). iv and aad must be ArrayBuffers.
     * encrypt false: data must be a Uint8Array of ciphertext || tag; returns the plaintext, or
     * undefined when the tag does not verify.
     */
    process(
      data: ArrayBuffer | Uint8Array,
      buffer: undefined,
      iv: ArrayBuffer,
      aad: ArrayBuffer,
      encrypt: boolean,
    ): ArrayBuffer | undefined;
  }
}
