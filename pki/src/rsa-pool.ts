import { availableParallelism } from "node:os";
import { Worker } from "node:worker_threads";
import type { KeyMaterial } from "./keys";
import type { Progress } from "./keygen";

/**
 * RSA-2048 keys from worker threads, one per core. OpenSSL 3's own RSA key generation (node:crypto
 * generateKeyPair, already spread over the libuv pool) spends about 150 ms of CPU per key on this
 * machine kind, mostly in 64 Miller-Rabin rounds per prime; FIPS 186-5 asks for 5. With the same
 * OpenSSL arithmetic and the standard's round count a key costs about a quarter of that, which is
 * what brings 1000 keys under 30 s on two cores. The worker (rsa-keygen.worker.mjs) checks every
 * key with a signature before returning it.
 */
export async function generateRsaKeysInWorkers(
  count: number,
  onProgress?: Progress,
  threads = availableParallelism(),
): Promise<KeyMaterial[]> {
  if (count === 0) return [];
  const out = new Array<KeyMaterial>(count);
  const width = Math.max(1, Math.min(threads, count));
  const workers = Array.from(
    { length: width },
    () => new Worker(new URL("./rsa-keygen.worker.mjs", import.meta.url)),
  );
  let next = 0;
  let done = 0;
  try {
    await Promise.all(
      workers.map(
        (w) =>
          new Promise<void>((resolve, reject) => {
            const ask = (): void => {
              if (next >= count) return resolve();
              w.postMessage({ id: next++ });
            };
            w.on("message", (m: { id: number; pkcs8?: ArrayBuffer; spki?: ArrayBuffer; error?: string }) => {
              if (m.error || !m.pkcs8 || !m.spki)
                return reject(new Error(`RSA key generation failed: ${m.error ?? "no key"}`));
              out[m.id] = { type: "rsa-2048", pkcs8: Buffer.from(m.pkcs8), spki: Buffer.from(m.spki) };
              onProgress?.(++done, count);
              ask();
            });
            w.on("error", reject);
            w.on("exit", (code) => {
              if (next < count || done < count) reject(new Error(`RSA key worker exited (code ${code})`));
            });
            ask();
          }),
      ),
    );
  } finally {
    await Promise.all(workers.map((w) => w.terminate()));
  }
  return out;
}
