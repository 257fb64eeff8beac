#!/usr/bin/env node
// `npm run stack`: the whole pipeline without Docker — Debian's mosquitto with the project's
// configuration, Debian's victoria-metrics as the store (it takes InfluxDB line protocol on
// /api/v2/write), and the ingest; with --broker nats-cluster three nats-server nodes and N JetStream ingest
// workers instead (host/src/ingest/supervisor.ts restarts one that dies). Ctrl-C stops the ingest(s) first (they
// flush and acknowledge), then the store, then the broker. Grafana is not part of it (no Debian package): point a Grafana
// at the store with infra/grafana/provisioning/victoriametrics (see README).
import { join } from "node:path";
import yargs from "yargs";
import { hideBin } from "yargs/helpers";
import { startMosquitto } from "../broker/mosquitto";
import { CrlKeeper, localCrlResigner } from "../broker/crl-keeper";
import { prepareLauncherRevocation } from "../broker/revocation-setup";
import type { RevocationSync } from "../broker/revocation-sync";
import { startNatsClusterBroker, type StackNatsCluster } from "../broker/nats/stack-broker";
import { ingestWorkerName, jetstreamWorkerArgs } from "../broker/nats/cluster";
import {
  metricsPortFor,
  superviseIngests,
  type IngestSpec,
  type IngestSupervisor,
} from "../ingest/supervisor";
import { prepareState } from "../setup/prepare";
import { stateDir } from "../../../shared/state-dir";
import { startVictoriaMetrics, type VictoriaMetricsHandle } from "../store/victoria-metrics";
import { parseRetention } from "../store/retention";
import { startPkiExpiryExporter } from "../store/pki-expiry";
import { startBrokerConnectionsExporter } from "../store/broker-connections";
import { BrokerConnectionLog } from "../broker/connection-log";

const log = (line: string) => console.error(`${new Date().toISOString()} stack: ${line}`);

/** nats-cluster runs this many JetStream ingest workers unless --ingest-workers says otherwise. */
const DEFAULT_NATS_WORKERS = 2;

async function main(): Promise<void> {
  const argv = await yargs(hideBin(process.argv))
    .scriptName("npm run stack --")
    .usage(
      "$0 [options]\n\nRuns mosquitto (mTLS), victoria-metrics and the ingest until Ctrl-C; with --broker nats-cluster, three nats-server nodes and --ingest-workers JetStream ingest workers instead. An ingest that exits is restarted (1 s, 2 s, 4 s … 30 s backoff). " +
        "State (PKI, broker and store data) lives in $EST_STATE_DIR or <repo>/.state.",
    )
    .option("broker", {
      type: "string",
      choices: ["mosquitto", "nats-cluster"],
      default: "mosquitto",
      describe:
        "mosquitto: one node (default); nats-cluster: three nats-server nodes, JetStream R3 (MQTT 3.1.1)",
    })
    .option("broker-port", {
      type: "number",
      default: 8883,
      describe: "MQTT over TLS port (0: a free one); nats-cluster uses it and the next two",
    })
    .option("bind", { type: "string", default: "127.0.0.1", describe: "Address the broker listens on" })
    .option("store-port", {
      type: "number",
      default: 8428,
      describe: "VictoriaMetrics HTTP port (0: a free one)",
    })
    .option("metrics-port", {
      type: "number",
      default: 9464,
      describe: "Ingest /metrics port (0: a free one); worker N of --ingest-workers listens on this + N - 1",
    })
    .option("ingest-workers", {
      type: "number",
      describe: `nats-cluster: this many ingest workers sharing the cluster's JetStream durables, each with its own identity (default ${DEFAULT_NATS_WORKERS}); mosquitto: 1 only (Debian's 2.0.11 loses shared subscriptions over a restart)`,
    })
    .option("encrypted", { type: "boolean", describe: "The fleet seals payloads (emulator: --encrypt)" })
    .option("plain", { type: "boolean", describe: "The fleet sends plain JSON payloads (default)" })
    .option("retention", {
      type: "string",
      default: "30d",
      describe: "Store retention (h, d or w), for VictoriaMetrics and the ingest",
    })
    .check((a) => {
      if (a.encrypted && a.plain) throw new Error("choose one of --encrypted and --plain");
      parseRetention(a.retention);
      const n = a["ingest-workers"];
      if (n !== undefined && (!Number.isInteger(n) || n < 1))
        throw new Error(`--ingest-workers must be a positive integer (got ${n})`);
      if (a.broker === "mosquitto" && n !== undefined && n !== 1)
        throw new Error(
          "--ingest-workers: mosquitto runs one ingest. Several would need shared subscriptions, which Debian's Mosquitto 2.0.11 forgets over a broker restart (it then drops what boards publish); use --broker nats-cluster, or run `npm run ingest -- --shared` yourself on Mosquitto >= 2.0.12",
        );
      return true;
    })
    .strict()
    .help()
    .parseAsync();

  const state = stateDir();
  const nats = argv.broker === "nats-cluster";
  const workerCount = nats ? (argv["ingest-workers"] ?? DEFAULT_NATS_WORKERS) : 1;
  const pki = await prepareState(state, log);

  let broker: { url: string; urls: string[]; pid: number; pids: number[]; stop(): Promise<void> } | undefined;
  let store: VictoriaMetricsHandle | undefined;
  let natsCluster: StackNatsCluster | undefined;
  let ingests: IngestSupervisor | undefined;
  let keeper: CrlKeeper | undefined;
  let sync: RevocationSync | undefined;
  let expiry: { stop(): void } | undefined;
  let connections: { stop(): void } | undefined;
  // Connects, lost connections and refused handshakes from Mosquitto's log, for the Fleet Security dashboard.
  const connectionLog = new BrokerConnectionLog();
  let stopping: Promise<void> | undefined;
  const stopAll = (): Promise<void> => {
    stopping ??= (async () => {
      expiry?.stop();
      connections?.stop();
      await keeper?.stop();
      await sync?.stop();
      // Ingest first, so it can write and acknowledge what it holds while store and broker are up.
      await ingests?.stop(30_000);
      await store?.stop();
      await broker?.stop();
    })();
    return stopping;
  };
  const onSignal = (signal: string) => {
    log(`${signal}: stopping ingest, store and broker`);
    stopAll().then(
      () => {
        log("stopped");
        process.exit(0);
      },
      (err: unknown) => {
        console.error(`stack: stopping failed: ${err instanceof Error ? err.message : String(err)}`);
        process.exit(1);
      },
    );
  };
  process.on("SIGINT", () => onSignal("SIGINT"));
  process.on("SIGTERM", () => onSignal("SIGTERM"));

  try {
    if (nats) {
      if (argv.bind !== "127.0.0.1") throw new Error("--broker nats-cluster listens on 127.0.0.1 only");
      log("starting three nats-server nodes (JetStream R3)");
      broker = natsCluster = await startNatsClusterBroker({
        pki,
        dataDir: join(state, "stack", "nats-cluster"),
        firstPort: argv["broker-port"],
        ingestWorkers: workerCount,
        log,
      });
      log(`nats-cluster: ${broker.urls.join(" ")} (pids ${broker.pids.join(", ")})`);
    } else {
      log("starting mosquitto");
      const resign = await localCrlResigner(state);
      const loadedCrl = await CrlKeeper.prepare(pki.crl, resign);
      const brokerDir = join(state, "stack", "broker");
      const revocation = await prepareLauncherRevocation({ stateDir: state, dataDir: brokerDir, log });
      const m = await startMosquitto({
        dynsec: revocation?.prepared.dynsec,
        pki,
        port: argv["broker-port"],
        bind: argv.bind,
        dataDir: brokerDir,
        logFile: join(state, "stack", "broker", "mosquitto.log"),
        onLogLine: (line) => connectionLog.feed(line),
      });
      broker = {
        url: m.url,
        urls: [m.url],
        get pid() {
          return m.pid;
        },
        get pids() {
          return [m.pid];
        },
        stop: () => m.stop(),
      };
      log(`mosquitto: ${m.url} (pid ${m.pid})`);
      // Re-signs the CRL before it lapses and restarts the broker onto it (persistence keeps the sessions);
      // cuts off revoked identities through the dynamic-security plugin.
      const cutter = (sync = await revocation?.attach(m.url));
      keeper = new CrlKeeper(loadedCrl, {
        crlPath: pki.crl,
        resignIfDue: resign,
        restart: () => m.restart(),
        onNewRevocations: cutter ? (serials) => cutter.onNewRevocations(serials) : undefined,
        log,
      });
      keeper.start();
    }
    store = await startVictoriaMetrics({
      dataDir: join(state, "stack", "victoria-metrics"),
      port: argv["store-port"] || undefined,
      retentionPeriod: argv.retention,
    });
    log(`victoria-metrics: ${store.url} (pid ${store.pid})`);
    // Expiry of every certificate and CRL, for the 30-day alert rule (est-pki-expiry).
    expiry = startPkiExpiryExporter({ stateDir: state, storeUrl: store.url, log });
    if (!nats) connections = startBrokerConnectionsExporter({ storeUrl: store.url, log }, connectionLog);
    const common = [
      "--store-url",
      store.url,
      argv.encrypted ? "--encrypted" : "--plain",
      "--retention",
      argv.retention,
    ];
    const cluster = natsCluster?.cluster;
    const specs: IngestSpec[] = cluster
      ? Array.from({ length: workerCount }, (_, i) => ({
          name: ingestWorkerName(i + 1),
          metricsPort: metricsPortFor(argv["metrics-port"], i),
          args: (port: number) => [
            ...jetstreamWorkerArgs(cluster, i + 1),
            ...common,
            "--metrics-port",
            String(port),
            // One file per worker: each counts its own first 1,000 per device and reason.
            "--dead-letter",
            join(state, "ingest", `dead-letter-${ingestWorkerName(i + 1)}.jsonl`),
          ],
        }))
      : [
          {
            name: "ingest",
            metricsPort: argv["metrics-port"],
            args: (port: number) => ["--broker", broker!.url, ...common, "--metrics-port", String(port)],
          },
        ];
    ingests = await superviseIngests({ specs, env: { ...process.env, EST_STATE_DIR: state }, log });
    for (const i of ingests.ingests)
      log(`${i.name}: metrics http://127.0.0.1:${i.metricsPort}/metrics (pid ${i.pid})`);
  } catch (err) {
    await stopAll();
    throw err;
  }

  log(
    `ready. Boards: npm run emulate -- --broker ${broker.urls.join(",")} --mint-into-ca ${state}; PromQL: ${store.url}/vmui; Ctrl-C stops.`,
  );
  // For scripts and tests: one JSON line on stdout.
  console.log(
    JSON.stringify({
      ready: true,
      broker: broker.url,
      brokers: broker.urls,
      store: store.url,
      ingestMetrics: `http://127.0.0.1:${ingests.ingests[0]!.metricsPort}/metrics`,
      ingests: ingests.ingests.map((i) => ({
        name: i.name,
        pid: i.pid,
        metrics: `http://127.0.0.1:${i.metricsPort}/metrics`,
      })),
      pids: {
        [argv.broker]: nats ? broker.pids : broker.pid,
        victoriaMetrics: store.pid,
        ingest: nats ? ingests.ingests.map((i) => i.pid) : ingests.ingests[0]!.pid,
      },
    }),
  );
}

main().catch((err: unknown) => {
  console.error(`stack: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
