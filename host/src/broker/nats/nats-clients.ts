/**
 * Who may use the cluster's NATS protocol port (route-CA client certificates, route-pki.ts): the launcher's
 * `cluster-admin` (every right: it creates `$MQTT_msgs` and the durables) and the JetStream ingest workers
 * (workerPermissions()). One list for the native launcher (cluster.ts) and docker-compose (docker.ts), so both
 * issue the same identities and put the same users in the node configurations.
 */
import { workerPermissions } from "./message-stream";
import type { NatsClient } from "./node-config";
import { clientDn } from "./route-pki";

/** The launcher's own identity on the NATS port (route CA): it creates the message stream. */
export const CLUSTER_ADMIN = "cluster-admin";

export function ingestWorkerName(n: number): string {
  return `ingest-worker-${n}`;
}

export interface NatsClientIdentities {
  /** Route-CA client certificates to issue (ensureRoutePki's `clients`): the admin first, then the workers. */
  names: string[];
  workers: string[];
  /** The node configurations' NATS-port users (nodeConfig's `natsClients`). */
  users: NatsClient[];
}

export function natsClientIdentities(ingestWorkers: number): NatsClientIdentities {
  if (!Number.isInteger(ingestWorkers) || ingestWorkers < 0)
    throw new Error(`nats-cluster: invalid ingest worker count ${ingestWorkers}`);
  const workers = Array.from({ length: ingestWorkers }, (_, i) => ingestWorkerName(i + 1));
  return {
    names: [CLUSTER_ADMIN, ...workers],
    workers,
    users: [
      { dn: clientDn(CLUSTER_ADMIN) },
      ...workers.map((w) => ({ dn: clientDn(w), permissions: workerPermissions() })),
    ],
  };
}
