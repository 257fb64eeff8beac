// The SDK's typings/crypt.d.ts declares only Digest; these are the other classes
// modules/crypt/digest/crypt.js exports. Merges with the SDK's declaration in a Moddable build.
declare module "crypt" {
  export type BlockCipherName = "AES" | "DES" | "TDES";

  export class BlockCipher {
    constructor(cipher: BlockCipherName, key: ArrayBuffer);
    encrypt(data: ArrayBuffer, result?: ArrayBuffer): ArrayBuffer;
    decrypt(data: ArrayBuffer, result?: ArrayBuffer): ArrayBuffer;
    readonly keySize: number;
    readonly blockSize: number;
  }

  export class Mode {
    constructor(mode: "ECB" | "CBC" | "CTR", cipher: BlockCipher, iv?: ArrayBuffer, pad?: boolean);
    encrypt(data: ArrayBuffer | ArrayBufferView, result?: ArrayBuffer, count?: number): ArrayBuffer;
    decrypt(data: ArrayBuffer | ArrayBufferView, result?: ArrayBuffer, count?: number): ArrayBuffer;
    setIV(iv: ArrayBuffer): void;
  }
}
