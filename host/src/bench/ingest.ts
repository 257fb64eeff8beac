// `npm run bench -- ingest`: messages/s through one ingest process into VictoriaMetrics, plain and
// encrypted, and end-to-end latency at a fleet of N boards × 1 message/s.
//
// Throughput is measured as a drain: the ingest's persistent session is created, the ingest is
// stopped, the boards publish a backlog that the broker queues for that session, and the clock
// runs from the ingest's restart until the store accepted the whole backlog. The publishers'
// cost is thus outside the measurement; the broker's delivery and the store's writes are inside.
import { deviceIdSequence } from "../../../firmware/src/telemetry/vocabulary";
import { mkdtemp, rm } from "node:fs/promises";
import { cpus, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import yargs from "yargs";
import { ensureDevPki } from "../../../pki/src/index";
import { startMosquitto } from "../broker/mosquitto";
import { loadOrCreatePayloadMaster } from "../crypto/device-keys";
import { TestFleet } from "../../testkit/ingest/fleet-publisher";
import {
  scrapeMetrics,
  spawnIngestCli,
  sumMetric,
  type IngestProcess,
} from "../../testkit/ingest/spawn-ingest";
import { stateDir, writeFileAtomic } from "../../../shared/state-dir";
import { startVictoriaMetrics } from "../store/victoria-metrics";

const KEY_ID = 1;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const log = (line: string) => console.error(`[bench ingest] ${line}`);

interface ModeResult {
  mode: "plain" | "encrypted";
  backlog: number;
  drainSeconds: number;
  msgsPerSecond: number;
  ingestCpuSeconds: number;
  msgsPerCpuSecond: number;
  latency?: {
    boards: number;
    seconds: number;
    published: number;
    written: number;
    p50Ms: number;
    p90Ms: number;
    p99Ms: number;
  };
}

export async function run(argv: string[]): Promise<void> {
  const a = await yargs(argv)
    .scriptName("npm run bench -- ingest")
    .usage(
      "$0 [options]\n\nStarts its own PKI, mosquitto and VictoriaMetrics in a temp dir; prints msgs/s and latency.",
    )
    .option("boards", { type: "number", default: 1000, describe: "Boards (one mTLS connection each)" })
    .option("backlog", {
      type: "number",
      default: 200_000,
      describe: "Messages queued at the broker before the drain is timed",
    })
    .option("latency-seconds", {
      type: "number",
      default: 30,
      describe: "Length of the 1 msg/s/board latency run (0: skip)",
    })
    .option("modes", {
      type: "string",
      default: "plain,encrypted",
      describe: "Comma-separated: plain, encrypted",
    })
    .option("batch-size", { type: "number", default: 2000 })
    .option("max-held", { type: "number", default: 10_000 })
    .option("cpu-prof", {
      type: "string",
      describe: "Write V8 CPU profiles of the ingest processes to this folder",
    })
    .option("keep", { type: "boolean", default: false, describe: "Keep the temp dir (logs, data)" })
    .strict()
    .help()
    .parseAsync();
  const modes = a.modes.split(",").map((m) => m.trim()) as ("plain" | "encrypted")[];
  for (const m of modes) if (m !== "plain" && m !== "encrypted") throw new Error(`unknown mode ${m}`);

  const dir = await mkdtemp(join(tmpdir(), "est-bench-ingest-"));
  const state = join(dir, "state");
  const load0 = loadavg();
  const ids = deviceIdSequence("bench-", a.boards, 5);
  log(`PKI for ${a.boards} boards (P-256)…`);
  const pki = await ensureDevPki({
    stateDir: state,
    devices: ids,
    services: ["ingest"],
    deviceKeyType: "p256",
  });
  const master = await loadOrCreatePayloadMaster(state, KEY_ID);
  const broker = await startMosquitto({
    pki,
    dataDir: join(dir, "broker"),
    logFile: join(dir, "broker.log"),
    // Each mode keeps its own ingest session (client id ingest-bench-<mode>) on the one ingest certificate.
    bindClientIdToIdentity: false,
  });
  const vm = await startVictoriaMetrics({ dataDir: join(dir, "vm") });
  const results: ModeResult[] = [];
  const running: IngestProcess[] = [];
  try {
    for (const mode of modes) {
      const ingestArgs = [
        "--broker",
        broker.url,
        "--store-url",
        vm.url,
        mode === "encrypted" ? "--encrypted" : "--plain",
        "--group",
        `bench-${mode}`,
        "--metrics-port",
        "0",
        "--progress-interval",
        "0",
        "--account-interval",
        "0",
        "--batch-size",
        String(a["batch-size"]),
        "--max-held",
        String(a["max-held"]),
        "--dead-letter",
        join(dir, `dead-letter-${mode}.jsonl`),
      ];
      const startIngest = async () => {
        const p = await spawnIngestCli({
          stateDir: state,
          args: ingestArgs,
          nodeArgs: a["cpu-prof"] ? ["--cpu-prof", `--cpu-prof-dir=${a["cpu-prof"]}`] : [],
        });
        running.push(p);
        return p;
      };
      const stopIngest = async (p: IngestProcess) => {
        const code = await p.stop("SIGTERM");
        running.splice(running.indexOf(p), 1);
        if (code !== 0) throw new Error(`ingest exited ${code}:\n${p.output.slice(-10).join("\n")}`);
      };

      // 1. The session and its subscription exist; the ingest goes away.
      await stopIngest(await startIngest());

      // 2. The backlog, queued by the broker for the ingest's session.
      log(`${mode}: connecting ${a.boards} boards…`);
      const fleet = await TestFleet.connect({
        brokerUrl: broker.url,
        ids,
        credentials: { ca: pki.caBundle, device: (id) => pki.device(id) },
        encryption: mode === "encrypted" ? { keyId: KEY_ID, master } : undefined,
        connectConcurrency: 50,
      });
      try {
        const perBoard = Math.ceil(a.backlog / a.boards);
        const backlog = perBoard * a.boards;
        log(`${mode}: publishing a backlog of ${backlog} messages…`);
        const t0 = Date.now();
        await Promise.all(
          fleet.boards.map(async (b) => {
            const sends: Promise<void>[] = [];
            for (let i = 0; i < perBoard; i++) {
              const m = b.nextMessage();
              sends.push(b.publishRaw(m.topic, m.payload));
            }
            await Promise.all(sends);
          }),
        );
        log(`${mode}: backlog published in ${((Date.now() - t0) / 1000).toFixed(1)} s; starting the ingest`);

        // 3. The drain, timed from the ingest's start until the store accepted everything.
        // Timed from the moment the ingest is connected and subscribed (its start-up is not ingest work);
        // what it wrote before that moment is left out of the count.
        const ingest = await startIngest();
        const started = performance.now();
        let m = await scrapeMetrics(ingest.metricsPort);
        const cpu0 = sumMetric(m, "ingest_process_cpu_seconds_total");
        const writtenAtStart = sumMetric(m, "ingest_written_total");
        let written = 0;
        let lastReport = 0;
        while (written < backlog) {
          await sleep(500);
          m = await scrapeMetrics(ingest.metricsPort);
          written = sumMetric(m, "ingest_written_total");
          if (performance.now() - lastReport > 2000) {
            lastReport = performance.now();
            log(`${mode}: ${written}/${backlog} written`);
          }
          if (performance.now() - started > 600_000)
            throw new Error(`${mode}: drain did not finish in 10 min (${written}/${backlog})`);
        }
        const drainSeconds = (performance.now() - started) / 1000;
        const cpu = sumMetric(m, "ingest_process_cpu_seconds_total") - cpu0;
        const rejected = sumMetric(m, "ingest_rejected_total");
        if (rejected > 0) throw new Error(`${mode}: ${rejected} messages rejected during the drain`);
        const result: ModeResult = {
          mode,
          backlog,
          drainSeconds,
          msgsPerSecond: (backlog - writtenAtStart) / drainSeconds,
          ingestCpuSeconds: cpu,
          msgsPerCpuSecond: cpu > 0 ? (backlog - writtenAtStart) / cpu : 0,
        };
        log(
          `${mode}: ${Math.round(result.msgsPerSecond)} msg/s (${drainSeconds.toFixed(2)} s, ingest CPU ${cpu.toFixed(2)} s)`,
        );
        await stopIngest(ingest);

        // 4. Latency at N boards × 1 msg/s, with a fresh ingest (its latency window starts empty).
        if (a["latency-seconds"] > 0) {
          const live = await startIngest();
          log(`${mode}: ${a.boards} boards × 1 msg/s for ${a["latency-seconds"]} s…`);
          const until = Date.now() + a["latency-seconds"] * 1000;
          let published = 0;
          await Promise.all(
            fleet.boards.map(async (b, i) => {
              await sleep((i / a.boards) * 1000);
              while (Date.now() < until) {
                const due = Date.now() + 1000;
                await b.publishNext();
                published++;
                await sleep(Math.max(0, due - Date.now()));
              }
            }),
          );
          await sleep(2000);
          const lm = await scrapeMetrics(live.metricsPort);
          const q = (p: string) => lm.get(`ingest_e2e_latency_recent_ms{quantile="${p}"}`) ?? Number.NaN;
          result.latency = {
            boards: a.boards,
            seconds: a["latency-seconds"],
            published,
            written: sumMetric(lm, "ingest_written_total"),
            p50Ms: q("0.5"),
            p90Ms: q("0.9"),
            p99Ms: q("0.99"),
          };
          log(
            `${mode}: latency p50 ${result.latency.p50Ms.toFixed(1)} ms, p99 ${result.latency.p99Ms.toFixed(1)} ms`,
          );
          await stopIngest(live);
        }
        results.push(result);
      } finally {
        await fleet.end();
      }
    }
  } finally {
    for (const p of running) await p.stop("SIGKILL");
    await broker.stop();
    await vm.stop();
    if (!a.keep) await rm(dir, { recursive: true, force: true });
    else log(`kept ${dir}`);
  }

  const load1 = loadavg();
  const report = {
    time: new Date().toISOString(),
    machine: {
      cpus: cpus().length,
      model: cpus()[0]?.model,
      loadavg1mStart: load0[0],
      loadavg1mEnd: load1[0],
    },
    settings: { boards: a.boards, backlog: a.backlog, batchSize: a["batch-size"], maxHeld: a["max-held"] },
    results,
  };
  console.log("\nIngest benchmark (one ingest process → VictoriaMetrics, Mosquitto mTLS, QoS 1)");
  console.log(
    `machine: ${report.machine.cpus} cores, load average ${load0[0]!.toFixed(1)} at start, ${load1[0]!.toFixed(1)} at end (shared machine)`,
  );
  for (const r of results) {
    console.log(
      `${r.mode.padEnd(9)} drain ${r.backlog} msgs in ${r.drainSeconds.toFixed(2)} s = ${Math.round(r.msgsPerSecond)} msg/s` +
        ` (ingest CPU ${r.ingestCpuSeconds.toFixed(2)} s = ${Math.round(r.msgsPerCpuSecond)} msg per CPU-second)`,
    );
    if (r.latency)
      console.log(
        `${"".padEnd(9)} latency at ${r.latency.boards} boards × 1 msg/s for ${r.latency.seconds} s: p50 ${r.latency.p50Ms.toFixed(1)} ms,` +
          ` p90 ${r.latency.p90Ms.toFixed(1)} ms, p99 ${r.latency.p99Ms.toFixed(1)} ms (${r.latency.written}/${r.latency.published} written)`,
      );
  }
  const path = join(stateDir(), "reports", `bench-ingest-${report.time.replace(/[:.]/g, "-")}.json`);
  await writeFileAtomic(path, JSON.stringify(report, null, 2) + "\n");
  console.log(`report: ${path}`);
}
