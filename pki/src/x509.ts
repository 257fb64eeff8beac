// @peculiar/x509 resolves its services through tsyringe, which needs a Reflect metadata polyfill
// loaded before the library itself: importing x509 only through this module guarantees the order.
import "reflect-metadata";
import { webcrypto } from "node:crypto";
import * as x509 from "@peculiar/x509";

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

// The project compiles without the DOM lib, so WebCrypto types come from node:crypto.
export type CryptoKey = webcrypto.CryptoKey;
export type SigningAlgorithm =
  webcrypto.RsaHashedImportParams | (webcrypto.EcKeyImportParams & webcrypto.EcdsaParams);

export { x509 };
export const subtle = webcrypto.subtle;
