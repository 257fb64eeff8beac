// `npm run bench -- chaos`: "nothing lost" under overlapping crashes. Debian's Mosquitto and VictoriaMetrics,
// the real ingest CLI (a child process, as a supervisor would run it) and the emulator's boards (the firmware's
// session and flash ring), encrypted; during the run, on a schedule:
//   a network drop of K boards for longer than the confirmation timeout;
//   a store SIGKILL while the ingest writes (VictoriaMetrics had answered 204 for points still in memory);
//   the store stopped so the broker queues a backlog, then a broker SIGKILL (it saves its queue every 60 s);
//   a clean broker restart, then a store SIGKILL and, during that outage, an ingest SIGKILL;
//   a power cut of K boards with readings unconfirmed (overlapping the previous one).
// Then every reading each board took, per (device, boot, seq), is looked up in the store. The same schedule runs
// with confirmations on and off, side by side: readings taken, confirmed, stored and lost per 10 s of taking time
// (with the faults active then), and the broker's and ingest's CPU per reading. Exits 1 if the run with
// confirmations lost anything.
import { availableParallelism } from "node:os";
import { readFileSync } from "node:fs";
import yargs from "yargs";
import { runEmulator } from "../emulator/run";
import type { EmulatorSummary } from "../emulator/run";
import type { FaultLogEntry } from "../emulator/fleet";
import type { Scenario } from "../emulator/faults/scenario";
import { ensureFdLimit } from "../emulator/fd-limit";
import { deviceIds } from "../emulator/run";
import {
  spawnIngest,
  startTestStack,
  storedReadings,
  type SpawnedIngest,
  type TestStack,
} from "../../testkit/ingest/real-stack";
import { CpuSampler } from "../process/proc-cpu";

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const BUCKET_S = 10;

interface Options {
  count: number;
  rateHz: number;
  durationS: number;
  horizonS: number;
  confirmTimeoutS: number;
  affected: number;
  encrypted: boolean;
  seed: number;
  connectRate: number;
}

/** One process fault as it happened: seconds since sampling started. */
interface FaultWindow {
  what: string;
  fromS: number;
  toS: number;
}

interface ModeResult {
  confirm: boolean;
  summary: EmulatorSummary;
  windows: FaultWindow[];
  taken: number;
  stored: number;
  lost: number;
  twice: number;
  /** Per bucket of taking time: taken and lost. */
  buckets: { taken: number; lost: number }[];
  brokerCpuS: number;
  ingestCpuS: number;
}

/** The process faults, at fractions of the run so any duration ≥ 60 s fits them. */
async function processFaults(
  s: TestStack,
  o: Options,
  t0: number,
  ingest: { kill(): void; restarted(): Promise<void> },
  log: (w: FaultWindow) => void,
): Promise<void> {
  const now = () => (Date.now() - t0) / 1000;
  const at = async (s: number) => {
    const wait = t0 + s * 1000 - Date.now();
    if (wait > 0) await sleep(wait);
  };
  const D = o.durationS;
  await at(0.2 * D);
  let from = now();
  await s.vm.kill();
  await sleep(5_000);
  await s.vm.start();
  log({ what: "store SIGKILL, back after 5 s", fromS: from, toS: now() });

  await at(0.4 * D);
  from = now();
  await s.vm.stop();
  await sleep(10_000);
  process.kill(s.broker.pid, "SIGKILL");
  await s.broker.exited();
  await s.broker.restart();
  await s.vm.start();
  log({ what: "store stopped 10 s (backlog in the broker), broker SIGKILL", fromS: from, toS: now() });

  await at(0.6 * D);
  from = now();
  await s.broker.restart();
  await sleep(3_000);
  await s.vm.kill();
  await sleep(3_000);
  // The supervisor starts a new ingest at once; it becomes ready only once it can reach the store.
  ingest.kill();
  await sleep(3_000);
  await s.vm.start();
  await ingest.restarted();
  log({ what: "broker restart, store SIGKILL, ingest SIGKILL in the outage", fromS: from, toS: now() });
}

function scenarioFor(o: Options): Scenario {
  const ids = deviceIds(o.count);
  const k = Math.min(o.affected, Math.floor(o.count / 2));
  return {
    faults: [
      {
        type: "network_drop",
        at: Math.round(0.1 * o.durationS),
        devices: ids.slice(0, k),
        offlineS: o.confirmTimeoutS + 5,
      },
      { type: "power_cut", at: Math.round(0.65 * o.durationS), duration: 5, devices: ids.slice(k, 2 * k) },
    ],
  };
}

/** Scenario faults as windows, from the emulator's fault log. */
function scenarioWindows(log: readonly FaultLogEntry[], offlineS: number): FaultWindow[] {
  const byId = new Map<number, FaultWindow & { devices: Set<string> }>();
  for (const e of log) {
    const w = byId.get(e.faultId) ?? { what: e.type, fromS: e.elapsedS, toS: e.elapsedS, devices: new Set() };
    w.fromS = Math.min(w.fromS, e.elapsedS);
    w.toS = Math.max(w.toS, e.elapsedS);
    w.devices.add(e.device);
    byId.set(e.faultId, w);
  }
  // A network drop is one event; the boards stay away for offlineS.
  return [...byId.values()].map((w) => ({
    what: `${w.what.replace("_", " ")} of ${w.devices.size} boards`,
    fromS: w.fromS,
    toS: w.what === "network_drop" ? w.fromS + offlineS : w.toS,
  }));
}

async function runMode(o: Options, confirm: boolean, progress: (m: string) => void): Promise<ModeResult> {
  const s = await startTestStack({ devices: 0 });
  const ingestArgs = {
    encrypted: o.encrypted,
    extraArgs: [
      "--confirm",
      confirm ? "on" : "off",
      "--durable-horizon",
      String(o.horizonS),
      "--confirm-interval",
      "1",
    ],
  };
  let ingest: SpawnedIngest = await spawnIngest(s, ingestArgs);
  // Polled: a broker or ingest replaced after a SIGKILL keeps what it used before.
  const brokerCpu = new CpuSampler();
  const ingestCpu = new CpuSampler();
  brokerCpu.sample([s.broker.pid]);
  ingestCpu.sample([ingest.pid]);
  const poll = setInterval(() => {
    brokerCpu.sample([s.broker.pid]);
    ingestCpu.sample([ingest.pid]);
  }, 250);
  const windows: FaultWindow[] = [];
  let faults: Promise<void> = Promise.resolve();
  let respawn: Promise<void> = Promise.resolve();
  let faultError: unknown;
  try {
    const summary = await runEmulator({
      count: o.count,
      rateHz: o.rateHz,
      durationS: o.durationS,
      brokerUrl: s.broker.url,
      encrypt: o.encrypted,
      seed: o.seed,
      connectRate: o.connectRate,
      stateDir: s.stateDir,
      verify: false,
      deviceKeyType: "p256",
      confirmations: confirm ? "on" : "off",
      confirmTimeoutS: o.confirmTimeoutS,
      drainTimeoutS: o.horizonS * 4 + 30,
      scenario: scenarioFor(o),
      onStarted: () => {
        const t0 = Date.now();
        progress(`  boards started; faults on the schedule`);
        // Held until the run is over, so a failed fault ends the run through the finally below.
        faults = processFaults(
          s,
          o,
          t0,
          {
            kill: () => {
              ingestCpu.sample([ingest.pid]);
              respawn = ingest.stop("SIGKILL").then(async () => {
                ingest = await spawnIngest(s, { ...ingestArgs, readyTimeoutMs: 180_000 });
              });
            },
            restarted: () => respawn,
          },
          (w) => {
            windows.push(w);
            progress(`  ${w.fromS.toFixed(0)}–${w.toS.toFixed(0)} s: ${w.what}`);
          },
        ).catch((err: unknown) => {
          faultError = err;
        });
      },
    });
    await faults;
    if (faultError !== undefined) throw faultError;
    progress("  run over; reading the store back");
    // Without confirmations nothing says when the store is done: the time a new series needs to show (~10 s).
    await sleep(confirm ? 3_000 : 15_000);
    brokerCpu.sample([s.broker.pid]);
    ingestCpu.sample([ingest.pid]);
    const stored = await storedReadings(s.vm.url);
    const allWindows = [...windows, ...scenarioWindows(summary.faults.log, o.confirmTimeoutS + 5)].sort(
      (a, b) => a.fromS - b.fromS,
    );
    const buckets: { taken: number; lost: number }[] = [];
    const bucket = (t: number) => {
      const i = Math.max(0, Math.floor(t / BUCKET_S));
      while (buckets.length <= i) buckets.push({ taken: 0, lost: 0 });
      return buckets[i]!;
    };
    const cutEnds = new Map<string, number[]>();
    for (const e of summary.faults.log)
      if (e.type === "power_cut" && e.event === "end")
        cutEnds.set(e.device, [...(cutEnds.get(e.device) ?? []), e.elapsedS]);
    let taken = 0;
    let lost = 0;
    let twice = 0;
    let storedN = 0;
    for (const d of summary.devices) {
      const have = stored.get(d.id);
      d.boots.forEach((b, i) => {
        const startS = i === 0 ? 0 : (cutEnds.get(d.id)?.[i - 1] ?? 0);
        for (let seq = 0; seq < b.taken; seq++) {
          const at = have?.get(`${b.boot}/${seq}`);
          const cell = bucket(startS + seq / o.rateHz);
          cell.taken++;
          taken++;
          if (!at) {
            cell.lost++;
            lost++;
          } else {
            storedN++;
            if (at.size > 1) twice++;
          }
        }
      });
    }
    return {
      confirm,
      summary,
      windows: allWindows,
      taken,
      stored: storedN,
      lost,
      twice,
      buckets,
      brokerCpuS: brokerCpu.totalSeconds(),
      ingestCpuS: ingestCpu.totalSeconds(),
    };
  } finally {
    clearInterval(poll);
    await ingest.stop("SIGTERM").catch(() => undefined);
    await s.cleanup();
  }
}

function report(o: Options, results: ModeResult[]): void {
  const load = readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ");
  const lines: string[] = [];
  lines.push(
    `\nchaos: ${o.count} ${o.encrypted ? "encrypted" : "plain"} boards at ${o.rateHz} Hz for ${o.durationS} s, ` +
      `durable horizon ${o.horizonS} s, confirmation timeout ${o.confirmTimeoutS} s; Debian mosquitto, ` +
      `VictoriaMetrics, the ingest CLI; ${availableParallelism()} cores, load average ${load}`,
  );
  lines.push("\nfaults (seconds after sampling started, first run's times):");
  for (const w of results[0]!.windows)
    lines.push(`  ${w.fromS.toFixed(0).padStart(4)}–${w.toS.toFixed(0)} s  ${w.what}`);
  const head = ["taken (s)", ...results.map((r) => `lost, confirmations ${r.confirm ? "on" : "off"}`)];
  lines.push(`\n${head.map((h) => h.padStart(26)).join("")}`);
  const n = Math.max(...results.map((r) => r.buckets.length));
  for (let i = 0; i < n; i++) {
    const cells = results.map((r) => {
      const b = r.buckets[i] ?? { taken: 0, lost: 0 };
      return `${b.lost} of ${b.taken}`;
    });
    lines.push([`${i * BUCKET_S}–${(i + 1) * BUCKET_S}`, ...cells].map((c) => c.padStart(26)).join(""));
  }
  lines.push("");
  const row = (label: string, f: (r: ModeResult) => string) =>
    lines.push([label, ...results.map(f)].map((c, i) => (i === 0 ? c.padEnd(34) : c.padStart(20))).join(""));
  row("", (r) => `confirmations ${r.confirm ? "on" : "off"}`);
  row("readings taken", (r) => String(r.taken));
  row("confirmed stored (boards' count)", (r) => String(r.summary.messages.confirmed));
  row("in the store", (r) => String(r.stored));
  row("lost", (r) => String(r.lost));
  row("stored at two timestamps", (r) => String(r.twice));
  row("PUBLISHes (resends included)", (r) => String(r.summary.messages.publishes));
  row("dropped from RAM (kept in flash)", (r) => String(r.summary.messages.outboxDropped));
  row("broker CPU µs per reading", (r) => ((r.brokerCpuS * 1e6) / Math.max(1, r.taken)).toFixed(1));
  row("ingest CPU µs per reading", (r) => ((r.ingestCpuS * 1e6) / Math.max(1, r.taken)).toFixed(1));
  // Per PUBLISH the resends are counted too: what each message costs, apart from how many there are.
  row("broker CPU µs per PUBLISH", (r) =>
    ((r.brokerCpuS * 1e6) / Math.max(1, r.summary.messages.publishes)).toFixed(1),
  );
  row("ingest CPU µs per PUBLISH", (r) =>
    ((r.ingestCpuS * 1e6) / Math.max(1, r.summary.messages.publishes)).toFixed(1),
  );
  console.log(lines.join("\n"));
}

export async function run(argv: string[]): Promise<void> {
  const a = await yargs(argv)
    .scriptName("npm run bench -- chaos")
    .usage(
      "$0 [options]\n\nOverlapping crashes of store, broker, ingest and boards; loss per fault, with and without confirmations.",
    )
    .option("count", { type: "number", default: 1000, describe: "Emulated boards" })
    .option("rate", { type: "number", default: 1, describe: "Readings per second per board" })
    .option("duration", { type: "number", default: 180, describe: "Seconds of sampling (≥ 60)" })
    .option("horizon", { type: "number", default: 15, describe: "The ingest's durable horizon, seconds" })
    .option("confirm-timeout", {
      type: "number",
      describe: "Boards' confirmation timeout, seconds (default horizon + 5)",
    })
    .option("affected", {
      type: "number",
      default: 50,
      describe: "Boards cut off the network, and boards power-cut",
    })
    .option("modes", { type: "string", default: "on,off", describe: "Confirmation modes to run, in order" })
    .option("plain", {
      type: "boolean",
      default: false,
      describe: "Plaintext payloads instead of AES-256-GCM",
    })
    .option("seed", { type: "number", default: 15 })
    .option("connect-rate", {
      type: "number",
      default: 200,
      describe: "Board connects per second at the start",
    })
    .check((x) => {
      if (x.duration < 60) throw new Error("--duration must be at least 60 s (the schedule needs it)");
      if (!(x.count >= 2)) throw new Error("--count must be at least 2");
      for (const m of x.modes.split(","))
        if (m !== "on" && m !== "off") throw new Error(`--modes: "${m}" is not on or off`);
      return true;
    })
    .strict()
    .help()
    .parseAsync();
  ensureFdLimit(a.count * 2 + 200);
  const o: Options = {
    count: a.count,
    rateHz: a.rate,
    durationS: a.duration,
    horizonS: a.horizon,
    confirmTimeoutS: a["confirm-timeout"] ?? a.horizon + 5,
    affected: a.affected,
    encrypted: !a.plain,
    seed: a.seed,
    connectRate: a["connect-rate"],
  };
  const progress = (m: string) => console.error(m);
  const results: ModeResult[] = [];
  for (const m of a.modes.split(",")) {
    progress(
      `chaos: confirmations ${m}: starting mosquitto, VictoriaMetrics, the ingest and ${o.count} boards`,
    );
    results.push(await runMode(o, m === "on", progress));
  }
  report(o, results);
  if (results.some((r) => r.confirm && r.lost > 0)) {
    console.error("chaos: readings lost with confirmations on");
    process.exitCode = 1;
  }
}
