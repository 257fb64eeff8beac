// `npm run bench -- emulate`: the fleet emulator against Debian's Mosquitto (infra/mosquitto configuration,
// mutual TLS, QoS 1) at 1,000 / 5,000 / 10,000 boards. The boards run in a child process (the emulator CLI
// with --no-verify) so its CPU and memory figures are the emulator's alone; this process runs the broker
// and the verifying subscriber (ingest identity) and does the loss accounting. With --confirmations on,off the
// real ingest and VictoriaMetrics join each run and the boards run that confirmation mode, so the cost of
// end-to-end confirmations (broker and ingest CPU per message, bytes per reading) is measured side by side.
import { spawn } from "node:child_process";
import { mkdir, mkdtemp, readFile, rm } from "node:fs/promises";
import { readFileSync } from "node:fs";
import { createInterface } from "node:readline";
import { join } from "node:path";
import yargs from "yargs";
import { ensureDevPki } from "../../../pki/src/index";
import type { KeyType, PkiPaths } from "../../../pki/src/index";
import { startMosquitto } from "../broker/mosquitto";
import { defaultWorkers, deviceIds, nextBoot } from "../emulator/run";
import type { EmulatorSummary } from "../emulator/run";
import { ensureFdLimit } from "../emulator/fd-limit";
import { sleep } from "../emulator/fleet";
import { Verifier } from "../emulator/verifier";
import { STEADY_STATE_LINE } from "../emulator/live-view";
import { repoRoot, stateDir } from "../../../shared/state-dir";
import {
  scrapeMetrics,
  spawnIngestCli,
  sumMetric,
  type IngestProcess,
} from "../../testkit/ingest/spawn-ingest";
import { startVictoriaMetrics, type VictoriaMetricsHandle } from "../store/victoria-metrics";
import { procCpuSeconds } from "../process/proc-cpu";
import { encodeConfirmation } from "../../../firmware/src/telemetry/confirmation";
import { downlinkTopic } from "../../../firmware/src/telemetry/topics";
import { publishPacketBytes } from "../../../firmware/src/app/mqtt-client";

interface BenchRow {
  boards: number;
  workers: number;
  keyType: KeyType;
  connectS: number | null;
  handshakeFailures: number;
  connectFailures: number;
  msgPerS: number;
  pubackP50: number;
  pubackP99: number;
  /** Including the connect phase, when every board sends its backlog at once. */
  pubackAllP99: number;
  e2eP50: number;
  e2eP99: number;
  e2eAllP99: number;
  lost: number;
  duplicates: number;
  cpuUsPerMsg: number;
  bytesPerBoard: number;
  brokerCpuUsPerMsg: number;
  /** With the ingest in the loop: its confirmation mode, CPU per message, and confirmation traffic per reading. */
  confirm?: "on" | "off";
  ingestCpuUsPerMsg?: number;
  confirmedReadings?: number;
  confirmationsSent?: number;
  extraBytesPerReading?: number;
  resends?: number;
}

async function one(o: {
  count: number;
  keyType: KeyType;
  pki: PkiPaths;
  state: string;
  durationS: number;
  rateHz: number;
  connectRate: number;
  workers: number;
  confirm?: "on" | "off";
  confirmIntervalS?: number;
  /** The boards' mode when no ingest runs (the emulator's default, auto, when absent). */
  boardConfirmations?: "on" | "off" | "auto";
  log: (s: string) => void;
}): Promise<BenchRow> {
  const dataDir = await mkdtemp(join(o.state, "mosquitto-"));
  const broker = await startMosquitto({ pki: o.pki, dataDir });
  let vm: VictoriaMetricsHandle | undefined;
  let ingest: IngestProcess | undefined;
  if (o.confirm) {
    vm = await startVictoriaMetrics({ dataDir: join(dataDir, "vm") });
    ingest = await spawnIngestCli({
      stateDir: o.state,
      args: [
        "--broker",
        broker.url,
        "--store-url",
        vm.url,
        "--plain",
        "--confirm",
        o.confirm,
        "--confirm-interval",
        String(o.confirmIntervalS ?? 1),
        "--metrics-port",
        "0",
        "--progress-interval",
        "0",
        "--account-interval",
        "0",
        "--dead-letter",
        join(dataDir, "dead-letter.jsonl"),
      ],
    });
  }
  const boot = await nextBoot(o.state);
  const verifier = new Verifier({
    host: broker.host,
    port: broker.port,
    caFile: o.pki.caBundle,
    // An observer: the read-only monitor identity (one identity has one session at the broker).
    certFile: o.pki.service("monitor").cert,
    keyFile: o.pki.service("monitor").key,
    clientId: `monitor-bench-${process.pid}`,
    expectedBoot: boot,
    decode: { kind: "plain" },
  });
  try {
    await verifier.start();
    const reportFile = join(o.state, `report-${o.count}-${o.keyType}.json`);
    const brokerCpu0 = procCpuSeconds(broker.pid);
    const ingestCpu0 = ingest ? procCpuSeconds(ingest.pid) : 0;
    const args = [
      "--import",
      "tsx",
      join(repoRoot(), "host/src/cli/emulate.ts"),
      "--count",
      String(o.count),
      "--rate",
      String(o.rateHz),
      "--duration",
      String(o.durationS),
      "--broker",
      broker.url,
      // The bench's own throw-away state folder holds the CA.
      "--mint-into-ca",
      o.state,
      "--connect-rate",
      String(o.connectRate),
      "--key-type",
      o.keyType,
      "--boot",
      String(boot),
      "--no-verify",
      "--workers",
      String(o.workers),
      "--report",
      reportFile,
      ...(o.confirm ? ["--confirmations", o.confirm] : []),
      ...(!o.confirm && o.boardConfirmations ? ["--confirmations", o.boardConfirmations] : []),
    ];
    o.log(
      `  ${o.count} boards (${o.keyType}, ${o.workers} thread${o.workers > 1 ? "s" : ""}) for ${o.durationS} s against mosquitto ${broker.url} …`,
    );
    // The end-to-end window starts when the emulator says steady state began (every board connected and its
    // backlog sent), the same moment its PUBACK and CPU windows start. Before, it started 3 s after every board
    // had delivered its first reading, while the last boards' connect backlogs were still draining: a p99 of
    // seconds that measured the backlog, not the steady state.
    const code = await new Promise<number | null>((resolve, reject) => {
      const child = spawn(process.execPath, args, {
        env: { ...process.env, EST_STATE_DIR: o.state },
        stdio: ["ignore", "pipe", "inherit"],
      });
      createInterface({ input: child.stdout }).on("line", (line) => {
        if (line.includes(STEADY_STATE_LINE)) verifier.steady = true;
        if (line.trim()) o.log(`    | ${line.trim()}`);
      });
      child.once("error", reject);
      child.once("exit", resolve);
    });
    const s = JSON.parse(await readFile(reportFile, "utf8")) as EmulatorSummary;
    if (code !== 0 && s.messages.acked === 0)
      throw new Error(`emulator exited with ${code} and published nothing`);
    const published = s.devices.reduce((n, d) => n + d.published, 0);
    const until = performance.now() + 20_000;
    while (verifier.unique < published && performance.now() < until) await sleep(100);
    const brokerCpu = procCpuSeconds(broker.pid) - brokerCpu0;
    const ingestCpu = ingest ? procCpuSeconds(ingest.pid) - ingestCpu0 : 0;
    const confirmationsSent = ingest
      ? sumMetric(await scrapeMetrics(ingest.metricsPort), "ingest_confirmations_published")
      : 0;
    let lost = 0;
    for (const d of s.devices) {
      const t = verifier.tallies.get(d.id);
      lost += t ? t.missingBelow(d.published) : d.published;
    }
    return {
      boards: o.count,
      workers: s.workers,
      keyType: o.keyType,
      connectS: s.connect.allConnectedS,
      handshakeFailures: s.connect.handshakeFailures,
      connectFailures: s.connect.connectFailures,
      msgPerS: s.messages.ackedPerS,
      pubackP50: s.pubackSteadyMs?.p50 ?? Number.NaN,
      pubackP99: s.pubackSteadyMs?.p99 ?? Number.NaN,
      pubackAllP99: s.pubackMs.p99,
      e2eP50: Math.round(verifier.e2eSteady.percentileMs(0.5) * 100) / 100,
      e2eP99: Math.round(verifier.e2eSteady.percentileMs(0.99) * 100) / 100,
      e2eAllP99: Math.round(verifier.e2eLatency.percentileMs(0.99) * 100) / 100,
      lost,
      duplicates: verifier.duplicates,
      cpuUsPerMsg: s.cpu.usPerMessage,
      bytesPerBoard: s.memory.bytesPerBoard,
      brokerCpuUsPerMsg: Math.round((brokerCpu * 1e6) / Math.max(1, published)),
      ...(o.confirm
        ? {
            confirm: o.confirm,
            ingestCpuUsPerMsg: Math.round((ingestCpu * 1e6) / Math.max(1, published)),
            confirmedReadings: s.messages.confirmed,
            confirmationsSent,
            extraBytesPerReading:
              Math.round(((confirmationsSent * CONFIRMATION_LINK_BYTES) / Math.max(1, published)) * 10) / 10,
            resends: s.messages.resends,
          }
        : {}),
    };
  } finally {
    verifier.stop();
    await ingest?.stop();
    await vm?.stop();
    await broker.stop();
    await rm(dataDir, { recursive: true, force: true });
  }
}

/**
 * What one confirmation costs on a board's link: the PUBLISH it receives (one range, the usual case, on a
 * 30-character topic such as electrolyser/emu-00001/down/stored) and the 4-byte PUBACK it answers with.
 */
const CONFIRMATION_LINK_BYTES =
  publishPacketBytes(
    downlinkTopic("emu-00001", "stored").length,
    encodeConfirmation({ boot: 1, ranges: [{ from: 0, to: 1 }] }).length,
    1,
  ) + 4;

export async function run(argv: string[]): Promise<void> {
  const a = await yargs(argv)
    .scriptName("npm run bench -- emulate")
    .usage(
      "$0 [options]\n\nRuns the emulator against Debian's Mosquitto at each board count and prints connect time, failures, msg/s, latency, loss, emulator CPU per message and memory per board.",
    )
    .option("counts", {
      type: "string",
      default: "1000,5000,10000",
      describe: "board counts (P-256 device keys)",
    })
    .option("rsa-count", {
      type: "number",
      default: 1000,
      describe: "boards for the RSA-2048 connect run (0 to skip)",
    })
    .option("duration", { type: "number", default: 60, describe: "seconds of sampling per run" })
    .option("rate", { type: "number", default: 1, describe: "messages per second per board" })
    .option("connect-rate", {
      type: "number",
      default: 2000,
      describe: "connections per second the emulator may open",
    })
    .option("workers", {
      type: "string",
      default: "auto",
      describe:
        "emulator threads for the boards, a comma-separated list to compare (auto: the emulator's default for each count)",
    })
    .option("confirmations", {
      type: "string",
      default: "",
      describe:
        "comma-separated confirmation modes to compare (on,off): each run adds VictoriaMetrics and the real ingest (--confirm on|off) and prints its CPU and the confirmation bytes per reading",
    })
    .option("confirm-interval", {
      type: "number",
      default: 5,
      describe: "the ingest's --confirm-interval (seconds) for the runs with confirmations",
    })
    .option("board-confirmations", {
      choices: ["auto", "off", "on"] as const,
      default: "auto" as const,
      describe:
        "the boards' confirmation mode in runs without an ingest (auto: each board holds its readings until a confirmation timeout after its first PUBACK, then falls back, as against a PUBACK-only ingest; off: PUBACK semantics, as the emulator before confirmations)",
    })
    .strict()
    .help()
    .parseAsync();
  const confirmModes = a.confirmations
    .split(",")
    .map((x) => x.trim())
    .filter((x) => x !== "");
  if (confirmModes.some((m) => m !== "on" && m !== "off"))
    throw new Error("--confirmations takes on and/or off");
  const modes: ("on" | "off" | undefined)[] = confirmModes.length
    ? (confirmModes as ("on" | "off")[])
    : [undefined];
  const counts = a.counts.split(",").map((x) => Number(x.trim()));
  const workerChoices = a.workers.split(",").map((x) => x.trim());
  if (workerChoices.some((w) => w !== "auto" && !(Number.isInteger(Number(w)) && Number(w) >= 1)))
    throw new Error("--workers must be auto or positive integers, comma-separated");
  const threadsFor = (count: number): number[] => [
    ...new Set(workerChoices.map((w) => (w === "auto" ? defaultWorkers(count) : Number(w)))),
  ];
  if (counts.some((n) => !Number.isInteger(n) || n < 1))
    throw new Error("--counts must be positive integers, comma-separated");
  const log = (s: string): void => console.error(s);
  ensureFdLimit(Math.max(...counts, a["rsa-count"]) + 200);
  const rows: BenchRow[] = [];

  const base = join(stateDir(), "bench", "emulate");
  if (a["rsa-count"] > 0) {
    const state = join(base, "rsa-2048");
    await mkdir(state, { recursive: true });
    log(`PKI (RSA-2048, ${a["rsa-count"]} devices) in ${state} …`);
    const pki = await ensureDevPki({
      stateDir: state,
      devices: deviceIds(a["rsa-count"]),
      services: ["monitor"],
      deviceKeyType: "rsa-2048",
      onProgress: progress(log),
    });
    for (const workers of threadsFor(a["rsa-count"]))
      rows.push(
        await one({
          count: a["rsa-count"],
          keyType: "rsa-2048",
          pki,
          state,
          durationS: a.duration,
          rateHz: a.rate,
          connectRate: a["connect-rate"],
          workers,
          log,
        }),
      );
  }
  const state = join(base, "p256");
  await mkdir(state, { recursive: true });
  log(`PKI (P-256, ${Math.max(...counts)} devices) in ${state} …`);
  const pki = await ensureDevPki({
    stateDir: state,
    devices: deviceIds(Math.max(...counts)),
    services: ["monitor", "ingest"],
    deviceKeyType: "p256",
    onProgress: progress(log),
  });
  for (const count of counts) {
    for (const workers of threadsFor(count))
      for (const confirm of modes)
        rows.push(
          await one({
            count,
            keyType: "p256",
            pki,
            state,
            durationS: a.duration,
            rateHz: a.rate,
            connectRate: a["connect-rate"],
            workers,
            ...(confirm ? { confirm, confirmIntervalS: a["confirm-interval"] } : {}),
            boardConfirmations: a["board-confirmations"],
            log,
          }),
        );
  }

  console.log(
    `\nemulator vs mosquitto ${a.rate} msg/s/board, ${a.duration} s each, mTLS, QoS 1 (load average at end: ${readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ")})`,
  );
  console.log(
    "steady-state latencies (after every board connected and sent its backlog); *_all_p99 includes the connect phase\n" +
      "boards  threads  key       connect_s  hs_fail  conn_fail  msg/s    puback_p50/p99_ms  e2e_p50/p99_ms   puback/e2e_all_p99  lost  dups  emu_us/msg  emu_B/board  broker_us/msg",
  );
  for (const r of rows) {
    console.log(
      [
        String(r.boards).padEnd(7),
        String(r.workers).padEnd(8),
        r.keyType.padEnd(9),
        String(r.connectS ?? "never").padEnd(10),
        String(r.handshakeFailures).padEnd(8),
        String(r.connectFailures).padEnd(10),
        String(r.msgPerS).padEnd(8),
        `${r.pubackP50}/${r.pubackP99}`.padEnd(18),
        `${r.e2eP50}/${r.e2eP99}`.padEnd(16),
        `${r.pubackAllP99}/${r.e2eAllP99}`.padEnd(19),
        String(r.lost).padEnd(5),
        String(r.duplicates).padEnd(5),
        String(r.cpuUsPerMsg).padEnd(11),
        String(r.bytesPerBoard).padEnd(12),
        String(r.brokerCpuUsPerMsg),
      ].join(" "),
    );
  }
  const withIngest = rows.filter((r) => r.confirm);
  if (withIngest.length > 0) {
    console.log(
      "\nwith the ingest and VictoriaMetrics in the loop (extra_B/reading: confirmation PUBLISH + PUBACK on the board's link)\n" +
        "boards  confirm  msg/s    lost  broker_us/msg  ingest_us/msg  confirmations  confirmed  resends  extra_B/reading",
    );
    for (const r of withIngest)
      console.log(
        [
          String(r.boards).padEnd(7),
          String(r.confirm).padEnd(8),
          String(r.msgPerS).padEnd(8),
          String(r.lost).padEnd(5),
          String(r.brokerCpuUsPerMsg).padEnd(14),
          String(r.ingestCpuUsPerMsg).padEnd(14),
          String(r.confirmationsSent).padEnd(14),
          String(r.confirmedReadings).padEnd(10),
          String(r.resends).padEnd(8),
          String(r.extraBytesPerReading),
        ].join(" "),
      );
  }
  console.log(JSON.stringify(rows));
}

function progress(log: (s: string) => void): (done: number, total: number) => void {
  let last = -1;
  return (done, total) => {
    const pct = Math.floor((10 * done) / total);
    if (pct !== last) {
      last = pct;
      log(`  keys ${done}/${total}`);
    }
  };
}
