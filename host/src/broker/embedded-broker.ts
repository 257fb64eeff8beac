/**
 * The emulator's built-in broker, so a fresh checkout can run a fleet with nothing installed: Aedes behind a
 * node:tls server that demands a client certificate from the fleet CA (mutual TLS, CRL honoured) and uses
 * its CN as the identity, with the same topic rights as infra/mosquitto (host/src/broker/topic-policy).
 *
 * Differences from Mosquitto, on purpose: a forbidden SUBSCRIBE gets return code 0x80 instead of a silent
 * grant, and a forbidden PUBLISH closes the connection (Aedes' only way to refuse) instead of being dropped.
 * Every delivery is also checked against the subscriber's read rights, as Mosquitto does. Aedes has no shared
 * subscriptions: `$share/<group>/<filter>` is accepted and served as a plain subscription to <filter>, so two
 * members of one group would each get every message (the ingest deduplicates by device and sequence anyway).
 * It does not bind the client id to the CN (Mosquitto's use_username_as_clientid), so a client could take
 * over another's session: acceptable for a development broker that only the emulator's own processes reach
 * on loopback, never for production, which is Mosquitto with infra/mosquitto's configuration.
 */
import { Aedes } from "aedes";
import type { Client } from "aedes";
import { readFile } from "node:fs/promises";
import { createServer } from "node:tls";
import type { Server, TLSSocket } from "node:tls";
import type { Socket } from "node:net";
import { isAllowed } from "./topic-policy";

export interface EmbeddedBrokerOptions {
  /** PEM files, as PkiPaths gives them. */
  caBundle: string;
  crl?: string;
  cert: string;
  key: string;
  host?: string;
  /** 0 or undefined: pick a free port. */
  port?: number;
  ingestIdentity?: string;
}

export interface EmbeddedBroker {
  url: string;
  host: string;
  port: number;
  /** Connections refused during authentication or for a forbidden action (for tests and the live view). */
  readonly refusals: number;
  stop(): Promise<void>;
}

/** The same suites as infra/mosquitto: ECDHE with AES-GCM on TLS 1.2; TLS 1.3 allowed. */
const TLS12_CIPHERS =
  "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384";

function identityOf(client: Client): string | undefined {
  const cert = (client.conn as TLSSocket).getPeerCertificate?.();
  const cn: unknown = cert?.subject?.CN;
  return typeof cn === "string" ? cn : undefined;
}

/**
 * Node reads only the first CRL of a PEM string; with the issuing and the root CRL in one file the second
 * would be ignored and every client certificate would fail the full-chain CRL check. Pass them one by one.
 */
function splitPemBlocks(pem: string, label: string): string[] {
  const re = new RegExp(`-----BEGIN ${label}-----[\\s\\S]+?-----END ${label}-----`, "g");
  const blocks = pem.match(re) ?? [];
  if (blocks.length === 0) throw new Error(`no ${label} found in the CRL file`);
  return blocks.map((b) => `${b}\n`);
}

function unshare<T extends { topic: string }>(sub: T): T {
  if (!sub.topic.startsWith("$share/")) return sub;
  const rest = sub.topic.slice("$share/".length);
  return { ...sub, topic: rest.slice(rest.indexOf("/") + 1) };
}

export async function startEmbeddedBroker(o: EmbeddedBrokerOptions): Promise<EmbeddedBroker> {
  const ingest = o.ingestIdentity ?? "ingest";
  const [ca, cert, key, crl] = await Promise.all([
    readFile(o.caBundle),
    readFile(o.cert),
    readFile(o.key),
    o.crl ? readFile(o.crl) : Promise.resolve(undefined),
  ]);
  const identities = new WeakMap<Client, string>();
  let refusals = 0;

  const aedes = await Aedes.createBroker({
    // A board's QoS 1 backlog after a network drop must fit; Aedes drops beyond this per client.
    queueLimit: 100_000,
    authenticate(client, _username, _password, done) {
      const id = identityOf(client);
      if (!id) {
        refusals++;
        const err = Object.assign(new Error("no client certificate CN"), { returnCode: 5 as const });
        return done(err, false);
      }
      identities.set(client, id);
      done(null, true);
    },
    authorizePublish(client, packet, done) {
      // client is null for wills Aedes republishes itself after a restart; they were checked when stored.
      if (client === null) return done(null);
      const id = identities.get(client);
      if (id !== undefined && isAllowed(id, "publish", packet.topic, ingest)) return done(null);
      refusals++;
      done(new Error(`publish to ${packet.topic} not allowed`));
    },
    authorizeSubscribe(client, sub, done) {
      const id = identities.get(client);
      if (id !== undefined && isAllowed(id, "subscribe", sub.topic, ingest)) return done(null, unshare(sub));
      refusals++;
      done(null, null);
    },
    authorizeForward(client, packet) {
      const id = identities.get(client);
      return id !== undefined && isAllowed(id, "subscribe", packet.topic, ingest) ? packet : null;
    },
  });

  const sockets = new Set<Socket>();
  const server: Server = createServer(
    {
      ca,
      cert,
      key,
      ...(crl ? { crl: splitPemBlocks(crl.toString("utf8"), "X509 CRL") } : {}),
      requestCert: true,
      rejectUnauthorized: true,
      minVersion: "TLSv1.2",
      ciphers: TLS12_CIPHERS,
    },
    (socket) => {
      aedes.handle(socket);
    },
  );
  server.on("connection", (s: Socket) => {
    sockets.add(s);
    s.once("close", () => sockets.delete(s));
  });
  // A client that fails the handshake is the client's problem; the broker carries on.
  server.on("tlsClientError", () => {
    refusals++;
  });
  server.maxConnections = Number.MAX_SAFE_INTEGER;

  const host = o.host ?? "127.0.0.1";
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(o.port ?? 0, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const address = server.address();
  if (address === null || typeof address === "string") throw new Error("embedded broker has no TCP address");
  const port = address.port;

  return {
    url: `mqtts://${host}:${port}`,
    host,
    port,
    get refusals() {
      return refusals;
    },
    async stop() {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const s of sockets) s.destroy();
      });
      await new Promise<void>((resolve) => aedes.close(() => resolve()));
    },
  };
}
