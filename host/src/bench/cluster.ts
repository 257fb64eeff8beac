// `npm run bench -- cluster`: the three-node NATS cluster (JetStream R3, with N JetStream ingest workers) side by
// side with single-node Mosquitto (one MQTT ingest), in one run, each with a fresh VictoriaMetrics. Encrypted
// emulated boards (the emulator CLI in a child process, --no-verify: the store is the judge) publish at 1 Hz;
// per broker × board count it prints msg/s, PUBACK p50/p99, end-to-end p99 (the ingest's), broker CPU per
// message summed over the nodes (/proc/<pid>/stat), stored/expected and, with --kill-node, the failover time:
// from a SIGKILL of node n1 until /connz of the other two shows every board. Exits non-zero if a reading was lost.
import { spawn } from "node:child_process";
import { mkdir, mkdtemp, readFile, rm } from "node:fs/promises";
import { readFileSync } from "node:fs";
import { cpus } from "node:os";
import { join } from "node:path";
import yargs from "yargs";
import { ensureDevPki, type PkiPaths } from "../../../pki/src/index";
import { startMosquitto } from "../broker/mosquitto";
import { jetstreamWorkerArgs, startNatsCluster, type NatsClusterHandle } from "../broker/nats/cluster";
import { pkiClientCertificates } from "../broker/nats/pki-clients";
import { mqttClientsOn } from "../broker/nats/connz";
import { loadOrCreatePayloadMaster } from "../crypto/device-keys";
import { defaultWorkers, deviceIds, nextBoot, type EmulatorSummary } from "../emulator/run";
import { ensureFdLimit } from "../emulator/fd-limit";
import { CpuSampler } from "../process/proc-cpu";
import { startVictoriaMetrics } from "../store/victoria-metrics";
import { diffStored, storedSeqs } from "../store/stored-seqs";
import { repoRoot, stateDir } from "../../../shared/state-dir";
import { scrapeMetrics, spawnIngestCli, type IngestProcess } from "../../testkit/ingest/spawn-ingest";
import {
  formatClusterTable,
  histogramBuckets,
  isSteadyProgress,
  lossyRows,
  quantileUpperBound,
  type ClusterBenchRow,
} from "./cluster-table";

type BrokerKind = ClusterBenchRow["broker"];
const ID_PREFIX = "emu-";
/** The ingest's histogram of device timestamp to store acceptance (host/src/ingest/metrics.ts). */
const E2E_HISTOGRAM = "ingest_e2e_latency_seconds";
/** The node dies this long into the steady state. */
const KILL_AFTER_STEADY_MS = 5000;
/** A failover slower than this is reported as never (∞). */
const FAILOVER_LIMIT_MS = 60_000;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface RunningBroker {
  urls: string[];
  pids(): number[];
  /** Kills node n1 and resolves with the failover time and how many boards were on it; null for one node. */
  killNode?: (boards: number) => Promise<{ failoverS: number; boards: number }>;
  ingestArgs(n: number): string[];
  ingests: number;
  stop(): Promise<void>;
}

async function clusterBroker(pki: PkiPaths, dataDir: string, workers: number): Promise<RunningBroker> {
  const cluster: NatsClusterHandle = await startNatsCluster({
    pki,
    clients: () => pkiClientCertificates(pki),
    dataDir,
    ingestWorkers: workers,
  });
  const on = (i: number): Promise<number> => {
    const n = cluster.nodes[i]!;
    return n.pid === -1 ? Promise.resolve(0) : mqttClientsOn(n.ports.http, ID_PREFIX);
  };
  return {
    urls: cluster.urls,
    pids: () => cluster.nodes.map((n) => n.pid),
    ingests: workers,
    ingestArgs: (n) => jetstreamWorkerArgs(cluster, n),
    async killNode(boards) {
      const victim = cluster.nodes[0]!;
      const onVictim = await on(0);
      victim.kill("SIGKILL");
      const killedAt = performance.now();
      await victim.exited();
      const until = killedAt + FAILOVER_LIMIT_MS;
      while (performance.now() < until) {
        const counts = await Promise.all(cluster.nodes.slice(1).map((_, i) => on(i + 1)));
        if (counts.reduce((a, b) => a + b, 0) >= boards)
          return { failoverS: (performance.now() - killedAt) / 1000, boards: onVictim };
        await sleep(100);
      }
      return { failoverS: Number.POSITIVE_INFINITY, boards: onVictim };
    },
    stop: () => cluster.stop(),
  };
}

async function mosquittoBroker(pki: PkiPaths, dataDir: string): Promise<RunningBroker> {
  const m = await startMosquitto({ pki, dataDir });
  return {
    urls: [m.url],
    pids: () => [m.pid],
    ingests: 1,
    ingestArgs: () => ["--broker", m.url],
    stop: () => m.stop(),
  };
}

/** The emulator CLI as a child process; its summary comes from --report. */
async function emulate(o: {
  args: string[];
  state: string;
  reportFile: string;
  log: (s: string) => void;
  onLine: (line: string) => void;
}): Promise<EmulatorSummary> {
  const code = await new Promise<number | null>((resolve, reject) => {
    const child = spawn(
      process.execPath,
      ["--import", "tsx", join(repoRoot(), "host/src/cli/emulate.ts"), ...o.args],
      { env: { ...process.env, EST_STATE_DIR: o.state }, stdio: ["ignore", "pipe", "inherit"] },
    );
    child.stdout.on("data", (d: Buffer) => {
      for (const line of d.toString().split("\n"))
        if (line.trim()) {
          o.log(`    | ${line.trim()}`);
          o.onLine(line);
        }
    });
    child.once("error", reject);
    child.once("exit", resolve);
  });
  const s = JSON.parse(await readFile(o.reportFile, "utf8")) as EmulatorSummary;
  if (code !== 0 && s.messages.acked === 0)
    throw new Error(`emulator exited with ${code} and published nothing`);
  return s;
}

async function one(o: {
  broker: BrokerKind;
  count: number;
  pki: PkiPaths;
  state: string;
  durationS: number;
  rateHz: number;
  connectRate: number;
  workers: number;
  threads: number;
  killNode: boolean;
  log: (s: string) => void;
}): Promise<ClusterBenchRow> {
  const dataDir = await mkdtemp(join(o.state, `${o.broker}-${o.count}-`));
  o.log(`${o.broker}, ${o.count} boards: starting the broker, VictoriaMetrics and the ingest(s) …`);
  const broker =
    o.broker === "nats-cluster"
      ? await clusterBroker(o.pki, join(dataDir, "nats"), o.workers)
      : await mosquittoBroker(o.pki, join(dataDir, "mosquitto"));
  const ingests: IngestProcess[] = [];
  let vm: Awaited<ReturnType<typeof startVictoriaMetrics>> | undefined;
  try {
    vm = await startVictoriaMetrics({ dataDir: join(dataDir, "vm") });
    for (let n = 1; n <= broker.ingests; n++)
      ingests.push(
        await spawnIngestCli({
          stateDir: o.state,
          args: [
            ...broker.ingestArgs(n),
            "--store-url",
            vm.url,
            "--encrypted",
            "--metrics-port",
            "0",
            "--account-interval",
            "0",
            "--progress-interval",
            "0",
            "--dead-letter",
            join(dataDir, `dead-letter-${n}.jsonl`),
          ],
        }),
      );
    const boot = await nextBoot(o.state);
    const reportFile = join(dataDir, "report.json");
    const brokerCpu = new CpuSampler();
    const ingestCpu = new CpuSampler();
    const sample = (): void => {
      brokerCpu.sample(broker.pids());
      ingestCpu.sample(ingests.map((i) => i.pid));
    };
    sample();
    const sampler = setInterval(sample, 1000);
    o.log(
      `  ${o.count} boards for ${o.durationS} s at ${o.rateHz} Hz, encrypted, over ${broker.urls.length} node(s), ${broker.ingests} ingest(s) …`,
    );
    // The steady state (every board connected, the connect backlog sent), from the emulator's progress lines:
    // where the end-to-end figure starts counting, and the node kill's moment.
    let onSteady: () => void = () => undefined;
    const steady = new Promise<void>((r) => (onSteady = r));
    let emulatorDone = false;
    const e2eAt = async (): Promise<Map<number, number>> =>
      histogramBuckets(await Promise.all(ingests.map((i) => scrapeMetrics(i.metricsPort))), E2E_HISTOGRAM);
    let e2eBefore: Promise<Map<number, number>> | undefined;
    void steady.then(() => {
      o.log("  steady state: every board connected, backlog sent");
      e2eBefore = e2eAt();
    });
    const run = emulate({
      args: [
        "--count",
        String(o.count),
        "--rate",
        String(o.rateHz),
        "--duration",
        String(o.durationS),
        "--broker",
        broker.urls.join(","),
        "--mint-into-ca",
        o.state,
        "--encrypt",
        "--connect-rate",
        String(o.connectRate),
        "--key-type",
        "p256",
        "--boot",
        String(boot),
        "--no-verify",
        "--workers",
        String(o.threads),
        "--report",
        reportFile,
      ],
      state: o.state,
      reportFile,
      log: o.log,
      onLine: (line) => {
        if (isSteadyProgress(line)) onSteady();
      },
    });
    const emulatorEnd = run.then(
      () => void (emulatorDone = true),
      () => void (emulatorDone = true),
    );
    let failover: { failoverS: number; boards: number } | null = null;
    const killer =
      o.killNode && broker.killNode
        ? (async () => {
            await Promise.race([steady, emulatorEnd]);
            if (emulatorDone) {
              o.log("  the fleet never reached its steady state: no node killed");
              return;
            }
            await sleep(KILL_AFTER_STEADY_MS);
            if (emulatorDone) return;
            o.log("  SIGKILL node n1 …");
            failover = await broker.killNode!(o.count);
            o.log(
              `  every board of n1 (${failover.boards}) on another node after ${failover.failoverS.toFixed(1)} s`,
            );
          })()
        : Promise.resolve();
    const [s] = await Promise.all([run, killer]);
    const e2eAfter = e2eBefore ? await e2eAt() : undefined;
    sample();
    clearInterval(sampler);
    const published = s.devices.reduce((n, d) => n + d.published, 0);
    const expected = new Map(s.devices.map((d) => [d.id, Array.from({ length: d.published }, (_, k) => k)]));
    // What a killed node or worker held comes again after AckWait (15 s); new series show in VM after ~10 s.
    o.log(`  waiting for ${published} readings in the store …`);
    let diff = diffStored(expected, await storedSeqs(vm.url));
    const until = Date.now() + 90_000;
    while (diff.missing.length > 0 && Date.now() < until) {
      await sleep(1000);
      diff = diffStored(expected, await storedSeqs(vm.url));
    }
    // Steady state to the end of publishing (what the store wrote while this process waited is not counted).
    const e2eP99S = e2eBefore && e2eAfter ? quantileUpperBound(await e2eBefore, e2eAfter, 0.99) : Number.NaN;
    const perMsg = (cpuS: number): number => (cpuS * 1000) / Math.max(1, published);
    const killed = failover as { failoverS: number; boards: number } | null;
    return {
      broker: o.broker,
      boards: o.count,
      ingests: broker.ingests,
      msgPerS: s.messages.ackedPerS,
      pubackP50Ms: s.pubackSteadyMs?.p50 ?? Number.NaN,
      pubackP99Ms: s.pubackSteadyMs?.p99 ?? Number.NaN,
      e2eP99Ms: e2eP99S * 1000,
      brokerCpuMsPerMsg: perMsg(brokerCpu.totalSeconds()),
      ingestCpuMsPerMsg: perMsg(ingestCpu.totalSeconds()),
      stored: published - diff.missing.length,
      expected: published,
      duplicates: diff.extra.length,
      failoverS: killed ? killed.failoverS : null,
      ...(killed ? { killedNodeBoards: killed.boards } : {}),
    };
  } finally {
    await Promise.all(ingests.map((i) => i.stop("SIGTERM")));
    await vm?.stop();
    await broker.stop();
    await rm(dataDir, { recursive: true, force: true });
  }
}

export async function run(argv: string[]): Promise<void> {
  const a = await yargs(argv)
    .scriptName("npm run bench -- cluster")
    .usage(
      "$0 [options]\n\nThe three-node NATS cluster with JetStream ingest workers side by side with single-node Mosquitto and one MQTT ingest: encrypted emulated boards at each count; prints msg/s, PUBACK and end-to-end latency, broker CPU per message (all nodes), stored/expected and (--kill-node) the failover time. Progress on stderr, the table on stdout; exits non-zero if a reading was lost.",
    )
    .option("counts", { type: "string", default: "300,1000", describe: "board counts, comma-separated" })
    .option("duration", { type: "number", default: 60, describe: "seconds of publishing per run" })
    .option("rate", { type: "number", default: 1, describe: "readings per second per board" })
    .option("workers", {
      alias: "ingest-workers",
      type: "number",
      default: 2,
      describe: "JetStream ingest workers on the cluster (Mosquitto: always one MQTT ingest)",
    })
    .option("brokers", {
      type: "string",
      default: "nats-cluster,mosquitto",
      describe: "which brokers to run, comma-separated (nats-cluster, mosquitto)",
    })
    .option("kill-node", {
      type: "boolean",
      default: false,
      describe:
        "SIGKILL cluster node n1 5 s into each run's steady state and report the failover time (until /connz shows every board on the other nodes); the node stays down",
    })
    .option("connect-rate", {
      type: "number",
      default: 200,
      describe: "connections per second the emulator opens",
    })
    .option("threads", {
      type: "number",
      describe: "emulator threads for the boards (default: the emulator's own choice for each count)",
    })
    .strict()
    .help()
    .parseAsync();
  const counts = a.counts.split(",").map((x) => Number(x.trim()));
  if (counts.some((n) => !Number.isInteger(n) || n < 1))
    throw new Error("--counts must be positive integers, comma-separated");
  const brokers = a.brokers.split(",").map((x) => x.trim());
  if (brokers.some((b) => b !== "nats-cluster" && b !== "mosquitto"))
    throw new Error("--brokers takes nats-cluster and/or mosquitto");
  if (!Number.isInteger(a.workers) || a.workers < 1) throw new Error("--workers must be a positive integer");
  const log = (s: string): void => console.error(s);
  ensureFdLimit(Math.max(...counts) + 200);

  const state = join(stateDir(), "bench", "cluster");
  await mkdir(state, { recursive: true });
  log(`PKI (P-256, ${Math.max(...counts)} devices) and payload secret in ${state} …`);
  // Every board's certificate exists before a cluster starts: the nodes' users come from the PKI.
  const pki = await ensureDevPki({
    stateDir: state,
    devices: deviceIds(Math.max(...counts), ID_PREFIX),
    services: ["ingest", "monitor"],
    deviceKeyType: "p256",
  });
  await loadOrCreatePayloadMaster(state, 1);

  const rows: ClusterBenchRow[] = [];
  for (const count of counts)
    for (const broker of brokers as BrokerKind[])
      rows.push(
        await one({
          broker,
          count,
          pki,
          state,
          durationS: a.duration,
          rateHz: a.rate,
          connectRate: a["connect-rate"],
          workers: a.workers,
          threads: a.threads ?? defaultWorkers(count),
          killNode: a["kill-node"],
          log,
        }),
      );

  const load = readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ");
  console.log(
    `\ncluster bench: ${a.rate} msg/s/board, ${a.duration} s per run, encrypted, mTLS, QoS 1; ${cpus().length} cores, load average at end ${load}\n` +
      "steady state (every board connected, backlog sent) to the end: puback; e2e_p99 = device timestamp to store acceptance,\n" +
      "the upper bound of the ingests' histogram bucket holding the 99th percentile (a node kill falls inside it);\n" +
      "broker_cpu: every node's utime+stime summed, per reading published\n",
  );
  console.log(formatClusterTable(rows));
  console.log(JSON.stringify(rows));
  const lossy = lossyRows(rows);
  if (lossy.length > 0)
    throw new Error(
      `readings lost: ${lossy.map((r) => `${r.broker} ${r.boards} boards: ${r.expected - r.stored} of ${r.expected}`).join("; ")}`,
    );
}
