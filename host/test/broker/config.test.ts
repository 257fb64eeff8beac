/** The broker configuration template: what it enforces, and that docker-compose gets the same. */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import {
  DOCKER_BROKER_PARAMS,
  dockerConfigDir,
  fillTemplate,
  loadTemplates,
  renderBrokerConfig,
  type BrokerConfigParams,
} from "../../src/broker/config";

const LOCAL: BrokerConfigParams = {
  user: "tester",
  port: 18883,
  bind: "127.0.0.1",
  caFile: "/s/pki/public/ca-bundle.pem",
  certFile: "/s/pki/broker/cert.pem",
  keyFile: "/s/pki/broker/key.pem",
  crlFile: "/s/pki/public/crl.pem",
  aclFile: "/s/broker/acl",
  persistenceDir: "/s/broker/data",
  logDest: "stderr",
  ingestIdentity: "ingest",
  bindClientIdToIdentity: true,
};

/** Directive name -> every value given to it, in order (comments and blank lines dropped). */
function directives(conf: string): Map<string, string[]> {
  const m = new Map<string, string[]>();
  for (const raw of conf.split("\n")) {
    const line = raw.trim();
    if (!line || line.startsWith("#")) continue;
    const [name, ...rest] = line.split(/\s+/);
    if (!name) continue;
    m.set(name, [...(m.get(name) ?? []), rest.join(" ")]);
  }
  return m;
}

describe("rendered mosquitto.conf", async () => {
  const templates = await loadTemplates();
  const { conf } = renderBrokerConfig(templates, LOCAL);
  const d = directives(conf);
  const one = (name: string): string | undefined => {
    const v = d.get(name);
    expect(v, name).toHaveLength(1);
    return v?.[0];
  };

  it("leaves no placeholder", () => {
    expect(conf).not.toMatch(/\{\{|\}\}/);
  });

  it("has exactly one listener, mutual TLS, on the given address", () => {
    expect(d.get("listener")).toEqual(["18883 127.0.0.1"]);
    expect(one("certfile")).toBe(LOCAL.certFile);
    expect(one("keyfile")).toBe(LOCAL.keyFile);
    expect(one("cafile")).toBe(LOCAL.caFile);
    expect(one("crlfile")).toBe(LOCAL.crlFile);
    expect(one("require_certificate")).toBe("true");
    expect(one("use_identity_as_username")).toBe("true");
    expect(one("allow_anonymous")).toBe("false");
    expect(one("acl_file")).toBe(LOCAL.aclFile);
    expect(one("use_username_as_clientid")).toBe("true");
    expect(
      directives(renderBrokerConfig(templates, { ...LOCAL, bindClientIdToIdentity: false }).conf).get(
        "use_username_as_clientid",
      ),
    ).toEqual(["false"]);
    expect(d.has("port")).toBe(false); // the legacy default listener would be plaintext
    expect(d.has("password_file")).toBe(false);
  });

  it("allows TLS 1.2+ with ECDHE AES-GCM suites only, including the firmware's, and no DHE", () => {
    expect(one("tls_version")).toBe("tlsv1.2");
    const suites = (one("ciphers") ?? "").split(":");
    expect(suites).toEqual(
      expect.arrayContaining(["ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES128-GCM-SHA256"]),
    );
    for (const s of suites) expect(s).toMatch(/^ECDHE-(RSA|ECDSA)-AES(128|256)-GCM-SHA(256|384)$/);
    for (const s of (one("ciphers_tls1.3") ?? "").split(":"))
      expect(s).toMatch(/^TLS_AES_(128|256)_GCM_SHA(256|384)$/);
  });

  it("persists sessions and sizes the queues for the fleet", () => {
    expect(one("persistence")).toBe("true");
    expect(one("persistence_location")).toBe("/s/broker/data/");
    expect(Number(one("max_queued_messages"))).toBeGreaterThanOrEqual(100_000);
    expect(Number(one("max_queued_bytes"))).toBeGreaterThan(0);
    expect(Number(one("max_inflight_messages"))).toBeGreaterThan(20);
    expect(one("persistent_client_expiration")).toMatch(/^\d+[hdwmy]$/);
  });

  it("refuses values that would inject directives or break a line", () => {
    expect(() =>
      renderBrokerConfig(templates, { ...LOCAL, caFile: "/x.pem\nlistener 1883 0.0.0.0" }),
    ).toThrow(/control character/);
    expect(() => renderBrokerConfig(templates, { ...LOCAL, keyFile: "/my keys/k.pem" })).toThrow(/spaces/);
    expect(() => renderBrokerConfig(templates, { ...LOCAL, port: 0 })).toThrow(/port/);
    for (const bad of ["+", "#", "a/b", "", "x".repeat(33)]) {
      expect(() => renderBrokerConfig(templates, { ...LOCAL, ingestIdentity: bad })).toThrow(
        /ingest identity/,
      );
    }
  });

  it("fillTemplate names every placeholder without a value", () => {
    expect(() => fillTemplate("a {{X}} {{Y}} {{X}}", { Y: "1" })).toThrow(/no value for X$/);
    expect(fillTemplate("{{A}}-{{A}}", { A: "z" })).toBe("z-z");
  });
});

describe("rendered ACL", async () => {
  const { acl } = renderBrokerConfig(await loadTemplates(), { ...LOCAL, ingestIdentity: "ingest-2" });
  const rules = acl
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith("#"));

  it("grants boards only their own topics; ingest, monitor and telegraf only read, never their own name's topics; broker-admin only the dynsec control topics; fleet-admin only writes trust and config, reads status, and reads and clears boards' key-request answers", () => {
    expect(rules).toEqual([
      "pattern write electrolyser/%u/telemetry",
      "pattern write electrolyser/%u/status",
      "pattern write electrolyser/%u/csr",
      "pattern read electrolyser/%u/down/#",
      "user ingest-2",
      "topic deny electrolyser/ingest-2/#",
      "topic read electrolyser/+/telemetry",
      "topic read electrolyser/+/status",
      "topic write electrolyser/+/down/stored",
      "user monitor",
      "topic deny electrolyser/monitor/#",
      "topic read electrolyser/+/telemetry",
      "topic read electrolyser/+/status",
      "user telegraf",
      "topic deny electrolyser/telegraf/#",
      "topic read electrolyser/+/telemetry",
      "user bridge",
      "topic deny electrolyser/bridge/#",
      "user broker-admin",
      "topic write $CONTROL/dynamic-security/v1",
      "topic read $CONTROL/dynamic-security/v1/response",
      "user fleet-admin",
      "topic deny electrolyser/fleet-admin/#",
      "topic write electrolyser/+/down/trust",
      "topic write electrolyser/+/down/config",
      "topic read electrolyser/+/status",
      "topic readwrite electrolyser/+/csr",
    ]);
  });
});

describe("docker-compose configuration", () => {
  it("is the template rendered with container paths (regenerate: npm run broker -- render-docker)", async () => {
    const expected = renderBrokerConfig(await loadTemplates(), DOCKER_BROKER_PARAMS);
    expect(await readFile(join(dockerConfigDir(), "mosquitto.conf"), "utf8")).toBe(expected.conf);
    expect(await readFile(join(dockerConfigDir(), "acl"), "utf8")).toBe(expected.acl);
    expect(directives(expected.conf).get("listener")).toEqual(["8883 0.0.0.0"]);
    // The container broker binds client ids to certificates too: no session takeover.
    expect(directives(expected.conf).get("use_username_as_clientid")).toEqual(["true"]);
  });
});
