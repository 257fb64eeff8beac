/**
 * The nats-cluster profile of docker-compose.yml: the three nodes' configurations with container paths, rendered
 * from the state folder's PKI into `<state>/nats-cluster/docker/` (they name every device, so they are generated,
 * not committed). `npm run nats-cluster -- render-docker`; run it again after the PKI changes, then restart the
 * nodes one at a time (`docker compose restart nats-n1`, wait for healthy, then n2, n3).
 *
 * Like the native launcher (cluster.ts) it issues the NATS-port identities from the route CA
 * (nats-clients.ts): `cluster-admin`, which `npm run nats-cluster -- prepare-jetstream` (compose's
 * `nats-prepare`) uses to create `$MQTT_msgs` with limits retention and the durables, and one per JetStream
 * ingest worker, each a user of the node configurations with workerPermissions().
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import type { PkiPaths } from "../../../../pki/src/index";
import { writeFileAtomic } from "../../../../shared/state-dir";
import { fleetUsers, type FleetUsers } from "./fleet-users";
import { natsClientIdentities } from "./nats-clients";
import { nodeConfig, renderNodeConfig, type ClusterNode } from "./node-config";
import { pkiClientCertificates } from "./pki-clients";
import { ensureRoutePki, type RoutePki } from "./route-pki";

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

export const DOCKER_NODE_PORTS = { client: 4222, cluster: 6222, mqtt: 8883, http: 8222 } as const;
/** The JetStream ingest workers docker-compose.yml runs (`ingest-worker-1`, `-2`); render-docker's default. */
export const DOCKER_INGEST_WORKERS = 2;

export interface DockerRenderOptions {
  /** Identities for this many JetStream ingest workers; default DOCKER_INGEST_WORKERS. */
  ingestWorkers?: number;
}

export interface DockerRender {
  users: FleetUsers;
  routePki: RoutePki;
  /** `ingest-worker-1`…: route-PKI client identities written beside the route CA. */
  workers: string[];
}

export function dockerStateDir(stateDir: string): string {
  return join(stateDir, "nats-cluster", "docker");
}

export async function renderDockerCluster(
  stateDir: string,
  pki: PkiPaths,
  o: DockerRenderOptions = {},
): Promise<DockerRender> {
  const out = dockerStateDir(stateDir);
  const clients = natsClientIdentities(o.ingestWorkers ?? DOCKER_INGEST_WORKERS);
  const routePki = await ensureRoutePki(
    join(out, "route-pki"),
    DOCKER_NODES,
    [...DOCKER_NODES.map(dockerService), "localhost"],
    clients.names,
  );
  const users = fleetUsers({
    certificates: await pkiClientCertificates(pki),
    crlPem: await readFile(pki.crl, "utf8"),
    now: new Date(),
  });
  const nodes: ClusterNode[] = DOCKER_NODES.map((name) => ({
    name,
    ports: DOCKER_NODE_PORTS,
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
      natsClients: clients.users,
    });
    await writeFileAtomic(join(out, `${name}.conf`), renderNodeConfig(config), 0o600);
  }
  return { users, routePki, workers: clients.workers };
}
