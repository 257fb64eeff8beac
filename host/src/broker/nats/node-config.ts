/**
 * The configuration of one node of the three-node NATS cluster (pure: text from values).
 *
 * nats-server reads JSON as its configuration format, so the file is JSON.stringify of an object: no
 * value (a path, a DN) can break out of its string and inject a directive.
 *
 * What each listener accepts:
 *   mqtt     the fleet: mutual TLS against the fleet CA bundle, TLS 1.2+ (Go's server minimum) with the
 *            firmware's ECDHE AES-128-GCM suites, the certificate's subject DN is the user (verify_and_map),
 *            only the public keys of currently valid certificates (pinned_certs: NATS 2.9 reads no CRL).
 *   cluster  the other two nodes only: mutual TLS against the cluster's own route CA (route-pki.ts), so a
 *            fleet certificate can never join as a route.
 *   client   (the NATS protocol port, which cannot be switched off) the route CA too: a board's certificate
 *            cannot open a NATS connection, where MQTT's refusal of `$` topics would not apply.
 *   http     monitoring, loopback only: the launcher's readiness checks (/healthz, /jsz).
 */
import type { FleetUser } from "./fleet-users";
import { permissionsFor, type SubjectPermissions } from "./permissions";

export interface NodePorts {
  client: number;
  cluster: number;
  mqtt: number;
  http: number;
}

export interface ClusterNode {
  name: string;
  ports: NodePorts;
  /** Where the other nodes dial this one's route port; default `host` (docker-compose: the service name). */
  address?: string;
}

export interface TlsFiles {
  cert: string;
  key: string;
  ca: string;
}

export interface NodeConfigInput {
  /** This node's name; one of `nodes`. */
  node: string;
  nodes: readonly ClusterNode[];
  /** The address every listener binds, except monitoring, which stays on loopback; default 127.0.0.1. */
  host?: string;
  clusterName: string;
  jetStreamDir: string;
  /** The fleet side: the broker certificate and the CA bundle that issues client certificates. */
  mqttTls: TlsFiles;
  /** This node's route certificate and the route CA. */
  routeTls: TlsFiles;
  users: readonly FleetUser[];
  pins: readonly string[];
  ingestIdentity?: string;
  /** JetStream replicas of the MQTT streams; default min(nodes, 3). */
  streamReplicas?: number;
  /**
   * Users of the NATS protocol port, by the subject DN of their route-CA client certificate (route-pki.ts):
   * the launcher's `cluster-admin` (every right: it creates the message stream) and ingest workers
   * (permissions given). Fleet certificates never reach this port: it trusts the route CA only.
   */
  natsClients?: readonly NatsClient[];
}

export interface NatsClient {
  dn: string;
  /** Undefined: every right (the launcher's own identity). */
  permissions?: SubjectPermissions;
}

/** Go's names for the TLS 1.2 suites infra/mosquitto/mosquitto.conf.template allows (TLS 1.3's are not configurable in Go). */
export const MQTT_CIPHER_SUITES = [
  "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
  "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
  "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
  "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
] as const;

export const MQTT_MAX_ACK_PENDING = 5000;

/** Seconds for a TLS handshake: the ESP32's RSA-2048 client signature takes well over Go's 0.5 s default. */
const TLS_TIMEOUT_S = 5;

interface NatsUser {
  user: string;
  permissions?: SubjectPermissions;
}

export interface NodeConfig {
  server_name: string;
  listen: string;
  http: string;
  tls: Record<string, unknown>;
  jetstream: { store_dir: string };
  cluster: Record<string, unknown>;
  mqtt: Record<string, unknown>;
  authorization: { users: NatsUser[] };
}

function checkPort(what: string, port: number): number {
  if (!Number.isInteger(port) || port < 1 || port > 65535)
    throw new Error(`nats config: invalid ${what} port ${port}`);
  return port;
}

function checkPath(what: string, value: string): string {
  // eslint-disable-next-line no-control-regex
  if (value.length === 0 || /[\u0000-\u001f\u007f]/.test(value))
    throw new Error(`nats config: invalid ${what} "${value}"`);
  return value;
}

export function nodeConfig(input: NodeConfigInput): NodeConfig {
  const host = input.host ?? "127.0.0.1";
  const self = input.nodes.find((n) => n.name === input.node);
  if (!self) throw new Error(`nats config: node ${input.node} is not in the cluster`);
  if (new Set(input.nodes.map((n) => n.name)).size !== input.nodes.length)
    throw new Error("nats config: node names repeat");
  const all = input.nodes.flatMap((n) =>
    Object.entries(n.ports).map(([k, p]) => `${n.address ?? host}:${checkPort(`${n.name} ${k}`, p)}`),
  );
  if (new Set(all).size !== all.length) throw new Error("nats config: two listeners share a port");
  if (!/^[A-Za-z0-9_-]{1,32}$/.test(input.clusterName))
    throw new Error(`nats config: invalid cluster name ${input.clusterName}`);
  if (input.pins.length === 0) throw new Error("nats config: no valid client certificate to pin");

  const routeTls = {
    cert_file: checkPath("route certificate", input.routeTls.cert),
    key_file: checkPath("route key", input.routeTls.key),
    ca_file: checkPath("route CA", input.routeTls.ca),
    verify: true,
    timeout: TLS_TIMEOUT_S,
  };
  const replicas = input.streamReplicas ?? Math.min(input.nodes.length, 3);
  return {
    server_name: self.name,
    listen: `${host}:${self.ports.client}`,
    http: `127.0.0.1:${self.ports.http}`,
    // The NATS port maps the route-CA client certificate's DN to its user, as the MQTT port does for boards.
    tls: { ...routeTls, verify_and_map: true },
    jetstream: { store_dir: checkPath("JetStream directory", input.jetStreamDir) },
    cluster: {
      name: input.clusterName,
      listen: `${host}:${self.ports.cluster}`,
      routes: input.nodes
        .filter((n) => n !== self)
        .map((n) => `nats-route://${n.address ?? host}:${n.ports.cluster}`),
      // Boards and services are told nothing about routes; they have their own list of MQTT nodes.
      no_advertise: true,
      tls: routeTls,
    },
    mqtt: {
      listen: `${host}:${self.ports.mqtt}`,
      stream_replicas: replicas,
      // Unacknowledged QoS 1 deliveries per subscription (2.9's default is 1024). The ingest holds PUBACKs until
      // the store wrote the batch; its two subscriptions × this = its default --max-held (10,000).
      max_ack_pending: MQTT_MAX_ACK_PENDING,
      tls: {
        cert_file: checkPath("broker certificate", input.mqttTls.cert),
        key_file: checkPath("broker key", input.mqttTls.key),
        ca_file: checkPath("fleet CA bundle", input.mqttTls.ca),
        verify_and_map: true,
        timeout: TLS_TIMEOUT_S,
        cipher_suites: [...MQTT_CIPHER_SUITES],
        pinned_certs: [...input.pins],
      },
    },
    authorization: {
      users: [
        ...input.users.map((u) => ({
          user: u.dn,
          permissions: permissionsFor(u.name, u.kind, input.ingestIdentity),
        })),
        ...(input.natsClients ?? []).map((c) => ({
          user: checkPath("NATS client DN", c.dn),
          ...(c.permissions ? { permissions: c.permissions } : {}),
        })),
      ],
    },
  };
}

export function renderNodeConfig(config: NodeConfig): string {
  return `${JSON.stringify(config, null, 2)}\n`;
}

/**
 * nats-server 2.9.10 reloads `authorization` on SIGHUP but refuses a reload that changes anything under
 * `mqtt` ("config reload not supported for MQTT", and then applies none of it): new pins need a restart.
 */
export function reloadable(before: NodeConfig, after: NodeConfig): boolean {
  const { authorization: _a, ...restBefore } = before;
  const { authorization: _b, ...restAfter } = after;
  return JSON.stringify(restBefore) === JSON.stringify(restAfter);
}
