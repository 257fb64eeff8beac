/** The cluster's configuration from certificates and CRLs: pure functions, no nats-server. */
import { webcrypto } from "node:crypto";
import { describe, expect, it } from "vitest";
import {
  fleetUsers,
  natsSubjectDn,
  publicKeyPin,
  type ClientCertificate,
} from "../../../src/broker/nats/fleet-users";
import {
  nodeConfig,
  reloadable,
  renderNodeConfig,
  type ClusterNode,
  type NodeConfigInput,
} from "../../../src/broker/nats/node-config";
import { permissionsFor, subjectTokenProblem } from "../../../src/broker/nats/permissions";
import { isAllowed } from "../../../src/broker/topic-policy";
import { x509 } from "../../../../pki/src/x509";
import { createCa, crlPem, issue } from "../helpers/test-pki";

const DAY = 86_400_000;

/** NATS subject matching with `*` (one token) and `>` (the rest), as nats-server applies permissions. */
function subjectMatches(pattern: string, subject: string): boolean {
  const p = pattern.split(".");
  const s = subject.split(".");
  for (let i = 0; i < p.length; i++) {
    if (p[i] === ">") return s.length > i;
    if (i >= s.length) return false;
    if (p[i] !== "*" && p[i] !== s[i]) return false;
  }
  return p.length === s.length;
}

describe("permissionsFor agrees with the Mosquitto ACL (topic-policy)", () => {
  const identities: [string, "device" | "service"][] = [
    ["dev-a", "device"],
    ["dev-b", "device"],
    ["ingest", "service"],
    ["monitor", "service"],
    ["telegraf", "service"],
    ["fleet-admin", "service"],
  ];
  const topics = ["dev-a", "dev-b", "ingest", "monitor"]
    .flatMap((who) =>
      ["telemetry", "status", "command", "other", "down/stored", "down/trust", "down/config"].map(
        (kind) => `electrolyser/${who}/${kind}`,
      ),
    )
    .concat(["other/dev-a/telemetry", "electrolyser/dev-a"]);
  for (const [id, kind] of identities) {
    it(`${id}: publish and read rights topic by topic`, () => {
      const perms = permissionsFor(id, kind);
      for (const topic of topics) {
        const subject = topic.replaceAll("/", ".");
        const pub =
          perms.publish.allow.some((p) => subjectMatches(p, subject)) &&
          !(perms.publish.deny ?? []).some((p) => subjectMatches(p, subject));
        const sub =
          perms.subscribe.allow.some((p) => subjectMatches(p, subject)) &&
          !(perms.subscribe.deny ?? []).some((p) => subjectMatches(p, subject));
        expect({ topic, pub }).toEqual({ topic, pub: isAllowed(id, "publish", topic) });
        // telegraf reads telemetry only (acl.template); topic-policy folds it into "anything else: denied".
        const expected =
          id === "telegraf"
            ? /^electrolyser\/[^/]+\/telemetry$/.test(topic) && !topic.startsWith("electrolyser/telegraf/")
            : isAllowed(id, "subscribe", topic);
        expect({ topic, sub }).toEqual({ topic, sub: expected });
      }
    });
  }

  it("a device certificate named like a service gets no fleet reads (stricter than a CN-only ACL)", () => {
    expect(permissionsFor("ingest", "device").subscribe.allow).toEqual([
      "electrolyser.ingest.down",
      "electrolyser.ingest.down.>",
      "$MQTT.sub.>",
    ]);
  });

  it("refuses identities that NATS or MQTT would read as syntax", () => {
    for (const bad of ["a.b", "*", ">", "+", "#", "a/b", "$SYS", "a b", ""])
      expect(subjectTokenProblem(bad)).toBeDefined();
    expect(subjectTokenProblem("elx-site1-0001")).toBeUndefined();
    expect(() => permissionsFor("a.b", "device")).toThrow(/syntax/);
  });
});

describe("fleetUsers", () => {
  it("keys users by the DN nats-server renders (RFC 2253 order) and pins only valid certificates", async () => {
    const ca = await createCa("Fleet CA", "p256");
    const keys = { usage: "client" as const, kind: "p256" as const };
    const [a, aOld, b, expired] = await Promise.all([
      issue(ca, { cn: "dev-a", ...keys }),
      issue(ca, { cn: "dev-a", ...keys }),
      issue(ca, { cn: "dev-b", ...keys }),
      issue(ca, {
        cn: "dev-c",
        ...keys,
        notBefore: new Date(Date.now() - 10 * DAY),
        notAfter: new Date(Date.now() - DAY),
      }),
    ]);
    const certs: ClientCertificate[] = [a, aOld, b, expired].map((c) => ({
      kind: "device",
      name: c.cn,
      certPem: c.certPem,
    }));
    const r = fleetUsers({ certificates: certs, crlPem: await crlPem(ca, [aOld.serial]), now: new Date() });
    expect(r.users).toEqual([
      { kind: "device", name: "dev-a", dn: "CN=dev-a" },
      { kind: "device", name: "dev-b", dn: "CN=dev-b" },
    ]);
    const pin = (pem: string) => publicKeyPin(new x509.X509Certificate(pem));
    expect(r.pins).toEqual([pin(a.certPem), pin(b.certPem)].sort());
    expect(r.skipped.map((s) => `${s.name} ${s.reason}`).sort()).toEqual(["dev-a revoked", "dev-c expired"]);
  });

  it("leaves out devices outside the manifest, and a certificate filed under another name", async () => {
    const ca = await createCa("Fleet CA", "p256");
    const a = await issue(ca, { cn: "dev-a", kind: "p256", usage: "client" });
    const r = fleetUsers({
      certificates: [
        { kind: "device", name: "dev-a", certPem: a.certPem },
        { kind: "device", name: "dev-x", certPem: a.certPem },
      ],
      crlPem: await crlPem(ca, []),
      now: new Date(),
      devicesInFleet: new Set(["dev-x"]),
    });
    expect(r.users).toEqual([]);
    expect(r.skipped.map((s) => s.reason)).toEqual([
      "not in the fleet manifest",
      'its CN (dev-a) is not "dev-x"',
    ]);
  });

  it("renders the project PKI's subject (O, OU, CN) as CN=…,OU=…,O=…", async () => {
    const ca = await createCa("Fleet CA", "p256");
    const keys = (await webcrypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, true, [
      "sign",
      "verify",
    ])) as webcrypto.CryptoKeyPair;
    const cert = await x509.X509CertificateGenerator.create({
      serialNumber: "11",
      subject: "O=Electrolyser Secure Telemetry, OU=devices, CN=elx-0001",
      issuer: ca.cert.subject,
      notBefore: new Date(),
      notAfter: new Date(Date.now() + DAY),
      publicKey: keys.publicKey,
      signingKey: ca.keys.privateKey,
      signingAlgorithm: { name: "ECDSA", hash: "SHA-256" },
    });
    expect(natsSubjectDn(cert)).toBe("CN=elx-0001,OU=devices,O=Electrolyser Secure Telemetry");
  });

  it("an empty CRL file is an error, not an empty revocation list", async () => {
    expect(() => fleetUsers({ certificates: [], crlPem: "", now: new Date() })).toThrow(/no CRL/);
  });
});

describe("nodeConfig", () => {
  const nodes: ClusterNode[] = [1, 2, 3].map((i) => ({
    name: `n${i}`,
    ports: { client: 4000 + i, cluster: 5000 + i, mqtt: 8000 + i, http: 9000 + i },
  }));
  const input = (over: Partial<NodeConfigInput> = {}): NodeConfigInput => ({
    node: "n2",
    nodes,
    clusterName: "electrolyser",
    jetStreamDir: "/data/n2/js",
    mqttTls: { cert: "/pki/broker.pem", key: "/pki/broker.key", ca: "/pki/ca-bundle.pem" },
    routeTls: { cert: "/routes/n2.pem", key: "/routes/n2.key.pem", ca: "/routes/ca.pem" },
    users: [{ kind: "device", name: "dev-a", dn: "CN=dev-a,OU=devices,O=Electrolyser Secure Telemetry" }],
    pins: ["ab".repeat(32)],
    ...over,
  });

  it("routes to the two other nodes over mTLS with the route CA, MQTT with the fleet CA, R3", () => {
    const c = nodeConfig(input());
    expect(c.cluster).toMatchObject({
      listen: "127.0.0.1:5002",
      routes: ["nats-route://127.0.0.1:5001", "nats-route://127.0.0.1:5003"],
      tls: { ca_file: "/routes/ca.pem", verify: true },
    });
    expect(c.tls).toMatchObject({ ca_file: "/routes/ca.pem", verify: true });
    expect(c.mqtt).toMatchObject({
      listen: "127.0.0.1:8002",
      stream_replicas: 3,
      tls: { ca_file: "/pki/ca-bundle.pem", verify_and_map: true, pinned_certs: ["ab".repeat(32)] },
    });
    expect((c.mqtt.tls as { cipher_suites: string[] }).cipher_suites).toContain(
      "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    );
    expect(c.authorization.users).toEqual([
      {
        user: "CN=dev-a,OU=devices,O=Electrolyser Secure Telemetry",
        permissions: {
          publish: {
            allow: ["electrolyser.dev-a.telemetry", "electrolyser.dev-a.status", "electrolyser.dev-a.csr"],
          },
          subscribe: { allow: ["electrolyser.dev-a.down", "electrolyser.dev-a.down.>", "$MQTT.sub.>"] },
        },
      },
    ]);
  });

  it("a path cannot inject configuration: the file is JSON", () => {
    const c = nodeConfig(input({ jetStreamDir: '/data/x" } authorization { users: [] } x {"' }));
    expect(JSON.parse(renderNodeConfig(c)).jetstream.store_dir).toBe(
      '/data/x" } authorization { users: [] } x {"',
    );
    expect(() => nodeConfig(input({ jetStreamDir: "/data/x\ninclude /etc/passwd" }))).toThrow(
      /invalid JetStream directory/,
    );
  });

  it("refuses shared ports, an unknown node and an empty pin list", () => {
    expect(() => nodeConfig(input({ node: "n9" }))).toThrow(/not in the cluster/);
    expect(() =>
      nodeConfig(input({ nodes: [nodes[0]!, { name: "n2", ports: { ...nodes[0]!.ports } }] })),
    ).toThrow(/share a port/);
    expect(() => nodeConfig(input({ pins: [] }))).toThrow(/no valid client certificate/);
  });

  it("a change of users is reloadable; a change of pins (under mqtt) is not", () => {
    const base = nodeConfig(input());
    expect(reloadable(base, nodeConfig(input({ users: [] })))).toBe(true);
    expect(reloadable(base, nodeConfig(input({ pins: ["cd".repeat(32)] })))).toBe(false);
  });
});
