/** docker-compose's nats-cluster profile gets the node configurations render-docker writes, at the paths they name. */
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse } from "yaml";
import { ensureDevPki } from "../../../../pki/src/index";
import {
  DOCKER_NATS_PATHS,
  DOCKER_NODES,
  dockerService,
  dockerStateDir,
  renderDockerCluster,
} from "../../../src/broker/nats/docker";
import type { NodeConfig } from "../../../src/broker/nats/node-config";
import { repoRoot } from "../../../../shared/state-dir";

interface Service {
  profiles?: string[];
  volumes?: string[];
  command?: string[];
}

let stateDir: string;
let services: Record<string, Service>;

beforeAll(async () => {
  stateDir = await mkdtemp(join(tmpdir(), "est-nats-docker-"));
  const pki = await ensureDevPki({
    stateDir,
    devices: ["dev-0001", "dev-0002"],
    services: ["ingest", "monitor"],
    deviceKeyType: "p256",
  });
  const users = await renderDockerCluster(stateDir, pki);
  expect(users.users.map((u) => u.name).sort()).toEqual(["dev-0001", "dev-0002", "ingest", "monitor"]);
  services = (
    parse(await readFile(join(repoRoot(), "docker-compose.yml"), "utf8")) as {
      services: Record<string, Service>;
    }
  ).services;
}, 120_000);
afterAll(() => rm(stateDir, { recursive: true, force: true }));

describe("docker-compose nats-cluster profile", () => {
  it.each([...DOCKER_NODES])(
    "%s: mounts its own rendered config, and every file the config names lies under a mount",
    async (node) => {
      const service = services[dockerService(node)];
      expect(service?.profiles).toEqual(["nats-cluster"]);
      const mounts = (service?.volumes ?? []).map((v) => {
        const [source = "", target = ""] = v.replace("${EST_STATE_DIR:-./.state}", "STATE").split(":");
        return { source, target };
      });
      expect(mounts).toContainEqual({
        source: `STATE/nats-cluster/docker/${node}.conf`,
        target: DOCKER_NATS_PATHS.config,
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
    },
  );
});
