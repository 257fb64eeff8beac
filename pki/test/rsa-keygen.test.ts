// The worker-thread RSA generator must give keys OpenSSL itself considers valid, of the right shape.
import {
  createPrivateKey,
  createPublicKey,
  publicEncrypt,
  privateDecrypt,
  constants,
  randomBytes,
} from "node:crypto";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generateRsaKeysInWorkers } from "../src/rsa-pool";
import type { KeyMaterial } from "../src/keys";
import { removeDir, tempStateDir, tool } from "./helpers";

let dir: string;
let keys: KeyMaterial[];
const progress: [number, number][] = [];

beforeAll(async () => {
  dir = await tempStateDir();
  keys = await generateRsaKeysInWorkers(4, (done, total) => progress.push([done, total]), 2);
});
afterAll(() => removeDir(dir));

describe("RSA-2048 keys from worker threads", () => {
  it("reports progress for every key", () => {
    expect(progress).toEqual([
      [1, 4],
      [2, 4],
      [3, 4],
      [4, 4],
    ]);
  });

  it("passes openssl pkey -check (primes, CRT values, d) and has the standard shape", async () => {
    for (const [i, k] of keys.entries()) {
      const path = join(dir, `k${i}.der`);
      await writeFile(path, k.pkcs8, { mode: 0o600 });
      const check = await tool("openssl", ["pkey", "-inform", "DER", "-in", path, "-noout", "-check"]);
      expect(check.stdout + check.stderr).toContain("Key is valid");
      const text = await tool("openssl", ["pkey", "-inform", "DER", "-in", path, "-noout", "-text"]);
      expect(text.stdout).toContain("Private-Key: (2048 bit, 2 primes)");
      expect(text.stdout).toContain("publicExponent: 65537 (0x10001)");
      const key = createPrivateKey({ key: k.pkcs8, format: "der", type: "pkcs8" });
      expect(createPublicKey(key).export({ type: "spki", format: "der" }).equals(k.spki)).toBe(true);
    }
  });

  it("gives distinct moduli that encrypt and decrypt", () => {
    const moduli = new Set(
      keys.map(
        (k) => createPublicKey({ key: k.spki, format: "der", type: "spki" }).export({ format: "jwk" }).n,
      ),
    );
    expect(moduli.size).toBe(keys.length);
    const msg = randomBytes(32);
    for (const k of keys) {
      const pub = createPublicKey({ key: k.spki, format: "der", type: "spki" });
      const priv = createPrivateKey({ key: k.pkcs8, format: "der", type: "pkcs8" });
      const ct = publicEncrypt(
        { key: pub, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: "sha256" },
        msg,
      );
      expect(
        privateDecrypt(
          { key: priv, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: "sha256" },
          ct,
        ).equals(msg),
      ).toBe(true);
    }
  });
});
