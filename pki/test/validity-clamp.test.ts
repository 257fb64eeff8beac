// No leaf outlives its issuer: with an issuing CA that has a year left, a 3-year device certificate (bulk
// path), a service and a broker certificate (@peculiar/x509 path) all end when the issuing CA does.
import { readFile } from "node:fs/promises";
import { afterAll, beforeAll, expect, it } from "vitest";
import { x509 } from "../src/x509";
import { createCa, issueBroker, issueDevices, issueService, pkiPaths, rotateDevice } from "../src/index";
import { removeDir, tempStateDir } from "./helpers";

const DAY = 86_400_000;
let dir: string;
let issuingEnd: number;

const certOf = async (path: string): Promise<x509.X509Certificate> =>
  new x509.X509Certificate(await readFile(path, "utf8"));

beforeAll(async () => {
  dir = await tempStateDir();
  await createCa(dir, { issuingDays: 365 });
  issuingEnd = (await certOf(pkiPaths(dir).issuing)).notAfter.getTime();
});

afterAll(async () => {
  await removeDir(dir);
});

it("clamps device, rotated, service and broker certificates to the issuing CA's notAfter", async () => {
  const p = pkiPaths(dir);
  const [dev] = (await issueDevices({ stateDir: dir, ids: ["clamp-1"], keyType: "p256" })).issued;
  const rotated = await rotateDevice({ stateDir: dir, id: "clamp-1", keyType: "p256", days: 1000 });
  const svc = await issueService({ stateDir: dir, name: "ingest" });
  const brk = await issueBroker({ stateDir: dir });
  for (const r of [dev, rotated, svc, brk]) expect(r?.notAfter.getTime()).toBe(issuingEnd);
  for (const path of [p.device("clamp-1").cert, p.service("ingest").cert, p.broker.cert])
    expect((await certOf(path)).notAfter.getTime()).toBe(issuingEnd);
});

it("keeps a shorter validity as asked", async () => {
  const [dev] = (await issueDevices({ stateDir: dir, ids: ["clamp-2"], keyType: "p256", days: 30 })).issued;
  expect(dev?.notAfter.getTime()).toBeLessThan(issuingEnd - 300 * DAY);
});

it("refuses to issue under an issuing CA that has expired", async () => {
  await expect(
    issueDevices({ stateDir: dir, ids: ["clamp-3"], keyType: "p256", now: new Date(issuingEnd + DAY) }),
  ).rejects.toThrow(/the issuing CA expired on/);
});
