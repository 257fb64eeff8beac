/**
 * The nats-cluster broker as `npm run stack` runs it: three nodes fed from the state folder's PKI, and a
 * watch on that PKI, so an issued, rotated or revoked certificate reaches the nodes without a restart of
 * the stack (cluster.refresh(): SIGHUP for users, a rolling restart for pinned certificates).
 */
import { watch, type FSWatcher } from "node:fs";
import type { PkiPaths } from "../../../../pki/src/index";
import { startNatsCluster, type NatsClusterHandle } from "./cluster";
import { pkiClientCertificates } from "./pki-clients";

export interface StackNatsCluster {
  url: string;
  urls: string[];
  readonly pid: number;
  readonly pids: number[];
  cluster: NatsClusterHandle;
  stop(): Promise<void>;
}

/** PKI writes come in bursts (certificate, key, database, CRL): one refresh after they settle. */
const SETTLE_MS = 1000;

export async function startNatsClusterBroker(o: {
  pki: PkiPaths;
  dataDir: string;
  /** MQTT ports firstPort, +1, +2; 0: free ports. */
  firstPort: number;
  /** Identities and durables for this many JetStream ingest workers (cluster.workerTls(1…N)). */
  ingestWorkers?: number;
  log: (line: string) => void;
}): Promise<StackNatsCluster> {
  const cluster = await startNatsCluster({
    pki: o.pki,
    clients: () => pkiClientCertificates(o.pki),
    dataDir: o.dataDir,
    ...(o.ingestWorkers ? { ingestWorkers: o.ingestWorkers } : {}),
    ...(o.firstPort > 0 ? { mqttPorts: [o.firstPort, o.firstPort + 1, o.firstPort + 2] } : {}),
  });
  const report = (what: string, skipped: NatsClusterHandle["current"]["skipped"]): void => {
    const left = skipped.filter((s) => s.reason !== "revoked" && s.reason !== "expired");
    o.log(`nats-cluster: ${what}; ${skipped.length} certificate(s) not admitted`);
    for (const s of left)
      o.log(
        `nats-cluster: not admitted: ${s.kind} ${s.name}${s.serial ? ` (${s.serial})` : ""}: ${s.reason}`,
      );
  };
  report(
    `${cluster.current.users.length} users, ${cluster.current.pins.length} pinned certificates`,
    cluster.current.skipped,
  );

  let timer: NodeJS.Timeout | undefined;
  let watcher: FSWatcher | undefined;
  /** The refresh under way: stop() waits for it, or a node it is restarting would outlive the stack. */
  let refreshing: Promise<void> | undefined;
  try {
    watcher = watch(o.pki.dir, { recursive: true }, (_event, file) => {
      if (typeof file === "string" && file.endsWith(".tmp")) return;
      clearTimeout(timer);
      timer = setTimeout(() => {
        refreshing = cluster.refresh().then(
          (r) =>
            report(
              `PKI changed: ${r.users} users; reloaded [${r.reloaded.join(", ")}], restarted [${r.restarted.join(", ")}]`,
              r.skipped,
            ),
          (err: unknown) =>
            o.log(`nats-cluster: refresh failed: ${err instanceof Error ? err.message : String(err)}`),
        );
      }, SETTLE_MS);
    });
  } catch (err) {
    o.log(
      `nats-cluster: cannot watch ${o.pki.dir} (${String(err)}); a PKI change needs a restart of the stack`,
    );
  }
  return {
    url: cluster.url,
    urls: cluster.urls,
    get pid() {
      return cluster.nodes[0]?.pid ?? -1;
    },
    get pids() {
      return cluster.nodes.map((n) => n.pid);
    },
    cluster,
    async stop() {
      clearTimeout(timer);
      watcher?.close();
      await refreshing;
      await cluster.stop();
    },
  };
}
