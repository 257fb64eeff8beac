import { generateKey, type KeyMaterial } from "./keys";
import type { KeyType } from "./paths";
import { generateRsaKeysInWorkers } from "./rsa-pool";

export type Progress = (done: number, total: number) => void;

/** "workers": RSA keys from rsa-pool.ts (the default, about 4x faster); "openssl": node:crypto generateKeyPair. */
export type RsaKeygen = "workers" | "openssl";

/**
 * `count` keys with every core busy. P-256 (and RSA with "openssl") use node:crypto's generateKeyPair,
 * which runs on the libuv pool (4 threads), so keeping a few more requests in flight than there are
 * threads is enough to use both cores.
 */
export async function generateKeys(
  type: KeyType,
  count: number,
  onProgress?: Progress,
  rsaKeygen: RsaKeygen = "workers",
): Promise<KeyMaterial[]> {
  if (type === "rsa-2048" && rsaKeygen === "workers") return generateRsaKeysInWorkers(count, onProgress);
  const out: KeyMaterial[] = new Array<KeyMaterial>(count);
  let next = 0;
  let done = 0;
  const inFlight = 8;
  const lane = async (): Promise<void> => {
    while (next < count) {
      const i = next++;
      out[i] = await generateKey(type);
      onProgress?.(++done, count);
    }
  };
  await Promise.all(Array.from({ length: Math.min(inFlight, count) }, lane));
  return out;
}
