#!/usr/bin/env node
// `npm run stack`: the whole pipeline without Docker — Debian's mosquitto with the project's
// configuration, Debian's victoria-metrics as the store (it takes InfluxDB line protocol on
// /api/v2/write), and the ingest. Ctrl-C stops the ingest first (it flushes and acknowledges),
// then the store, then the broker. Grafana is not part of it (no Debian package): point a Grafana
// at the store with infra/grafana/provisioning/victoriametrics (see README).
import { spawn, type ChildProcess } from "node:child_process";
import { join } from "node:path";
import { createInterface } from "node:readline";
import yargs from "yargs";
import { hideBin } from "yargs/helpers";
import { startMosquitto } from "../broker/mosquitto";
import { CrlKeeper, localCrlResigner } from "../broker/crl-keeper";
import { prepareLauncherRevocation } from "../broker/revocation-setup";
import type { RevocationSync } from "../broker/revocation-sync";
import { startNatsClusterBroker } from "../broker/nats/stack-broker";
import { prepareState } from "../setup/prepare";
import { repoRoot, stateDir } from "../../../shared/state-dir";
import { startVictoriaMetrics, type VictoriaMetricsHandle } from "../store/victoria-metrics";
import { parseRetention } from "../store/retention";
import { startPkiExpiryExporter } from "../store/pki-expiry";
import { startBrokerConnectionsExporter } from "../store/broker-connections";
import { BrokerConnectionLog } from "../broker/connection-log";

const log = (line: string) => console.error(`${new Date().toISOString()} stack: ${line}`);

interface IngestProcess {
  child: ChildProcess;
  metricsPort: number;
}

function startIngest(args: string[], env: NodeJS.ProcessEnv): Promise<IngestProcess> {
  // Its own process group: a terminal's Ctrl-C reaches only this process, which then sends the
  // ingest one SIGTERM (flush, acknowledge, disconnect) rather than two signals at once.
  const child = spawn(
    process.execPath,
    ["--import", "tsx", join(repoRoot(), "host/src/cli/ingest.ts"), ...args],
    {
      cwd: repoRoot(),
      env,
      stdio: ["ignore", "pipe", "inherit"],
      detached: true,
    },
  );
  // Never outlive this process, however it ends.
  process.once("exit", () => {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
  });
  return new Promise((resolve, reject) => {
    const onExit = (code: number | null) => reject(new Error(`ingest exited (${code}) before it was ready`));
    child.once("exit", onExit);
    child.once("error", reject);
    createInterface({ input: child.stdout! }).on("line", (line) => {
      try {
        const msg = JSON.parse(line) as { ready?: boolean; metricsPort?: number };
        if (msg.ready) {
          child.off("exit", onExit);
          resolve({ child, metricsPort: msg.metricsPort ?? 0 });
        }
      } catch {
        console.log(line);
      }
    });
  });
}

async function stopChild(child: ChildProcess, graceMs: number): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), graceMs);
  await exited;
  clearTimeout(timer);
}

async function main(): Promise<void> {
  const argv = await yargs(hideBin(process.argv))
    .scriptName("npm run stack --")
    .usage(
      "$0 [options]\n\nRuns mosquitto (mTLS), victoria-metrics and the ingest until Ctrl-C.\n" +
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
      describe: "Ingest /metrics port (0: a free one)",
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
      return true;
    })
    .strict()
    .help()
    .parseAsync();

  const state = stateDir();
  const nats = argv.broker === "nats-cluster";
  const pki = await prepareState(state, log);

  let broker: { url: string; urls: string[]; pid: number; pids: number[]; stop(): Promise<void> } | undefined;
  let store: VictoriaMetricsHandle | undefined;
  let ingest: IngestProcess | undefined;
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
      if (ingest) await stopChild(ingest.child, 30_000);
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
      broker = await startNatsClusterBroker({
        pki,
        dataDir: join(state, "stack", "nats-cluster"),
        firstPort: argv["broker-port"],
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
    ingest = await startIngest(
      [
        "--broker",
        broker.url,
        "--store-url",
        store.url,
        argv.encrypted ? "--encrypted" : "--plain",
        "--metrics-port",
        String(argv["metrics-port"]),
        // NATS 2.9 speaks MQTT 3.1.1 only.
        ...(nats ? ["--mqtt-version", "4"] : []),
        "--retention",
        argv.retention,
      ],
      { ...process.env, EST_STATE_DIR: state },
    );
    log(`ingest: metrics http://127.0.0.1:${ingest.metricsPort}/metrics (pid ${ingest.child.pid})`);
    ingest.child.once("exit", (code) => {
      if (stopping) return;
      console.error(`stack: the ingest exited (${code}); stopping`);
      void stopAll().then(() => process.exit(1));
    });
  } catch (err) {
    await stopAll();
    throw err;
  }

  log(
    `ready. Boards: npm run emulate -- --broker ${broker.url} --mint-into-ca ${state}; PromQL: ${store.url}/vmui; Ctrl-C stops.`,
  );
  // For scripts and tests: one JSON line on stdout.
  console.log(
    JSON.stringify({
      ready: true,
      broker: broker.url,
      brokers: broker.urls,
      store: store.url,
      ingestMetrics: `http://127.0.0.1:${ingest.metricsPort}/metrics`,
      pids: {
        [argv.broker]: nats ? broker.pids : broker.pid,
        victoriaMetrics: store.pid,
        ingest: ingest.child.pid,
      },
    }),
  );
}

main().catch((err: unknown) => {
  console.error(`stack: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
