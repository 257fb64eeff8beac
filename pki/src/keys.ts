import { createPrivateKey, createPublicKey, generateKeyPair, type KeyObject } from "node:crypto";
import { subtle, type CryptoKey, type SigningAlgorithm } from "./x509";
import type { KeyType } from "./paths";

/** Key types the CA uses for itself besides the leaf types. */
export type CaKeyType = KeyType | "rsa-3072";

export interface KeyMaterial {
  type: CaKeyType;
  /** PKCS#8 DER private key. */
  pkcs8: Buffer;
  /** SubjectPublicKeyInfo DER. */
  spki: Buffer;
}

export const KEY_TYPES: readonly KeyType[] = ["rsa-2048", "p256"];

export function isKeyType(s: string): s is KeyType {
  return (KEY_TYPES as readonly string[]).includes(s);
}

/** One key from OpenSSL (node:crypto); runs on the libuv pool, so concurrent calls use every core. */
export function generateKey(type: CaKeyType): Promise<KeyMaterial> {
  return new Promise((resolve, reject) => {
    const done = (err: Error | null, spki: Buffer, pkcs8: Buffer): void => {
      if (err) reject(err);
      else resolve({ type, pkcs8, spki });
    };
    const enc = {
      publicKeyEncoding: { type: "spki", format: "der" },
      privateKeyEncoding: { type: "pkcs8", format: "der" },
    } as const;
    if (type === "p256") generateKeyPair("ec", { namedCurve: "P-256", ...enc }, done);
    else
      generateKeyPair(
        "rsa",
        { modulusLength: type === "rsa-3072" ? 3072 : 2048, publicExponent: 0x10001, ...enc },
        done,
      );
  });
}

export function pem(label: "CERTIFICATE" | "PRIVATE KEY" | "X509 CRL", der: Uint8Array): string {
  const b64 = Buffer.from(der).toString("base64");
  const lines = b64.match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${lines.join("\n")}\n-----END ${label}-----\n`;
}

/** Reads a PEM or DER private key and tells what it is; throws on anything that is not a key we issue. */
export function parsePrivateKey(data: Buffer | string): { object: KeyObject; material: KeyMaterial } {
  const object =
    typeof data === "string" || data.subarray(0, 5).toString() === "-----"
      ? createPrivateKey({ key: data, format: "pem" })
      : createPrivateKey({ key: data, format: "der", type: "pkcs8" });
  const type = keyTypeOf(object);
  return {
    object,
    material: {
      type,
      pkcs8: object.export({ type: "pkcs8", format: "der" }),
      spki: createPublicKey(object).export({ type: "spki", format: "der" }),
    },
  };
}

export function keyTypeOf(key: KeyObject): CaKeyType {
  const d = key.asymmetricKeyDetails;
  if (key.asymmetricKeyType === "rsa" && d?.modulusLength === 2048) return "rsa-2048";
  if (key.asymmetricKeyType === "rsa" && d?.modulusLength === 3072) return "rsa-3072";
  if (key.asymmetricKeyType === "ec" && d?.namedCurve === "prime256v1") return "p256";
  throw new Error(
    `unsupported key: ${key.asymmetricKeyType ?? "?"} ${d?.modulusLength ?? d?.namedCurve ?? ""}`,
  );
}

/** WebCrypto algorithm for signing with a key of this type: SHA-256 throughout, PKCS#1 v1.5 for RSA. */
export function signingAlgorithm(type: CaKeyType): SigningAlgorithm {
  return type === "p256"
    ? { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" }
    : { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" };
}

export function importSigningKey(k: KeyMaterial): Promise<CryptoKey> {
  return subtle.importKey("pkcs8", k.pkcs8, signingAlgorithm(k.type), false, ["sign"]);
}
