/**
 * KeyRequest: an RSA key and a PKCS#10 CSR made on the board (mbedTLS, key-request-native.c), so the private key
 * never leaves it. Moddable has no key generation or CSR of its own.
 *
 *   const request = new KeyRequest({ subject: "O=Electrolyser Secure Telemetry,OU=devices,CN=dev-0001" });
 *   const { keyDer, csrDer } = request.generate();   // PKCS#8 DER, CSR DER; blocks for the generation
 *   // store keyDer (NVS), then wipe it: new Uint8Array(keyDer).fill(0)
 *
 * Options are checked before the native code runs (checkKeyRequestOptions): TypeError or RangeError, never an
 * XS abort. An mbedTLS failure is an Error naming the call and its code. The generation blocks the XS thread
 * (on the Linux simulator it takes a fraction of a second; on an ESP32 several seconds, not measured here).
 */
import { generate } from "./key-request-native";
import { checkKeyRequestOptions } from "./key-request-options";
import type { CheckedKeyRequestOptions, KeyRequestOptions } from "./key-request-options";

export type { KeyRequestOptions } from "./key-request-options";

export interface KeyRequestResult {
  keyDer: ArrayBuffer;
  csrDer: ArrayBuffer;
}

export default class KeyRequest {
  readonly #options: CheckedKeyRequestOptions;

  constructor(options: KeyRequestOptions) {
    this.#options = checkKeyRequestOptions(options);
  }

  get subject(): string {
    return this.#options.subject;
  }

  get bits(): number {
    return this.#options.bits;
  }

  generate(): KeyRequestResult {
    const { keyDer, csrDer } = generate(this.#options.subject, this.#options.bits);
    return { keyDer, csrDer };
  }
}
