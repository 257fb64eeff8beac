/**
 * `nats-cluster`: three nats-server nodes on one host, JetStream R3, an mTLS MQTT listener on each, routes
 * over mTLS, users and per-device permissions generated from the PKI (node-config.ts, fleet-users.ts).
 * Every node runs in its own process group and is stopped by its PID.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { access, constants, mkdir, readFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { writeFileAtomic } from "../../../../shared/state-dir";
import { findFreePort } from "../../net/free-port";
import { LAUNCH_SCRIPT, type BrokerPki } from "../mosquitto";
import { waitForTls } from "../wait-tls";
import { fleetUsers, type ClientCertificate, type FleetUsers } from "./fleet-users";
import {
  nodeConfig,
  reloadable,
  renderNodeConfig,
  type ClusterNode,
  type NodeConfig,
  type NodePorts,
  type TlsFiles,
} from "./node-config";
import { ensureRoutePki, type RoutePki } from "./route-pki";
import { ensureMessageStream, type MessageStreamState } from "./message-stream";
import { CLUSTER_ADMIN, ingestWorkerName, natsClientIdentities } from "./nats-clients";
import { reapOnExit } from "../../process/reap-on-exit";

export interface StartNatsClusterOptions {
  /** The fleet side: CA bundle, CRL, broker certificate and key (PkiPaths fits). */
  pki: BrokerPki;
  /** Client certificates, read again on every refresh(); e.g. pkiClientCertificates(pkiPaths(state)). */
  clients: () => Promise<ClientCertificate[]>;
  /** The fleet manifest's device ids, read again on every refresh(); undefined: every device the PKI holds. */
  devicesInFleet?: () => Promise<ReadonlySet<string> | undefined>;
  dataDir: string;
  /** Default 3. */
  nodeCount?: number;
  /** Fixed MQTT ports, one per node (the CLI's 8883, 8884, 8885); default: free loopback ports. */
  mqttPorts?: readonly number[];
  ingestIdentity?: string;
  /** Default $NATS_SERVER_BIN or /usr/sbin/nats-server (Debian). */
  binary?: string;
  readyTimeoutMs?: number;
  onLogLine?: (node: string, line: string) => void;
  /** How long `$MQTT_msgs` keeps a message, acknowledged or not (message-stream.ts); default 24 h. */
  messageMaxAgeS?: number;
  /**
   * Identities for this many JetStream ingest workers (`ingest-worker-1`…, route-CA client certificates)
   * and their two durable consumers; default 0 (the MQTT ingest only).
   */
  ingestWorkers?: number;
}

export interface NatsNodeHandle {
  readonly name: string;
  readonly host: string;
  readonly mqttPort: number;
  /** Every listener's port (the NATS protocol port, routes, monitoring). */
  readonly ports: NodePorts;
  /** mqtts://127.0.0.1:PORT */
  readonly url: string;
  /** The running process id, or -1 while the node is down. */
  readonly pid: number;
  readonly configFile: string;
  logTail(): string[];
  /** Sends a signal to the node's process (SIGKILL for a crash test). */
  kill(signal: NodeJS.Signals): void;
  /** Resolves when the current process exits. */
  exited(): Promise<number | null>;
  /** Starts the node again after it stopped or was killed; resolves when it serves MQTT and JetStream is current. */
  start(): Promise<void>;
  /** SIGTERM, SIGKILL after a grace period. */
  stop(): Promise<void>;
}

export interface RefreshResult {
  users: number;
  pins: number;
  skipped: FleetUsers["skipped"];
  /** Nodes reloaded by SIGHUP (users and permissions changed). */
  reloaded: string[];
  /** Nodes restarted one after the other (the pinned certificates changed, which 2.9 cannot reload). */
  restarted: string[];
}

export interface NatsClusterHandle {
  readonly nodes: readonly NatsNodeHandle[];
  /** Every node's MQTT URL. */
  readonly urls: string[];
  /** The first node's MQTT URL. */
  readonly url: string;
  readonly dataDir: string;
  /** Who was let in at the last (re)generation. */
  readonly current: FleetUsers;
  /** `$MQTT_msgs` as the launcher found or made it: "limits" retention is the fix of message-stream.ts. */
  readonly messageStream: MessageStreamState;
  /** Every node's NATS port, `tls://127.0.0.1:PORT` (the ingest workers' --jetstream). */
  readonly natsUrls: string[];
  /** The TLS files of ingest worker `n` (1-based), for --jetstream-identity. */
  workerTls(n: number): TlsFiles;
  /** Regenerates every node's configuration from the PKI (and manifest) and applies it. */
  refresh(): Promise<RefreshResult>;
  /** Resolves when every node answers /healthz (JetStream current, a meta leader known). */
  waitHealthy(timeoutMs?: number): Promise<void>;
  stop(): Promise<void>;
}

const HOST = "127.0.0.1";
const CLUSTER_NAME = "electrolyser";
const LOG_TAIL_LINES = 400;
const STOP_TIMEOUT_MS = 15_000;
export { CLUSTER_ADMIN, ingestWorkerName };

/**
 * The ingest CLI's arguments that make it JetStream worker `n` (1-based) of `cluster`: every node's NATS port
 * and the worker's own route-CA identity (`npm run ingest -- --jetstream … --jetstream-identity …`).
 */
export function jetstreamWorkerArgs(
  cluster: Pick<NatsClusterHandle, "natsUrls" | "workerTls">,
  n: number,
): string[] {
  return [
    "--jetstream",
    cluster.natsUrls.join(","),
    "--jetstream-identity",
    cluster.workerTls(n).cert.replace(/\.pem$/, ""),
  ];
}

export function defaultNatsServerBinary(): string {
  return process.env.NATS_SERVER_BIN ?? "/usr/sbin/nats-server";
}

async function freePorts(count: number): Promise<number[]> {
  const ports = new Set<number>();
  while (ports.size < count) ports.add(await findFreePort(HOST));
  return [...ports];
}

async function httpJson(url: string, timeoutMs: number): Promise<{ status: number; body: unknown }> {
  const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
  const text = await res.text();
  try {
    return { status: res.status, body: JSON.parse(text) as unknown };
  } catch {
    return { status: res.status, body: text };
  }
}

/** /healthz is 200 once JetStream is enabled and current, which in a cluster needs a meta leader. */
async function nodeHealthy(httpPort: number): Promise<boolean> {
  try {
    const health = await httpJson(`http://${HOST}:${httpPort}/healthz`, 1000);
    if (health.status !== 200) return false;
    const jsz = await httpJson(`http://${HOST}:${httpPort}/jsz`, 1000);
    const meta = (jsz.body as { meta_cluster?: { leader?: string } }).meta_cluster;
    return typeof meta?.leader === "string" && meta.leader.length > 0;
  } catch {
    return false;
  }
}

class NatsNode implements NatsNodeHandle {
  readonly host = HOST;
  private child: ChildProcess | undefined;
  private exitPromise: Promise<number | null> = Promise.resolve(null);
  private readonly lines: string[] = [];
  private partial = "";
  private readonly watchers = new Set<(line: string) => void>();

  constructor(
    readonly spec: ClusterNode,
    readonly configFile: string,
    private readonly binary: string,
    private readonly caBundle: Buffer,
    private readonly readyTimeoutMs: number,
    private readonly onLine: ((node: string, line: string) => void) | undefined,
  ) {}

  get name(): string {
    return this.spec.name;
  }
  get ports(): NodePorts {
    return { ...this.spec.ports };
  }
  get mqttPort(): number {
    return this.spec.ports.mqtt;
  }
  get url(): string {
    return `mqtts://${HOST}:${this.spec.ports.mqtt}`;
  }
  get pid(): number {
    const c = this.child;
    return c && c.exitCode === null && c.signalCode === null && c.pid !== undefined ? c.pid : -1;
  }
  logTail(): string[] {
    return [...this.lines];
  }
  kill(signal: NodeJS.Signals): void {
    this.child?.kill(signal);
  }
  exited(): Promise<number | null> {
    return this.exitPromise;
  }

  private push(chunk: Buffer): void {
    const parts = (this.partial + chunk.toString("utf8")).split("\n");
    this.partial = parts.pop() ?? "";
    for (const line of parts) {
      this.lines.push(line);
      this.onLine?.(this.name, line);
      for (const w of this.watchers) w(line);
    }
    if (this.lines.length > LOG_TAIL_LINES) this.lines.splice(0, this.lines.length - LOG_TAIL_LINES);
  }

  /** Spawns the process; waitReady() tells when it serves. */
  spawn(): void {
    if (this.pid !== -1) throw new Error(`${this.name} is already running`);
    const proc = spawn("sh", ["-c", LAUNCH_SCRIPT, "sh", this.binary, this.configFile], {
      stdio: ["ignore", "pipe", "pipe"],
      detached: true,
    });
    const reaped = reapOnExit(proc);
    this.exitPromise = new Promise((res) => {
      proc.once("exit", (code, signal) => {
        reaped.forget();
        res(code ?? (signal ? null : 0));
      });
    });
    proc.once("error", (err) => this.push(Buffer.from(`spawn error: ${err.message}\n`)));
    proc.stdout?.on("data", (c: Buffer) => this.push(c));
    proc.stderr?.on("data", (c: Buffer) => this.push(c));
    if (proc.pid === undefined) throw new Error(`could not spawn nats-server for ${this.name}`);
    this.child = proc;
  }

  async waitReady(clusterHealthy: boolean): Promise<void> {
    const deadline = Date.now() + this.readyTimeoutMs;
    try {
      await waitForTls({
        host: HOST,
        port: this.mqttPort,
        ca: this.caBundle,
        timeoutMs: this.readyTimeoutMs,
        isDead: () => this.pid === -1,
      });
      if (!clusterHealthy) return;
      while (!(await nodeHealthy(this.spec.ports.http))) {
        if (this.pid === -1) throw new Error("the node exited");
        if (Date.now() > deadline) throw new Error(`JetStream not current within ${this.readyTimeoutMs} ms`);
        await new Promise((r) => setTimeout(r, 100));
      }
    } catch (err) {
      const tail = this.lines.filter((l) => /\[(ERR|FTL|WRN)\]/.test(l)).slice(-5);
      const msg = err instanceof Error ? err.message : String(err);
      throw new Error(
        `nats-server ${this.name} did not start: ${msg}${tail.length ? `\n${tail.join("\n")}` : ""}`,
      );
    }
  }

  async start(): Promise<void> {
    this.spawn();
    await this.waitReady(true);
  }

  /** SIGHUP, then the node's own report of the reload (it logs success or the reason it refused). */
  reload(): Promise<void> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.watchers.delete(watch);
        reject(new Error(`nats-server ${this.name} did not report its reload`));
      }, this.readyTimeoutMs);
      const watch = (line: string): void => {
        if (!/Reloaded server configuration|Failed to reload/.test(line)) return;
        this.watchers.delete(watch);
        clearTimeout(timer);
        if (line.includes("Failed")) reject(new Error(`nats-server ${this.name}: ${line}`));
        else resolve();
      };
      this.watchers.add(watch);
      this.kill("SIGHUP");
    });
  }

  async stop(): Promise<void> {
    const proc = this.child;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    proc.kill("SIGTERM");
    let timer: NodeJS.Timeout | undefined;
    const timedOut = await Promise.race([
      this.exitPromise.then(() => false),
      new Promise<boolean>((r) => {
        timer = setTimeout(() => r(true), STOP_TIMEOUT_MS);
      }),
    ]);
    clearTimeout(timer);
    if (timedOut) {
      proc.kill("SIGKILL");
      await this.exitPromise;
    }
  }
}

async function assertReadable(what: string, path: string): Promise<void> {
  try {
    await access(path, constants.R_OK);
  } catch {
    throw new Error(`nats-cluster: ${what} missing or unreadable: ${path}`);
  }
}

export async function startNatsCluster(o: StartNatsClusterOptions): Promise<NatsClusterHandle> {
  const binary = o.binary ?? defaultNatsServerBinary();
  try {
    await access(binary, constants.X_OK);
  } catch {
    throw new Error(
      `nats-server binary not found or not executable: ${binary} (Debian: apt-get install nats-server)`,
    );
  }
  await assertReadable("CA bundle", o.pki.caBundle);
  await assertReadable("CRL", o.pki.crl);
  await assertReadable("broker certificate", o.pki.broker.cert);
  await assertReadable("broker key", o.pki.broker.key);
  const count = o.nodeCount ?? 3;
  if (!Number.isInteger(count) || count < 1) throw new Error(`nats-cluster: invalid node count ${count}`);
  if (o.mqttPorts && o.mqttPorts.length !== count)
    throw new Error(`nats-cluster: ${count} nodes need ${count} MQTT ports`);

  const dataDir = resolve(o.dataDir);
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  const names = Array.from({ length: count }, (_, i) => `n${i + 1}`);
  const clients = natsClientIdentities(o.ingestWorkers ?? 0);
  const workers = clients.workers;
  const routePki: RoutePki = await ensureRoutePki(
    join(dataDir, "route-pki"),
    names,
    undefined,
    clients.names,
  );
  const caBundle = await readFile(o.pki.caBundle);
  const readyTimeoutMs = o.readyTimeoutMs ?? 30_000;

  const generate = async (
    nodes: readonly ClusterNode[],
  ): Promise<{ users: FleetUsers; configs: Map<string, NodeConfig> }> => {
    const [certificates, crlPem, devicesInFleet] = await Promise.all([
      o.clients(),
      readFile(o.pki.crl, "utf8"),
      o.devicesInFleet?.(),
    ]);
    const users = fleetUsers({
      certificates,
      crlPem,
      now: new Date(),
      ...(devicesInFleet ? { devicesInFleet } : {}),
    });
    const configs = new Map<string, NodeConfig>();
    for (const n of nodes) {
      configs.set(
        n.name,
        nodeConfig({
          node: n.name,
          nodes,
          host: HOST,
          clusterName: CLUSTER_NAME,
          jetStreamDir: join(dataDir, n.name, "jetstream"),
          mqttTls: {
            cert: resolve(o.pki.broker.cert),
            key: resolve(o.pki.broker.key),
            ca: resolve(o.pki.caBundle),
          },
          routeTls: routePki.node(n.name),
          users: users.users,
          pins: users.pins,
          natsClients: clients.users,
          ...(o.ingestIdentity ? { ingestIdentity: o.ingestIdentity } : {}),
        }),
      );
    }
    return { users, configs };
  };
  const write = async (configs: Map<string, NodeConfig>): Promise<void> => {
    for (const [name, config] of configs)
      await writeFileAtomic(join(dataDir, name, "nats.conf"), renderNodeConfig(config), 0o600);
  };

  let nodes: NatsNode[] = [];
  let current: { users: FleetUsers; configs: Map<string, NodeConfig> } | undefined;
  for (let attempt = 1; ; attempt++) {
    const ports = await freePorts(count * 4);
    const specs: ClusterNode[] = names.map((name, i) => ({
      name,
      ports: {
        client: ports[i * 4] ?? 0,
        cluster: ports[i * 4 + 1] ?? 0,
        mqtt: o.mqttPorts?.[i] ?? ports[i * 4 + 2] ?? 0,
        http: ports[i * 4 + 3] ?? 0,
      },
    }));
    current = await generate(specs);
    await write(current.configs);
    nodes = specs.map(
      (s) =>
        new NatsNode(s, join(dataDir, s.name, "nats.conf"), binary, caBundle, readyTimeoutMs, o.onLogLine),
    );
    for (const n of nodes) n.spawn();
    try {
      // A meta leader needs a quorum, so the nodes come up together and are waited for together.
      await Promise.all(nodes.map((n) => n.waitReady(true)));
      break;
    } catch (err) {
      const inUse = nodes.some((n) => n.logTail().some((l) => /address already in use/i.test(l)));
      await Promise.all(nodes.map((n) => n.stop()));
      if (inUse && !o.mqttPorts && attempt < 4) continue;
      throw err;
    }
  }

  // Before any MQTT client connects: the MQTT layer creates `$MQTT_msgs` at the first CONNECT otherwise.
  let messageStream: MessageStreamState;
  try {
    messageStream = await ensureMessageStream({
      servers: nodes.map((n) => `tls://${HOST}:${n.spec.ports.client}`),
      tls: routePki.client(CLUSTER_ADMIN),
      replicas: Math.min(count, 3),
      ingestDurables: workers.length > 0,
      ...(o.messageMaxAgeS !== undefined ? { maxAgeS: o.messageMaxAgeS } : {}),
    });
  } catch (err) {
    await Promise.all(nodes.map((n) => n.stop()));
    throw new Error(`nats-cluster: could not create the message stream: ${(err as Error).message}`);
  }
  if (messageStream.retention !== "limits")
    o.onLogLine?.(
      "launcher",
      `[WRN] $MQTT_msgs has ${messageStream.retention} retention (made by an earlier run): nats-server 2.9.10 can lose PUBACKed messages across node restarts with it; start from an empty data directory`,
    );

  const waitHealthy = async (timeoutMs = readyTimeoutMs): Promise<void> => {
    const deadline = Date.now() + timeoutMs;
    for (const n of nodes) {
      while (!(await nodeHealthy(n.spec.ports.http))) {
        if (Date.now() > deadline)
          throw new Error(`nats-cluster: ${n.name} not healthy within ${timeoutMs} ms`);
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  };

  let refreshing: Promise<RefreshResult> = Promise.resolve({
    users: 0,
    pins: 0,
    skipped: [],
    reloaded: [],
    restarted: [],
  });
  const handle: NatsClusterHandle = {
    nodes,
    urls: nodes.map((n) => n.url),
    url: nodes[0]?.url ?? "",
    dataDir,
    get current() {
      return current!.users;
    },
    messageStream,
    natsUrls: nodes.map((n) => `tls://${HOST}:${n.spec.ports.client}`),
    workerTls(n: number) {
      if (!Number.isInteger(n) || n < 1 || n > workers.length)
        throw new Error(`nats-cluster: no ingest worker ${n} (the cluster has ${workers.length})`);
      return routePki.client(ingestWorkerName(n));
    },
    waitHealthy,
    refresh() {
      // One refresh at a time: two rolling restarts must never overlap (quorum).
      refreshing = refreshing
        .catch(() => undefined)
        .then(async () => {
          const before = current!;
          const next = await generate(nodes.map((n) => n.spec));
          await write(next.configs);
          current = next;
          const result: RefreshResult = {
            users: next.users.users.length,
            pins: next.users.pins.length,
            skipped: next.users.skipped,
            reloaded: [],
            restarted: [],
          };
          for (const n of nodes) {
            const a = before.configs.get(n.name)!;
            const b = next.configs.get(n.name)!;
            if (renderNodeConfig(a) === renderNodeConfig(b) || n.pid === -1) continue;
            if (reloadable(a, b)) {
              await n.reload();
              result.reloaded.push(n.name);
            } else {
              // One node at a time, and only once the cluster is whole again, so JetStream keeps its quorum.
              await waitHealthy();
              await n.stop();
              await n.start();
              result.restarted.push(n.name);
            }
          }
          return result;
        });
      return refreshing;
    },
    async stop() {
      await Promise.all(nodes.map((n) => n.stop()));
    },
  };
  return handle;
}
