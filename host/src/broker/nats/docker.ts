/**
 * The nats-cluster profile of docker-compose.yml: the three nodes' configurations with container paths, rendered
 * from the state folder's PKI into `<state>/nats-cluster/docker/` (they name every device, so they are generated,
 * not committed). `npm run nats-cluster -- render-docker`; run it again after the PKI changes, then restart the
 * nodes one at a time (`docker compose restart nats-n1`, wait for healthy, then n2, n3).
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import type { PkiPaths } from "../../../../pki/src/index";
import { writeFileAtomic } from "../../../../shared/state-dir";
import { fleetUsers, type FleetUsers } from "./fleet-users";
import { nodeConfig, renderNodeConfig, type ClusterNode } from "./node-config";
import { pkiClientCertificates } from "./pki-clients";
import { ensureRoutePki } from "./route-pki";

export const DOCKER_NODES = ["n1", "n2", "n3"] as const;
/** Compose service name of a node, which is also its host name on the compose network. */
export const dockerService = (node: string): string => `nats-${node}`;

/** Where docker-compose.yml mounts things inside each node's container. */
export const DOCKER_NATS_PATHS = {
  config: "/etc/nats/nats.conf",
  pkiPublic: "/etc/nats/pki/public",
  brokerDir: "/etc/nats/pki/broker",
  routeDir: "/etc/nats/routes",
  data: "/data",
} as const;

const PORTS = { client: 4222, cluster: 6222, mqtt: 8883, http: 8222 };

export function dockerStateDir(stateDir: string): string {
  return join(stateDir, "nats-cluster", "docker");
}

export async function renderDockerCluster(stateDir: string, pki: PkiPaths): Promise<FleetUsers> {
  const out = dockerStateDir(stateDir);
  await ensureRoutePki(join(out, "route-pki"), DOCKER_NODES, [
    ...DOCKER_NODES.map(dockerService),
    "localhost",
  ]);
  const users = fleetUsers({
    certificates: await pkiClientCertificates(pki),
    crlPem: await readFile(pki.crl, "utf8"),
    now: new Date(),
  });
  const nodes: ClusterNode[] = DOCKER_NODES.map((name) => ({
    name,
    ports: PORTS,
    address: dockerService(name),
  }));
  const p = DOCKER_NATS_PATHS;
  for (const name of DOCKER_NODES) {
    const config = nodeConfig({
      node: name,
      nodes,
      host: "0.0.0.0",
      clusterName: "electrolyser",
      jetStreamDir: `${p.data}/jetstream`,
      mqttTls: {
        cert: `${p.brokerDir}/cert.pem`,
        key: `${p.brokerDir}/key.pem`,
        ca: `${p.pkiPublic}/ca-bundle.pem`,
      },
      routeTls: {
        cert: `${p.routeDir}/${name}.pem`,
        key: `${p.routeDir}/${name}.key.pem`,
        ca: `${p.routeDir}/ca.pem`,
      },
      users: users.users,
      pins: users.pins,
    });
    await writeFileAtomic(join(out, `${name}.conf`), renderNodeConfig(config), 0o600);
  }
  return users;
}
