// The bulk device-certificate encoder must produce exactly what @peculiar/x509 produces for the same
// inputs, so the fast path cannot drift from the library the rest of the PKI uses.
import { AsnConvert } from "@peculiar/asn1-schema";
import { Certificate } from "@peculiar/asn1-x509";
import { X509Certificate } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildTbs, issueLeaf, leafTemplate } from "../src/bulk-leaf";
import { createCa, loadCa, type LoadedCa } from "../src/ca";
import { generateKey, type KeyMaterial } from "../src/keys";
import { signCertificate } from "../src/sign";
import { removeDir, tempStateDir } from "./helpers";

let dir: string;
let ca: LoadedCa;
let keys: Record<"p256" | "rsa-2048", KeyMaterial>;

beforeAll(async () => {
  dir = await tempStateDir();
  // Leaves end no later than their issuer: the cases below issue up to 2050 (GeneralizedTime).
  await createCa(dir, { rootDays: 40 * 365, issuingDays: 30 * 365 });
  ca = await loadCa(dir);
  keys = { p256: await generateKey("p256"), "rsa-2048": await generateKey("rsa-2048") };
});
afterAll(() => removeDir(dir));

describe("bulk device certificates", () => {
  // Names with '_' need UTF8String, others PrintableString; 2050+ needs GeneralizedTime.
  const cases = [
    { keyType: "p256", name: "dev-0001", now: "2026-11-26T08:00:00.123Z", days: 1095 },
    { keyType: "rsa-2048", name: "Site_A.board-7", now: "2031-02-03T04:05:06.789Z", days: 9000 },
    { keyType: "p256", name: "x", now: "2049-12-31T23:59:59.999Z", days: 1 },
  ] as const;

  for (const c of cases) {
    it(`encodes the TBS byte for byte like @peculiar/x509 (${c.keyType}, ${c.name}, ${c.now.slice(0, 4)} + ${c.days} d)`, async () => {
      const key = keys[c.keyType];
      const now = new Date(c.now);
      const serial = "5f0e1d2c3b4a59687766554433221100";
      const reference = await signCertificate(
        { kind: "device", name: c.name, keyType: c.keyType, spki: key.spki, days: c.days, now, serial },
        ca.issuing,
      );
      const referenceTbs = Buffer.from(
        AsnConvert.serialize(AsnConvert.parse(reference.rawData, Certificate).tbsCertificate),
      );
      const tbs = buildTbs(leafTemplate(ca.issuing, c.keyType), {
        serial,
        notBefore: reference.notBefore,
        notAfter: reference.notAfter,
        name: c.name,
        spki: key.spki,
      });
      expect(Buffer.from(tbs).toString("hex")).toBe(referenceTbs.toString("hex"));
    });
  }

  it("signs certificates the issuing CA's key verifies, with the requested validity", async () => {
    const now = new Date();
    const leaf = await issueLeaf(leafTemplate(ca.issuing, "p256"), {
      name: "dev-9",
      spki: keys.p256.spki,
      now,
      days: 30,
    });
    const cert = new X509Certificate(Buffer.from(leaf.der));
    const issuing = new X509Certificate(Buffer.from(ca.issuing.cert.rawData));
    expect(cert.verify(issuing.publicKey)).toBe(true);
    expect(cert.checkIssued(issuing)).toBe(true);
    expect(cert.serialNumber.toLowerCase()).toBe(leaf.serial);
    expect(new Date(cert.validTo).getTime()).toBe(leaf.notAfter.getTime());
    expect(leaf.notAfter.getTime() - now.getTime()).toBeGreaterThan(30 * 86_400_000 - 1000);
    expect(cert.publicKey.export({ type: "spki", format: "der" }).equals(keys.p256.spki)).toBe(true);
  });
});
