// docker-compose.yml: parses, mounts only files that exist (or that setup creates), never the CA's
// private folder, holds no secret, and passes the ingest only flags its CLI knows.
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { join, normalize } from "node:path";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import { ENV_ENTRIES } from "../../host/src/setup/env-file";
import { parseFleetSettings } from "../../host/src/settings/fleet-settings";
import { loadManifest } from "../../manifests/src/index";
import { STACK_SERVICES } from "../../host/src/setup/prepare";
import { repoRoot } from "../../shared/state-dir";

interface Service {
  image?: string;
  build?: { context: string; dockerfile: string };
  restart?: string;
  profiles?: string[];
  volumes?: string[];
  environment?: Record<string, string>;
  command?: string[] | string;
  entrypoint?: string[] | string;
  healthcheck?: { test: string[] };
  depends_on?: Record<string, { condition: string }>;
}
interface Compose {
  services: Record<string, Service>;
  volumes: Record<string, unknown>;
}

const root = repoRoot();
const text = await readFile(join(root, "docker-compose.yml"), "utf8");
const compose = parse(text) as Compose;
const services = Object.entries(compose.services);

/** The value docker compose substitutes for `${VAR:-default}` / `${VAR:?msg}` when VAR is unset; each store variant for EST_STORE. */
function expand(value: string, store: string): string {
  return value.replace(
    /\$\{([A-Z_]+)(?::-([^}]*)|:\?[^}]*)?\}/g,
    (_m, name: string, def: string | undefined) => (name === "EST_STORE" ? store : (def ?? `<${name}>`)),
  );
}

/** "source:target[:mode]", where the source may hold `${VAR:-default}`. */
function splitVolume(v: string): string[] {
  const parts: string[] = [];
  let depth = 0;
  let current = "";
  for (const c of v) {
    if (c === "{") depth++;
    if (c === "}") depth--;
    if (c === ":" && depth === 0) {
      parts.push(current);
      current = "";
    } else current += c;
  }
  return [...parts, current];
}

const bindMounts = services.flatMap(([name, s]) =>
  (s.volumes ?? [])
    .map(splitVolume)
    .map(([source = "", target = ""]) => ({ service: name, source, target }))
    .filter((m) => m.source.startsWith(".") || m.source.startsWith("$")),
);

describe("docker-compose.yml", () => {
  it("has the stack's services, long-running ones with health checks, images pinned to a version", () => {
    expect(Object.keys(compose.services).sort()).toEqual([
      "broker-pki",
      "grafana",
      "influxdb",
      "ingest",
      "ingest-pki",
      "ingest-worker-1",
      "ingest-worker-2",
      "mosquitto",
      "nats-clients-pki",
      "nats-n1",
      "nats-n2",
      "nats-n3",
      "nats-prepare",
      "telegraf",
      "victoriametrics",
    ]);
    for (const [name, s] of services) {
      if (s.restart !== "no") expect(s.healthcheck?.test.length, name).toBeGreaterThan(0);
      expect(s.image, name).toMatch(/:[v0-9]/);
    }
    expect(compose.services.mosquitto?.image).toMatch(/^eclipse-mosquitto:2\./);
    expect(compose.services.influxdb?.image).toMatch(/^influxdb:2\./);
    // Built from the repository (infra/ingest/Dockerfile), tagged with the project's version.
    expect(compose.services.ingest?.build).toEqual({ context: ".", dockerfile: "infra/ingest/Dockerfile" });
    expect(compose.services.telegraf?.profiles).toEqual(["telegraf"]);
  });

  it("mounts only files that exist in the repository, for both store variants", () => {
    const missing: string[] = [];
    for (const store of ["influxdb", "victoriametrics"]) {
      for (const m of bindMounts) {
        const source = expand(m.source, store);
        if (source.startsWith("./.state")) continue; // created by `npm run setup`, checked below
        if (!existsSync(join(root, source))) missing.push(`${m.service}: ${source}`);
      }
    }
    expect(missing).toEqual([]);
  });

  it("mounts of the state folder are only the PKI's public, broker and services/<name> folders and the payload secrets", () => {
    const allowed = [
      /^pki\/public$/,
      /^pki\/broker$/,
      new RegExp(`^pki/services/(${STACK_SERVICES.join("|")})$`),
      /^secrets$/,
      // The ingest reads which payload key ids each device holds (no key material).
      /^provisioning$/,
      // The nats-cluster profile: node configurations and the route CA rendered from the PKI (host/src/broker/nats/docker.ts).
      /^nats-cluster\/docker\/(n[123]\.conf|route-pki)$/,
    ];
    const stateMounts = bindMounts.filter((m) => m.source.startsWith("${EST_STATE_DIR"));
    expect(stateMounts.length).toBeGreaterThan(4);
    for (const m of stateMounts) {
      const rel = normalize(m.source.replace(/^\$\{EST_STATE_DIR:-\.\/\.state\}\//, ""));
      expect(
        allowed.some((re) => re.test(rel)),
        `${m.service} mounts ${rel}`,
      ).toBe(true);
      expect(rel).not.toMatch(/ca-private/);
    }
    expect(text).not.toMatch(/ca-private/);
    // The whole repository is never mounted (it would bring .state and .env along).
    expect(bindMounts.filter((m) => m.source === "." || m.source === "./")).toEqual([]);
  });

  it("declares every named volume it uses", () => {
    const named = services
      .flatMap(([, s]) => (s.volumes ?? []).map((v) => splitVolume(v)[0] ?? ""))
      .filter((src) => /^[a-z][a-z0-9-]*$/.test(src));
    expect(named.length).toBeGreaterThan(5);
    for (const v of named) expect(Object.keys(compose.volumes)).toContain(v);
  });

  it("gives each service only its own InfluxDB token: Grafana, which may only read, never mounts a write token", () => {
    const mountersOf = (volume: string) =>
      services
        .filter(([, s]) => (s.volumes ?? []).some((v) => splitVolume(v)[0] === volume))
        .map(([n]) => n)
        .sort();
    // The nats-cluster profile's JetStream workers are ingests too (the same write-only token).
    expect(mountersOf("tokens-ingest")).toEqual(["influxdb", "ingest", "ingest-worker-1", "ingest-worker-2"]);
    expect(mountersOf("tokens-grafana")).toEqual(["grafana", "influxdb"]);
    expect(mountersOf("tokens-telegraf")).toEqual(["influxdb", "telegraf"]);
  });

  it("holds no secret: passwords and tokens come from .env, which setup generates", () => {
    const required = [...text.matchAll(/\$\{([A-Z_]+):\?/g)].map((m) => m[1]);
    expect(required).toContain("INFLUXDB_ADMIN_PASSWORD");
    const generated = ENV_ENTRIES.map((e) => e.key);
    for (const name of required) expect(generated).toContain(name);
    for (const [name, s] of services) {
      for (const [key, value] of Object.entries(s.environment ?? {})) {
        if (/PASSWORD|TOKEN|SECRET/.test(key))
          expect(String(value), `${name}.${key}`).toMatch(/^\$\{[A-Z_]+(:[?-][^}]*)?\}$/);
      }
    }
    // Nothing that looks like a generated secret (a long run mixing lower case and digits). Names of the
    // nats-cluster profile (`ingest-worker-1-identity`): lower-case words with one-digit words between them.
    const secretLike = [...text.matchAll(/[A-Za-z0-9+/_-]{24,}/g)]
      .map((m) => m[0])
      .filter((w) => /[a-z]/.test(w) && /[0-9]/.test(w))
      .filter((w) => !/^\/?[a-z]+(?:[/-](?:[a-z]+|[0-9]))*$/.test(w));
    expect(secretLike).toEqual([]);
    // Every variable the file reads is one setup writes (or EST_STORE-style settings it documents).
    const used = new Set([...text.matchAll(/\$\{([A-Z_]+)/g)].map((m) => m[1] as string));
    for (const name of used) expect([...generated, "EST_STATE_DIR"], name).toContain(name);
  });

  it("passes the ingest only flags its CLI accepts", async () => {
    const cmd = compose.services.ingest?.command;
    const script = Array.isArray(cmd) ? cmd.join(" ") : String(cmd);
    const flags = [...expand(` ${script}`, "influxdb").matchAll(/\s(--[a-z][a-z-]*)/g)].map(
      (m) => m[1] as string,
    );
    expect(flags).toEqual(
      expect.arrayContaining(["--settings", "--broker", "--store-url", "--org", "--bucket", "--token-file"]),
    );
    // The payload mode and the manifest come from the settings file only: nothing here can disagree with it.
    expect(flags).not.toContain("--plain");
    expect(flags).not.toContain("--encrypted");
    expect(text).not.toContain("EST_PAYLOAD_MODE");
    const { stdout } = await promisify(execFile)(
      process.execPath,
      ["--import", "tsx", "host/src/cli/ingest.ts", "--help"],
      { cwd: root },
    );
    for (const f of flags) expect(stdout, f).toContain(f);
    // The ingest's oldest accepted reading follows the bucket's retention (one variable for InfluxDB, VictoriaMetrics and the ingest).
    expect(script).toContain("--retention ${INFLUXDB_RETENTION:-30d}");
    expect(JSON.stringify(compose.services.influxdb)).toContain("${INFLUXDB_RETENTION:-30d}");
  });

  it("runs the ingest with the fleet settings and the manifest they name, both mounted", async () => {
    const cmd = compose.services.ingest?.command as string[];
    const inContainer = cmd[cmd.indexOf("--settings") + 1]!;
    const mounts = (compose.services.ingest?.volumes ?? []).map(splitVolume);
    const hostPathOf = (containerPath: string): string | undefined => {
      for (const [source = "", target = ""] of mounts)
        if (source.startsWith(".") && (containerPath === target || containerPath.startsWith(`${target}/`)))
          return join(root, source, containerPath.slice(target.length));
      return undefined;
    };
    const settingsFile = hostPathOf(inContainer);
    expect(settingsFile, inContainer).toBeDefined();
    // Resolved as the ingest resolves it inside the container, then mapped back to the repository.
    const settings = parseFleetSettings(await readFile(settingsFile!, "utf8"), inContainer);
    const manifest = hostPathOf(settings.manifest);
    expect(manifest, settings.manifest).toBeDefined();
    expect((await loadManifest(manifest!)).devices.length).toBeGreaterThan(0);
  });

  it("the broker container gets the config the broker engineer renders for docker, at the paths it names", async () => {
    const conf = await readFile(join(root, "infra/mosquitto/docker/mosquitto.conf"), "utf8");
    const targets = (compose.services.mosquitto?.volumes ?? []).map((v) => splitVolume(v)[1] ?? "");
    const referenced = [...conf.matchAll(/^(?:cafile|certfile|keyfile|crlfile|acl_file)\s+(\S+)/gm)].map(
      (m) => m[1] as string,
    );
    expect(referenced.length).toBe(5);
    for (const path of referenced)
      expect(
        targets.some((t) => path === t || path.startsWith(`${t}/`)),
        path,
      ).toBe(true);
  });

  it("the influxdb init script is valid bash and scopes each token to one bucket right", async () => {
    await promisify(execFile)("bash", ["-n", join(root, "infra/influxdb/init/10-scoped-tokens.sh")]);
    const script = await readFile(join(root, "infra/influxdb/init/10-scoped-tokens.sh"), "utf8");
    expect(script).toMatch(/create_token ingest\.token [^\n]*--write-bucket/);
    expect(script).not.toMatch(/create_token ingest\.token [^\n]*--read-bucket/);
    expect(script).toMatch(/create_token grafana\.token [^\n]*--read-bucket/);
    expect(script).not.toMatch(/create_token grafana\.token [^\n]*--write-bucket/);
    expect(script).not.toMatch(/--all-access|--operator/);
  });
});
