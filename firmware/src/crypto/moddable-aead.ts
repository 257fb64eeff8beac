// The envelope's AES-256-GCM on XS: Moddable's `crypt` BlockCipher("AES") under its `gcm` module.
// The two constructors are handed in (firmware/main.ts imports them) so that this module imports no
// Moddable module and type-checks and loads anywhere; only running it needs XS.
//
// Shapes as modules/crypt/etc/gcm.js uses them: the IV and AAD must be ArrayBuffers (it calls
// ArrayBuffer.prototype.concat, a Moddable extension); encrypting returns ciphertext || tag as an
// ArrayBuffer; decrypting takes a Uint8Array (it calls subarray) and returns undefined on a bad tag.
import type { Aead } from "../envelope/aead";
import { AES_256_KEY_BYTES, GCM_NONCE_BYTES, GCM_TAG_BYTES } from "../envelope/aead";

/** C is the SDK's BlockCipher instance type: the adapter only passes it from one class to the other. */
export type ModdableBlockCipherConstructor<C extends object> = new (algorithm: "AES", key: ArrayBuffer) => C;

export interface ModdableGcm {
  process(
    data: ArrayBuffer | Uint8Array,
    buffer: undefined,
    iv: ArrayBuffer,
    aad: ArrayBuffer,
    encrypt: boolean,
  ): ArrayBuffer | Uint8Array | undefined;
}

export type ModdableGcmConstructor<C extends object> = new (cipher: C, tagLength?: number) => ModdableGcm;

export interface ModdableAeadOptions<C extends object> {
  BlockCipher: ModdableBlockCipherConstructor<C>;
  GCM: ModdableGcmConstructor<C>;
}

function copyBuffer(bytes: Uint8Array): ArrayBuffer {
  return bytes.slice().buffer as ArrayBuffer;
}

function asBytes(result: ArrayBuffer | Uint8Array): Uint8Array {
  return result instanceof Uint8Array ? result.slice() : new Uint8Array(result);
}

export default class ModdableAead<C extends object> implements Aead {
  readonly #BlockCipher: ModdableBlockCipherConstructor<C>;
  readonly #GCM: ModdableGcmConstructor<C>;

  constructor(options: ModdableAeadOptions<C>) {
    this.#BlockCipher = options.BlockCipher;
    this.#GCM = options.GCM;
  }

  seal(key: Uint8Array, nonce: Uint8Array, aad: Uint8Array, plaintext: Uint8Array): Uint8Array {
    const gcm = this.#gcm(key, nonce);
    const out = gcm.process(copyBuffer(plaintext), undefined, copyBuffer(nonce), copyBuffer(aad), true);
    if (!out) throw new Error("AES-GCM produced no output");
    const sealed = asBytes(out);
    if (sealed.length !== plaintext.length + GCM_TAG_BYTES)
      throw new Error("AES-GCM output has the wrong length");
    return sealed;
  }

  open(key: Uint8Array, nonce: Uint8Array, aad: Uint8Array, sealed: Uint8Array): Uint8Array | null {
    if (sealed.length < GCM_TAG_BYTES) return null;
    const gcm = this.#gcm(key, nonce);
    const out = gcm.process(sealed.slice(), undefined, copyBuffer(nonce), copyBuffer(aad), false);
    if (!out) return null;
    const plaintext = asBytes(out);
    return plaintext.length === sealed.length - GCM_TAG_BYTES ? plaintext : null;
  }

  #gcm(key: Uint8Array, nonce: Uint8Array): ModdableGcm {
    if (key.length !== AES_256_KEY_BYTES)
      throw new RangeError(`AES-256 key must be ${AES_256_KEY_BYTES} bytes`);
    // gcm.js hashes an IV of any other length into a different counter block: only 12 bytes match the envelope.
    if (nonce.length !== GCM_NONCE_BYTES) throw new RangeError(`GCM nonce must be ${GCM_NONCE_BYTES} bytes`);
    return new this.#GCM(new this.#BlockCipher("AES", copyBuffer(key)), GCM_TAG_BYTES);
  }
}
