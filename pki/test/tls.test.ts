// A Node TLS server configured like the broker (client certificates required, CA bundle, CRL) must
// accept the fleet's identities and refuse everything else, for TLS 1.3 and for the firmware's TLS 1.2 suite.
import { readFile } from "node:fs/promises";
import { connect, createServer, type Server, type TLSSocket } from "node:tls";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  ensureDevPki,
  issueDevices,
  pkiPaths as pkiPathsOf,
  revokeDevice,
  splitCrls,
  type PkiPaths,
} from "../src/index";
import { removeDir, tempStateDir } from "./helpers";

interface Identity {
  cert: Buffer;
  key: Buffer;
}

let dir: string;
let otherDir: string;
let paths: PkiPaths;
const read = (p: string): Promise<Buffer> => readFile(p);
const identity = async (p: { cert: string; key: string }): Promise<Identity> => ({
  cert: await read(p.cert),
  key: await read(p.key),
});

/**
 * A server that requires client certificates and greets every client it accepts. Node drops a refused
 * client without telling why, so `audit: true` makes a twin that verifies identically but lets the
 * client in and greets it with OpenSSL's verdict instead.
 */
async function startServer(o: {
  cert: Buffer;
  key: Buffer;
  ca: Buffer;
  crl?: string[];
  audit?: boolean;
}): Promise<{ server: Server; port: number }> {
  const { audit, ...tlsOptions } = o;
  const server = createServer({ ...tlsOptions, requestCert: true, rejectUnauthorized: !audit }, (socket) =>
    socket.end(
      audit
        ? `hello ${socket.authorized ? "authorized" : `refused ${String(socket.authorizationError)}`}\n`
        : "hello\n",
    ),
  );
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { server, port: (server.address() as AddressInfo).port };
}

type Outcome =
  { accepted: true; protocol: string; cipher: string; greeting: string } | { accepted: false; error: string };

/** Connects, and counts as accepted only if the server's greeting arrives. */
function attempt(
  port: number,
  o: {
    ca: Buffer;
    cert?: Buffer;
    key?: Buffer;
    maxVersion?: "TLSv1.2" | "TLSv1.3";
    ciphers?: string;
    servername?: string;
  },
): Promise<Outcome> {
  return new Promise((resolve) => {
    let data = "";
    let socket: TLSSocket | undefined = undefined;
    const done = (r: Outcome): void => {
      socket?.destroy();
      resolve(r);
    };
    socket = connect({
      host: "127.0.0.1",
      port,
      servername: o.servername ?? "localhost",
      ca: o.ca,
      cert: o.cert,
      key: o.key,
      maxVersion: o.maxVersion,
      ciphers: o.ciphers,
    });
    socket.setTimeout(10_000, () => done({ accepted: false, error: "timeout" }));
    socket.on("data", (d: Buffer) => {
      data += d.toString();
      if (data.endsWith("\n"))
        done({
          accepted: true,
          protocol: socket?.getProtocol() ?? "",
          cipher: socket?.getCipher().standardName ?? "",
          greeting: data.trim(),
        });
    });
    socket.on("error", (err) => done({ accepted: false, error: err.message }));
    socket.on("close", () => done({ accepted: false, error: "closed without greeting" }));
  });
}

beforeAll(async () => {
  dir = await tempStateDir();
  otherDir = await tempStateDir();
  paths = await ensureDevPki({
    stateDir: dir,
    devices: ["good-p256", "revoked-p256"],
    deviceKeyType: "p256",
  });
  await issueDevices({ stateDir: dir, ids: ["fw-rsa"], keyType: "rsa-2048" });
  const day = 86_400_000;
  await issueDevices({
    stateDir: dir,
    ids: ["expired"],
    keyType: "p256",
    notBefore: new Date(Date.now() - 10 * day),
    notAfter: new Date(Date.now() - day),
  });
  await issueDevices({
    stateDir: dir,
    ids: ["future"],
    keyType: "p256",
    notBefore: new Date(Date.now() + day),
    notAfter: new Date(Date.now() + 10 * day),
  });
  await revokeDevice(dir, "revoked-p256", "keyCompromise");
  // Same names, different CA: must not be accepted just because the CN looks right.
  await ensureDevPki({ stateDir: otherDir, devices: ["good-p256"], deviceKeyType: "p256" });
});

afterAll(async () => {
  await removeDir(dir);
  await removeDir(otherDir);
});

const close = (s: Server): Promise<void> => new Promise((r) => s.close(() => r()));

describe("mutual TLS against the broker certificate", () => {
  let srv: Awaited<ReturnType<typeof startServer>>;
  let auditor: Awaited<ReturnType<typeof startServer>>;
  let ca: Buffer;
  beforeAll(async () => {
    ca = await read(paths.caBundle);
    const broker = await identity(paths.broker);
    // Node reads one CRL per string and checks every CA in the chain, so it needs both CRLs, split.
    const crl = splitCrls(await readFile(paths.crl, "utf8"));
    expect(crl).toHaveLength(2);
    srv = await startServer({ ...broker, ca, crl });
    auditor = await startServer({ ...broker, ca, crl, audit: true });
  });
  afterAll(async () => {
    await close(srv.server);
    await close(auditor.server);
  });

  /** Refused by the real server, and the reason OpenSSL gives is the expected one. */
  async function expectRefused(client: Identity, reason: string): Promise<void> {
    const r = await attempt(srv.port, { ca, ...client });
    expect(r.accepted).toBe(false);
    const verdict = await attempt(auditor.port, { ca, ...client });
    expect(verdict).toMatchObject({ accepted: true, greeting: `hello refused ${reason}` });
  }

  it("accepts a fresh device identity over TLS 1.3", async () => {
    const r = await attempt(srv.port, { ca, ...(await identity(paths.device("good-p256"))) });
    expect(r).toMatchObject({ accepted: true, protocol: "TLSv1.3" });
    expect(await attempt(auditor.port, { ca, ...(await identity(paths.device("good-p256"))) })).toMatchObject(
      { greeting: "hello authorized" },
    );
  });

  it("accepts the firmware's TLS 1.2 ECDHE-RSA-AES128-GCM-SHA256 handshake with an RSA-2048 client key", async () => {
    const r = await attempt(srv.port, {
      ca,
      ...(await identity(paths.device("fw-rsa"))),
      maxVersion: "TLSv1.2",
      ciphers: "ECDHE-RSA-AES128-GCM-SHA256",
    });
    expect(r).toEqual({
      accepted: true,
      protocol: "TLSv1.2",
      cipher: "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
      greeting: "hello",
    });
  });

  it("accepts a service identity as a client", async () => {
    const r = await attempt(srv.port, { ca, ...(await identity(paths.service("ingest"))) });
    expect(r.accepted).toBe(true);
  });

  it("refuses a client without a certificate", async () => {
    const r = await attempt(srv.port, { ca });
    expect(r.accepted).toBe(false);
  });

  // OpenSSL finds no issuer for a lone leaf: "unable to verify the first certificate".
  it("refuses a device certificate from another CA", async () => {
    await expectRefused(
      await identity(pkiPathsOf(otherDir).device("good-p256")),
      "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
    );
  });

  it("refuses an expired device certificate", async () => {
    await expectRefused(await identity(paths.device("expired")), "CERT_HAS_EXPIRED");
  });

  it("refuses a device certificate that is not yet valid", async () => {
    await expectRefused(await identity(paths.device("future")), "CERT_NOT_YET_VALID");
  });

  it("refuses a revoked device certificate when the CRL is loaded", async () => {
    await expectRefused(await identity(paths.device("revoked-p256")), "CERT_REVOKED");
  });
});

describe("a service certificate used as a server", () => {
  it("is refused by a client because it lacks the serverAuth EKU", async () => {
    const svc = await identity(paths.service("ingest"));
    const ca = await read(paths.caBundle);
    const srv = await startServer({ ...svc, ca });
    try {
      const r = await attempt(srv.port, {
        ca,
        ...(await identity(paths.device("good-p256"))),
        servername: "ingest",
      });
      expect(r.accepted).toBe(false);
      expect(r.accepted ? "" : r.error).toMatch(/unsuitable certificate purpose/i);
    } finally {
      await close(srv.server);
    }
  });
});
