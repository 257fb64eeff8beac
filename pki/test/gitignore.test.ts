import { execFile } from "node:child_process";
import { resolve } from "node:path";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";

const root = resolve(import.meta.dirname, "../..");

/** Which of these paths git would ignore (exit code 1 of check-ignore means "none"). */
async function ignored(paths: string[]): Promise<string[]> {
  try {
    const { stdout } = await promisify(execFile)("git", ["check-ignore", "--no-index", ...paths], {
      cwd: root,
    });
    return stdout.split("\n").filter((l) => l !== "");
  } catch (err) {
    if ((err as { code?: number }).code === 1) return [];
    throw err;
  }
}

describe("secrets and exported identities are git-ignored wherever they are written", () => {
  it("ignores exported DER keys and certificates, PEM, key files and .env anywhere in the tree", async () => {
    // `npm run pki -- export <id> --out DIR` writes key.der (the device's PKCS#8 private key) where the operator says.
    const paths = [
      "export/elx-0001/key.der",
      "export/elx-0001/cert.der",
      "firmware/key.der",
      "somewhere/key.pem",
      "x.key",
      ".env",
      ".state/anything",
    ];
    expect((await ignored(paths)).sort()).toEqual([...paths].sort());
  });
});
