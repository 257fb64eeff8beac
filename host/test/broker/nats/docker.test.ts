/**
 * docker-compose's nats-cluster profile gets the node configurations and NATS-port identities render-docker
 * writes, at the paths they name; and those very configurations, run by real nats-server processes (paths
 * mapped back through the compose mounts, container host names and ports rewritten to loopback), take
 * prepare-jetstream and a worker identity as compose's nats-prepare and ingest-worker-N would. Docker itself
 * is not run here.
 */
import { spawn, execFile, type ChildProcess } from "node:child_process";
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, dirname, join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse } from "yaml";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { ensureDevPki } from "../../../../pki/src/index";
import {
  DOCKER_NATS_PATHS,
  DOCKER_NODES,
  dockerService,
  dockerStateDir,
  renderDockerCluster,
  type DockerRender,
} from "../../../src/broker/nats/docker";
import { defaultNatsServerBinary } from "../../../src/broker/nats/cluster";
import {
  INGEST_DURABLES,
  MessageStreamRetentionError,
  MQTT_MESSAGE_STREAM,
  MQTT_MESSAGE_SUBJECTS,
  natsAdminConnection,
  workerPermissions,
} from "../../../src/broker/nats/message-stream";
import { CLUSTER_ADMIN } from "../../../src/broker/nats/nats-clients";
import type { NodeConfig } from "../../../src/broker/nats/node-config";
import { prepareJetStream } from "../../../src/broker/nats/prepare-jetstream";
import { clientDn, identityFiles } from "../../../src/broker/nats/route-pki";
import { findFreePort } from "../../../src/net/free-port";
import { repoRoot } from "../../../../shared/state-dir";

interface Service {
  profiles?: string[];
  volumes?: string[];
  command?: string[];
  entrypoint?: string[];
  environment?: Record<string, string>;
  depends_on?: Record<string, { condition: string }>;
}

const STATE = "${EST_STATE_DIR:-./.state}";
let stateDir: string;
let rendered: DockerRender;
let composeText: string;
let services: Record<string, Service>;

/** A service's mounts; a state-folder source as `STATE/…`. */
function mountsOf(service: string): { source: string; target: string; ro: boolean }[] {
  return (services[service]?.volumes ?? []).map((v) => {
    const [source = "", target = "", mode] = v.replace(STATE, "STATE").split(":");
    return { source, target, ro: mode === "ro" };
  });
}
const argAfter = (cmd: readonly string[] | undefined, flag: string): string => {
  const i = (cmd ?? []).indexOf(flag);
  expect(i, flag).toBeGreaterThanOrEqual(0);
  return cmd![i + 1]!;
};
const routePkiDir = () => join(dockerStateDir(stateDir), "route-pki");

/**
 * The host file behind a container path of `consumer`, when it is a NATS-port identity: the named volume
 * mounted there is filled by nats-clients-pki from `/in` (the rendered route-pki folder), `/out/<id>/<file>`.
 */
function identitySource(consumer: string, containerPrefix: string): { id: string; hostPrefix: string } {
  const dir = dirname(containerPrefix);
  const mount = mountsOf(consumer).find((m) => m.target === dir);
  expect(mount, `${consumer} mounts ${dir}`).toBeDefined();
  expect(mount!.ro, `${consumer}: ${dir} read-only`).toBe(true);
  const filler = mountsOf("nats-clients-pki").find((m) => m.source === mount!.source);
  expect(filler, `nats-clients-pki fills ${mount!.source}`).toBeDefined();
  const id = basename(filler!.target);
  expect(basename(containerPrefix)).toBe(`client-${id}`);
  const input = mountsOf("nats-clients-pki").find((m) => m.target === "/in");
  expect(input?.source).toBe("STATE/nats-cluster/docker/route-pki");
  return { id, hostPrefix: join(routePkiDir(), `client-${id}`) };
}

beforeAll(async () => {
  stateDir = await mkdtemp(join(tmpdir(), "est-nats-docker-"));
  const pki = await ensureDevPki({
    stateDir,
    devices: ["dev-0001", "dev-0002"],
    services: ["ingest", "monitor"],
    deviceKeyType: "p256",
  });
  rendered = await renderDockerCluster(stateDir, pki);
  expect(rendered.users.users.map((u) => u.name).sort()).toEqual([
    "dev-0001",
    "dev-0002",
    "ingest",
    "monitor",
  ]);
  composeText = await readFile(join(repoRoot(), "docker-compose.yml"), "utf8");
  services = (parse(composeText) as { services: Record<string, Service> }).services;
}, 120_000);
afterAll(() => rm(stateDir, { recursive: true, force: true }));

describe("docker-compose nats-cluster profile", () => {
  it.each([...DOCKER_NODES])(
    "%s: mounts its own rendered config, and every file the config names lies under a mount",
    async (node) => {
      const service = services[dockerService(node)];
      expect(service?.profiles).toEqual(["nats-cluster"]);
      const mounts = mountsOf(dockerService(node));
      expect(mounts).toContainEqual({
        source: `STATE/nats-cluster/docker/${node}.conf`,
        target: DOCKER_NATS_PATHS.config,
        ro: true,
      });
      expect(service?.command).toEqual(["--config", DOCKER_NATS_PATHS.config]);
      const config = JSON.parse(
        await readFile(join(dockerStateDir(stateDir), `${node}.conf`), "utf8"),
      ) as NodeConfig;
      const tlsBlocks = [config.tls, config.cluster.tls, config.mqtt.tls] as Record<string, unknown>[];
      const files = tlsBlocks.flatMap((t) => [t.cert_file, t.key_file, t.ca_file] as string[]);
      files.push(config.jetstream.store_dir);
      for (const f of files)
        expect(
          mounts.some((m) => f.startsWith(`${m.target}/`)),
          f,
        ).toBe(true);
      expect(config.cluster.routes).toEqual(
        DOCKER_NODES.filter((n) => n !== node).map((n) => `nats-route://${dockerService(n)}:6222`),
      );
      // Monitoring stays inside the container.
      expect(config.http).toBe("127.0.0.1:8222");
      // The NATS-port users, as the native launcher gives them: the admin with every right, each worker
      // with workerPermissions() and nothing more.
      const users = config.authorization.users.filter((u) => u.user.endsWith(",OU=cluster clients"));
      expect(users).toEqual([
        { user: clientDn(CLUSTER_ADMIN) },
        { user: clientDn("ingest-worker-1"), permissions: workerPermissions() },
        { user: clientDn("ingest-worker-2"), permissions: workerPermissions() },
      ]);
    },
  );

  it("render-docker issues the admin and two worker identities from the route CA, keys 0600", async () => {
    expect(rendered.workers).toEqual(["ingest-worker-1", "ingest-worker-2"]);
    for (const id of [CLUSTER_ADMIN, ...rendered.workers]) {
      const files = identityFiles(join(routePkiDir(), `client-${id}`));
      expect(((await stat(files.key)).mode & 0o777).toString(8), id).toBe("600");
      expect(await readFile(files.cert, "utf8")).toContain("BEGIN CERTIFICATE");
      expect(files.ca).toBe(join(routePkiDir(), "ca.pem"));
    }
  });

  it("nats-prepare runs prepare-jetstream as the rendered cluster admin, once the three nodes are healthy", () => {
    const s = services["nats-prepare"]!;
    expect(s.profiles).toEqual(["nats-cluster"]);
    expect(s.entrypoint).toEqual(["node", "dist/nats-cluster.mjs"]);
    expect(s.command?.[0]).toBe("prepare-jetstream");
    expect(argAfter(s.command, "--servers")).toBe(
      DOCKER_NODES.map((n) => `tls://${dockerService(n)}:4222`).join(","),
    );
    expect(identitySource("nats-prepare", argAfter(s.command, "--identity")).id).toBe(CLUSTER_ADMIN);
    for (const n of DOCKER_NODES)
      expect(s.depends_on?.[dockerService(n)]).toEqual({ condition: "service_healthy" });
    expect(s.depends_on?.["nats-clients-pki"]).toEqual({ condition: "service_completed_successfully" });
  });

  it.each([1, 2])(
    "ingest-worker-%i: a JetStream worker with its own rendered identity, confirmations on, after nats-prepare",
    (n) => {
      const name = `ingest-worker-${n}`;
      const s = services[name]!;
      expect(s.profiles).toEqual(["nats-cluster"]);
      expect(argAfter(s.command, "--jetstream")).toBe(
        DOCKER_NODES.map((node) => `tls://${dockerService(node)}:4222`).join(","),
      );
      expect(s.command).not.toContain("--broker");
      expect(argAfter(s.command, "--confirm")).toBe("on");
      expect(identitySource(name, argAfter(s.command, "--jetstream-identity")).id).toBe(name);
      expect(s.depends_on?.["nats-prepare"]).toEqual({ condition: "service_completed_successfully" });
      // Its own state volume (dead letters), not the MQTT ingest's.
      const data = mountsOf(name).find((m) => m.target === "/var/lib/est/ingest");
      expect(data?.source).toBe(`${name}-data`);
    },
  );

  it("the worker commands use only flags the ingest CLI accepts", async () => {
    const { stdout } = await promisify(execFile)(
      process.execPath,
      ["--import", "tsx", "host/src/cli/ingest.ts", "--help"],
      { cwd: repoRoot() },
    );
    for (const n of [1, 2])
      for (const f of (services[`ingest-worker-${n}`]?.command ?? []).filter((a) => a.startsWith("--")))
        expect(stdout, f).toContain(f);
  }, 60_000);

  it("holds no key material: identities reach the containers only through the one-shot copy", () => {
    expect(composeText).not.toMatch(/BEGIN|PRIVATE KEY/);
    for (const name of ["nats-prepare", "ingest-worker-1", "ingest-worker-2"]) {
      expect(services[name]?.environment, name).toBeUndefined();
      // Never the rendered route-pki folder itself (it holds every node's and every worker's key).
      expect(mountsOf(name).map((m) => m.source)).not.toContain("STATE/nats-cluster/docker/route-pki");
    }
  });
});

/** The rendered configuration of every node, runnable here: container paths → host paths through the compose mounts. */
async function nativeConfigs(
  dataRoot: string,
): Promise<{ files: string[]; natsUrls: string[]; http: number[] }> {
  const ports = await Promise.all(
    DOCKER_NODES.map(async () => ({
      client: await findFreePort("127.0.0.1"),
      cluster: await findFreePort("127.0.0.1"),
      mqtt: await findFreePort("127.0.0.1"),
      http: await findFreePort("127.0.0.1"),
    })),
  );
  const files: string[] = [];
  for (const [i, node] of DOCKER_NODES.entries()) {
    const p = ports[i]!;
    const mounts = mountsOf(dockerService(node)).filter((m) => m.target !== DOCKER_NATS_PATHS.config);
    const hostPath = (path: string): string => {
      const m = mounts.find((x) => path.startsWith(`${x.target}/`));
      if (!m) throw new Error(`${node}: ${path} lies under no mount`);
      const source = m.source.startsWith("STATE/")
        ? join(stateDir, m.source.slice("STATE/".length))
        : join(dataRoot, m.source); // a named volume
      return join(source, path.slice(m.target.length));
    };
    let text = await readFile(join(dockerStateDir(stateDir), `${node}.conf`), "utf8");
    text = text.replace(/"(\/(?:etc|data)\/[^"]+)"/g, (_m, path: string) => JSON.stringify(hostPath(path)));
    const config = JSON.parse(text) as NodeConfig & { cluster: { listen: string; routes: string[] } };
    config.listen = `127.0.0.1:${p.client}`;
    config.http = `127.0.0.1:${p.http}`;
    config.cluster.listen = `127.0.0.1:${p.cluster}`;
    config.cluster.routes = config.cluster.routes.map((r) => {
      const peer = DOCKER_NODES.findIndex((n) => r === `nats-route://${dockerService(n)}:6222`);
      // The route certificates name `localhost` beside the service names.
      return `nats-route://localhost:${ports[peer]!.cluster}`;
    });
    config.mqtt.listen = `127.0.0.1:${p.mqtt}`;
    const file = join(dataRoot, `${node}.native.conf`);
    await mkdir(join(dataRoot, `nats-${node}-data`), { recursive: true });
    await writeFile(file, JSON.stringify(config), { mode: 0o600 });
    files.push(file);
  }
  return {
    files,
    natsUrls: ports.map((p) => `tls://localhost:${p.client}`),
    http: ports.map((p) => p.http),
  };
}

async function healthy(httpPort: number): Promise<boolean> {
  try {
    const res = await fetch(`http://127.0.0.1:${httpPort}/healthz`, { signal: AbortSignal.timeout(1000) });
    return res.status === 200;
  } catch {
    return false;
  }
}

describe("the rendered configurations on real nats-server processes", () => {
  const children: ChildProcess[] = [];
  let natsUrls: string[] = [];
  const logs: string[] = [];
  const adminTls = () => identityFiles(join(routePkiDir(), `client-${CLUSTER_ADMIN}`));

  beforeAll(async () => {
    const dataRoot = join(stateDir, "native");
    await mkdir(dataRoot, { recursive: true });
    const native = await nativeConfigs(dataRoot);
    natsUrls = native.natsUrls;
    for (const file of native.files) {
      const child = spawn(defaultNatsServerBinary(), ["-c", file], { stdio: ["ignore", "pipe", "pipe"] });
      child.stderr?.setEncoding("utf8").on("data", (c: string) => logs.push(c));
      children.push(child);
    }
    const deadline = Date.now() + 30_000;
    for (const port of native.http)
      while (!(await healthy(port))) {
        if (Date.now() > deadline) throw new Error(`nodes not healthy: ${logs.join("").slice(-3000)}`);
        await new Promise((r) => setTimeout(r, 200));
      }
  }, 60_000);
  afterAll(async () => {
    for (const c of children) {
      if (c.exitCode !== null || c.signalCode !== null) continue;
      const gone = new Promise((r) => c.once("exit", r));
      c.kill("SIGTERM");
      await gone;
    }
  });

  const cli = (args: string[]) =>
    promisify(execFile)(
      process.execPath,
      ["--import", "tsx", "host/src/cli/nats-cluster.ts", "prepare-jetstream", ...args],
      { cwd: repoRoot(), env: { ...process.env, EST_STATE_DIR: stateDir } },
    );

  it("prepare-jetstream creates $MQTT_msgs (limits, R3) and the durables; a second run changes nothing", async () => {
    // The default identity: the cluster admin render-docker wrote into the state folder.
    const first = await cli(["--servers", natsUrls.join(",")]);
    expect(first.stderr).toContain(`${MQTT_MESSAGE_STREAM}: created (limits retention, 3 replicas`);
    for (const d of Object.values(INGEST_DURABLES)) expect(first.stderr).toContain(`durable ${d.name}`);
    expect(first.stderr).toMatch(/prepared: created \$MQTT_msgs, ingest-telemetry, ingest-status/);

    const second = await cli(["--servers", natsUrls.join(",")]);
    expect(second.stderr).toContain("already prepared: nothing changed");
    expect(second.stderr).not.toMatch(/: created/);

    const nc = await natsAdminConnection(natsUrls, adminTls());
    try {
      const jsm = await jetstreamManager(nc);
      const info = await jsm.streams.info(MQTT_MESSAGE_STREAM);
      expect(info.config.retention).toBe("limits");
      expect(info.config.num_replicas).toBe(3);
      expect(info.config.subjects).toEqual([MQTT_MESSAGE_SUBJECTS]);
      const names: string[] = [];
      for await (const c of jsm.consumers.list(MQTT_MESSAGE_STREAM)) names.push(c.name);
      expect(names.sort()).toEqual(
        Object.values(INGEST_DURABLES)
          .map((d) => d.name)
          .sort(),
      );
    } finally {
      await nc.close();
    }
  }, 60_000);

  it("a rendered worker identity pulls and acknowledges from its durable, and may not manage streams", async () => {
    const admin = await natsAdminConnection(natsUrls, adminTls());
    const workerTls = identityFiles(join(routePkiDir(), "client-ingest-worker-1"));
    let worker: NatsConnection | undefined;
    try {
      await jetstream(admin).publish("$MQTT.msgs.electrolyser.dev-0001.telemetry", "reading");
      worker = await connect({
        servers: natsUrls,
        tls: { certFile: workerTls.cert, keyFile: workerTls.key, caFile: workerTls.ca },
        timeout: 10_000,
      });
      const consumer = await jetstream(worker).consumers.get(
        MQTT_MESSAGE_STREAM,
        INGEST_DURABLES.telemetry.name,
      );
      const msg = await consumer.next({ expires: 5000 });
      expect(msg?.string()).toBe("reading");
      await msg!.ackAck();
      // workerPermissions() allows no stream API: the server refuses the request.
      await expect(
        jetstreamManager(worker, { timeout: 3000 }).then((jsm) => jsm.streams.delete(MQTT_MESSAGE_STREAM)),
      ).rejects.toThrow(/permissions violation.*\$JS\.API\.STREAM\.DELETE/i);
      const info = await (await jetstreamManager(admin)).streams.info(MQTT_MESSAGE_STREAM);
      expect(info.state.messages).toBe(1); // limits retention: kept after the ack, and not deleted
    } finally {
      await worker?.close();
      await admin.close();
    }
  }, 30_000);

  it("refuses a $MQTT_msgs with interest retention, creating no durable on it", async () => {
    const admin = await natsAdminConnection(natsUrls, adminTls());
    try {
      const jsm = await jetstreamManager(admin);
      await jsm.streams.delete(MQTT_MESSAGE_STREAM);
      // What 2.9.10's MQTT layer makes at the first CONNECT when nothing prepared the stream.
      await jsm.streams.add({
        name: MQTT_MESSAGE_STREAM,
        subjects: [MQTT_MESSAGE_SUBJECTS],
        retention: "interest",
        num_replicas: 3,
      });
      const log: string[] = [];
      await expect(
        prepareJetStream({ servers: natsUrls, tls: adminTls(), replicas: 3, log: (l) => log.push(l) }),
      ).rejects.toThrow(MessageStreamRetentionError);
      const names: string[] = [];
      for await (const c of jsm.consumers.list(MQTT_MESSAGE_STREAM)) names.push(c.name);
      expect(names).toEqual([]);
      const out = await cli(["--servers", natsUrls.join(","), "--timeout", "5"]).then(
        () => "exit 0",
        (err: { code: number; stderr: string }) => `exit ${err.code}: ${err.stderr}`,
      );
      expect(out).toMatch(/^exit 1: .*exists with interest retention/s);
    } finally {
      await admin.close();
    }
  }, 60_000);
});
