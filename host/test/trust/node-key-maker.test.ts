// The emulated board's key request against the real OpenSSL: what nodeKeyMaker builds by hand must be a
// PKCS#10 request any CA tool accepts, for the key it returns, with the subject it was asked for.
import { createPrivateKey, createPublicKey } from "node:crypto";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { nodeKeyMaker } from "../../src/trust/node-key-maker";
import { removeDir, tempStateDir, tool } from "../../../pki/test/helpers";

const SUBJECT = "O=Electrolyser Secure Telemetry,OU=devices,CN=dev-0001";

let dir: string;

beforeAll(async () => {
  dir = await tempStateDir();
});

afterAll(async () => {
  await removeDir(dir);
});

async function csrFile(csrDer: ArrayBuffer, name: string): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, new Uint8Array(csrDer));
  return path;
}

const spkiOf = (keyDer: ArrayBuffer): Buffer =>
  createPublicKey(createPrivateKey({ key: Buffer.from(keyDer), format: "der", type: "pkcs8" })).export({
    type: "spki",
    format: "der",
  });

describe("nodeKeyMaker", () => {
  it("makes a CSR that OpenSSL verifies, with the subject asked for and the key returned", async () => {
    const made = nodeKeyMaker.generate({ subject: SUBJECT, bits: 2048 });
    const file = await csrFile(made.csrDer, "dev-0001.csr.der");

    const checked = await tool("openssl", [
      "req",
      "-inform",
      "DER",
      "-in",
      file,
      "-verify",
      "-noout",
      "-subject",
    ]);
    expect(checked.stdout + checked.stderr).toMatch(/verify OK/);
    expect(checked.stdout.trim()).toBe(
      "subject=O = Electrolyser Secure Telemetry, OU = devices, CN = dev-0001",
    );

    const pub = await tool("openssl", ["req", "-inform", "DER", "-in", file, "-pubkey", "-noout"]);
    expect(createPublicKey(pub.stdout).export({ type: "spki", format: "der" })).toEqual(spkiOf(made.keyDer));

    const key = createPrivateKey({ key: Buffer.from(made.keyDer), format: "der", type: "pkcs8" });
    expect(key.asymmetricKeyType).toBe("rsa");
    expect(key.asymmetricKeyDetails).toMatchObject({ modulusLength: 2048, publicExponent: 0x10001n });

    // What mbedTLS writes too: version 0, no attributes (an empty [0] set), sha256WithRSAEncryption.
    const text = await tool("openssl", ["req", "-inform", "DER", "-in", file, "-noout", "-text"]);
    expect(text.stdout).toMatch(/Version: 1 \(0x0\)/);
    expect(text.stdout).toMatch(/Attributes:\s+\(none\)/);
    expect(text.stdout).toMatch(/Signature Algorithm: sha256WithRSAEncryption/);
  });

  it("returns ArrayBuffers of their own, not views into a shared pool", () => {
    const made = nodeKeyMaker.generate({ subject: SUBJECT, bits: 2048 });
    for (const b of [made.keyDer, made.csrDer]) {
      expect(b).toBeInstanceOf(ArrayBuffer);
      // A DER object fills its buffer exactly: the outer SEQUENCE's length covers every byte.
      const bytes = new Uint8Array(b);
      expect(bytes[0]).toBe(0x30);
      expect(bytes[1]).toBe(0x82);
      expect(((bytes[2] ?? 0) << 8) + (bytes[3] ?? 0) + 4).toBe(b.byteLength);
    }
  });

  it("gives a new key on every call", () => {
    const a = nodeKeyMaker.generate({ subject: SUBJECT, bits: 2048 });
    const b = nodeKeyMaker.generate({ subject: SUBJECT, bits: 2048 });
    expect(spkiOf(a.keyDer)).not.toEqual(spkiOf(b.keyDer));
    expect(Buffer.from(a.csrDer)).not.toEqual(Buffer.from(b.csrDer));
  });

  it("makes the larger key sizes a board may be asked for", async () => {
    const made = nodeKeyMaker.generate({ subject: "CN=dev-0002", bits: 3072 });
    const file = await csrFile(made.csrDer, "dev-0002.csr.der");
    const checked = await tool("openssl", [
      "req",
      "-inform",
      "DER",
      "-in",
      file,
      "-verify",
      "-noout",
      "-subject",
    ]);
    expect(checked.stdout.trim()).toBe("subject=CN = dev-0002");
    const key = createPrivateKey({ key: Buffer.from(made.keyDer), format: "der", type: "pkcs8" });
    expect(key.asymmetricKeyDetails?.modulusLength).toBe(3072);
  });

  it("refuses subjects it cannot encode exactly", () => {
    for (const subject of [
      "C=DE,O=Electrolyser Secure Telemetry,CN=dev-0001",
      "O=Electrolyser Secure Telemetry,OU=devices,CN=",
      "CN=dev\\,0001",
      "CN",
      "",
      "cn=dev-0001",
    ])
      expect(() => nodeKeyMaker.generate({ subject, bits: 2048 }), subject).toThrow(RangeError);
  });

  it("refuses key sizes other than 2048, 3072 and 4096 bits", () => {
    for (const bits of [1024, 2047, 2049, 8192, 0, Number.NaN])
      expect(() => nodeKeyMaker.generate({ subject: SUBJECT, bits }), String(bits)).toThrow(
        /RSA key size must be 2048, 3072, 4096 bits/,
      );
  });
});
