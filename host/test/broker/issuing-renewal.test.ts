/**
 * Issuing CA renewal under the same root, against Debian's Mosquitto with the fleet PKI (pki/src): after
 * `issuing-ca --renew` the broker serves a chain from the new issuing CA, a client that trusts only the root
 * (as boards do, root.der) accepts it, boards with certificates from the old and from the new issuing CA both
 * connect, and revocation refuses a board of either CA (each CA's CRL in the one crlfile).
 */
import { X509Certificate } from "node:crypto";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { connect } from "node:tls";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  ensureDevPki,
  issueDevice,
  renewIssuingCa,
  revokeDevice,
  refreshCrlIfDue,
  type PkiPaths,
} from "../../../pki/src/index";
import { splitCrls } from "../../../pki/src/crl";
import { x509 } from "../../../pki/src/x509";
import { startMosquitto, type MosquittoHandle } from "../../src/broker/mosquitto";
import { startBrokerCli, type BrokerCli } from "./helpers/broker-cli";
import { endClient, tryConnect, type Identity } from "./helpers/clients";

let dir: string;
let state: string;
let paths: PkiPaths;
let broker: MosquittoHandle | undefined;
let lateBroker: BrokerCli | undefined;
const DAY = 86_400_000;

async function identity(id: string): Promise<Identity> {
  const p = paths.device(id);
  return { certPem: await readFile(p.cert, "utf8"), keyPem: await readFile(p.key, "utf8") };
}

/** Connects as the board, trusting only the root (what a board has), and says whether the broker took it. */
async function boardConnects(id: string): Promise<boolean> {
  const r = await tryConnect({
    url: broker!.url,
    ca: await readFile(paths.root, "utf8"),
    identity: await identity(id),
    clientId: id,
    timeoutMs: 5000,
  });
  if (r.ok) await endClient(r.client);
  return r.ok;
}

/** The issuer of the certificate the broker presents. */
function servedIssuer(): Promise<string> {
  return readFile(paths.root, "utf8").then(
    (ca) =>
      new Promise<string>((resolve, reject) => {
        const sock = connect({ host: broker!.host, port: broker!.port, ca, servername: "localhost" });
        sock.once("secureConnect", () => {
          const leaf = sock.getPeerX509Certificate();
          sock.destroy();
          if (!leaf) reject(new Error("no peer certificate"));
          else resolve(leaf.issuer);
        });
        sock.once("error", reject);
      }),
  );
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "est-issuing-renewal-"));
  state = join(dir, "state");
  paths = await ensureDevPki({
    stateDir: state,
    devices: ["old-kept", "old-revoked"],
    services: ["ingest"],
    deviceKeyType: "p256",
  });
});

afterAll(async () => {
  await broker?.stop();
  await lateBroker?.stop();
  await rm(dir, { recursive: true, force: true });
});

describe("issuing CA renewal under the same root", () => {
  it("boards of the old and the new issuing CA connect; revocation refuses either; the root stays", async () => {
    const rootBefore = await readFile(paths.rootDer);
    const oldIssuing = new X509Certificate(await readFile(paths.issuing, "utf8"));
    const renewed = await renewIssuingCa({ stateDir: state });
    expect(renewed.stillValidFromPrevious).toBeGreaterThanOrEqual(4); // 2 devices, the ingest, the broker
    await issueDevice({ stateDir: state, id: "new-kept", keyType: "p256" });
    await issueDevice({ stateDir: state, id: "new-revoked", keyType: "p256" });

    const newIssuing = new X509Certificate(await readFile(paths.issuing, "utf8"));
    expect(newIssuing.subject).not.toBe(oldIssuing.subject);
    expect(newIssuing.checkIssued(new X509Certificate(rootBefore))).toBe(true);
    expect(await readFile(paths.rootDer)).toEqual(rootBefore);
    const deviceIssuer = async (id: string) =>
      new X509Certificate(await readFile(paths.device(id).cert, "utf8")).issuer;
    expect(await deviceIssuer("old-kept")).toBe(oldIssuing.subject);
    expect(await deviceIssuer("new-kept")).toBe(newIssuing.subject);

    broker = await startMosquitto({ pki: paths, dataDir: join(dir, "broker") });
    expect(await servedIssuer()).toBe(newIssuing.subject);
    for (const id of ["old-kept", "old-revoked", "new-kept", "new-revoked"])
      expect(await boardConnects(id), id).toBe(true);

    await revokeDevice(state, "old-revoked");
    await revokeDevice(state, "new-revoked");
    // Each revoked serial is on the CRL of the CA that issued it.
    const crls = splitCrls(await readFile(paths.crl, "utf8")).map((b) => new x509.X509Crl(b));
    expect(crls).toHaveLength(3); // new issuing, old issuing, root
    const serialOf = async (id: string) =>
      new X509Certificate(await readFile(paths.device(id).cert, "utf8")).serialNumber.toLowerCase();
    const onCrl = async (id: string): Promise<string[]> => {
      const serial = (await serialOf(id)).replace(/^0+/, "");
      return crls
        .filter((c) => c.entries.some((e) => e.serialNumber.toLowerCase().replace(/^0+/, "") === serial))
        .map((c) => c.issuer);
    };
    const nameOf = (c: X509Certificate) => new x509.X509Certificate(c.raw).subject;
    expect(await onCrl("old-revoked")).toEqual([nameOf(oldIssuing)]);
    expect(await onCrl("new-revoked")).toEqual([nameOf(newIssuing)]);

    await broker.restart(); // Mosquitto reads its crlfile at start (the CRL keeper does this in the stack)
    expect(await boardConnects("old-kept")).toBe(true);
    expect(await boardConnects("new-kept")).toBe(true);
    expect(await boardConnects("old-revoked")).toBe(false);
    expect(await boardConnects("new-revoked")).toBe(false);

    // The CRL keeper's re-signing keeps both issuing CAs' CRLs fresh: 61 days on, every CRL is re-signed.
    const later = new Date(Date.now() + 61 * DAY);
    expect(await refreshCrlIfDue(state, later)).toBe(true);
    const fresh = splitCrls(await readFile(paths.crl, "utf8")).map((b) => new x509.X509Crl(b));
    expect(fresh).toHaveLength(3);
    for (const c of fresh) expect(c.nextUpdate!.getTime()).toBeGreaterThan(later.getTime() + 60 * DAY);
  });

  it("`npm run broker` started 100 days after a renewal admits boards of both issuing CAs (both CRLs re-signed)", async () => {
    const late = join(dir, "late");
    const p = await ensureDevPki({
      stateDir: late,
      devices: ["late-old"],
      services: ["ingest"],
      deviceKeyType: "p256",
    });
    await renewIssuingCa({ stateDir: late });
    await issueDevice({ stateDir: late, id: "late-new", keyType: "p256" });
    const before = splitCrls(await readFile(p.crl, "utf8")).map((b) => new x509.X509Crl(b));
    expect(before).toHaveLength(3);
    lateBroker = await startBrokerCli({ stateDir: late, dataDir: join(late, "data"), fakeDays: 100 });
    for (const id of ["late-old", "late-new"]) {
      const r = await tryConnect({
        url: lateBroker.url,
        ca: await readFile(p.root, "utf8"),
        identity: {
          certPem: await readFile(p.device(id).cert, "utf8"),
          keyPem: await readFile(p.device(id).key, "utf8"),
        },
        clientId: id,
      });
      expect(r.ok ? "connected" : r.error, id).toBe("connected");
      if (r.ok) await endClient(r.client);
    }
    // Every CRL (new issuing, old issuing, root) re-signed on the broker's shifted clock.
    const after = splitCrls(await readFile(p.crl, "utf8")).map((b) => new x509.X509Crl(b));
    expect(after).toHaveLength(3);
    for (const c of after) expect(c.thisUpdate.getTime()).toBeGreaterThan(Date.now() + 99 * DAY);
  });
});
