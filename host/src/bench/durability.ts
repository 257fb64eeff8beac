// `npm run bench -- durability`: what a 204 from VictoriaMetrics is worth against a crash. For each delay D:
// a fresh Debian VictoriaMetrics on a free loopback port, N points written (one POST, answered 204),
// optionally `/internal/force_flush`, D seconds of waiting, SIGKILL, restart on the same data folder,
// and a count of the points that survived. The delay from which every point survives is the persistence
// horizon that host/src/store/durable-horizon.ts waits out before the ingest may confirm a reading.
import { mkdirSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { join } from "node:path";
import yargs from "yargs";
import { exportSeries, startVictoriaMetrics, type VictoriaMetricsHandle } from "../store/victoria-metrics";
import DurableHorizon, { StoreIncarnation, incarnationSample } from "../store/durable-horizon";
import { stateDir } from "../../../shared/state-dir";

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

async function incarnation(vm: VictoriaMetricsHandle, seen: StoreIncarnation): Promise<number> {
  const res = await fetch(`${vm.url}/metrics`, { signal: AbortSignal.timeout(5000) });
  const sample = incarnationSample(await res.text());
  if (!sample) throw new Error("/metrics lacks process_start_time_seconds or vm_rows_inserted_total");
  return seen.observe(sample);
}

async function trial(o: { points: number; delayS: number; forceFlush: boolean; extraArgs: string[] }) {
  const root = join(stateDir(), "bench", "durability");
  mkdirSync(root, { recursive: true });
  const dataDir = await mkdtemp(join(root, "vm-"));
  const vm = await startVictoriaMetrics({ dataDir, extraArgs: o.extraArgs });
  try {
    const seen = new StoreIncarnation();
    const before = await incarnation(vm, seen);
    const t0 = Date.now() - o.points; // one point per ms, all in the past
    const lines = Array.from({ length: o.points }, (_, i) => `durability,trial=t v=${i} ${t0 + i}`).join(
      "\n",
    );
    const res = await fetch(`${vm.url}/api/v2/write?precision=ms`, { method: "POST", body: lines });
    if (res.status !== 204) throw new Error(`write: HTTP ${res.status} ${await res.text()}`);
    await incarnation(vm, seen); // the counter now holds the write
    if (o.forceFlush) {
      const f = await fetch(`${vm.url}/internal/force_flush`);
      if (!f.ok) throw new Error(`force_flush: HTTP ${f.status}`);
    }
    await sleep(o.delayS * 1000);
    await vm.kill();
    await vm.start();
    const after = await incarnation(vm, seen);
    const series = await exportSeries(vm.url, '{__name__="durability_v"}', {
      startMs: t0 - 1000,
      endMs: Date.now(),
    });
    const survived = new Set(series.flatMap((s) => s.timestamps)).size;
    return { survived, restartSeen: after !== before };
  } finally {
    await vm.stop();
    await rm(dataDir, { recursive: true, force: true });
  }
}

/**
 * What the confirmation rule costs the ingest: readings held for the horizon at a given rate (memory) and the
 * CPU of recording writes and of one observe() per second. Items are (device, boot, seq) keys as the ingest
 * would hold them.
 */
function ruleCost(o: { rate: number; horizonS: number; batch: number }) {
  const global = globalThis as { gc?: () => void };
  global.gc?.();
  const heap0 = process.memoryUsage().heapUsed;
  const h = new DurableHorizon<{ device: string; boot: number; seq: number }>({
    horizonMs: o.horizonS * 1000,
  });
  const seconds = o.horizonS + 5;
  let cpuWrite = 0;
  let cpuObserve = 0;
  let peak = 0;
  let peakHeap = 0;
  for (let t = 0; t < seconds; t++) {
    const c0 = process.cpuUsage();
    for (let b = 0; b < o.rate / o.batch; b++) {
      const items = Array.from({ length: o.batch }, (_, i) => ({
        device: `elx-${(b * o.batch + i) % 1000}`,
        boot: 1,
        seq: t,
      }));
      h.written(items, t * 1000 + b, 1);
    }
    const c1 = process.cpuUsage(c0);
    cpuWrite += c1.user + c1.system;
    if (h.pending > peak) {
      peak = h.pending;
      peakHeap = process.memoryUsage().heapUsed - heap0;
    }
    const c2 = process.cpuUsage();
    h.observe(t * 1000 + 999, 1);
    const c3 = process.cpuUsage(c2);
    cpuObserve += c3.user + c3.system;
  }
  const messages = o.rate * seconds;
  return {
    peak,
    bytesPerHeld: peakHeap / peak,
    writeUsPerMsg: cpuWrite / messages,
    observeUsPerMsg: cpuObserve / messages,
  };
}

export async function run(argv: string[]): Promise<void> {
  const a = await yargs(argv)
    .scriptName("npm run bench -- durability")
    .usage("$0 [options]\n\nHow long after a 204 VictoriaMetrics' points survive a SIGKILL.")
    .option("points", { type: "number", default: 1000, describe: "points per write" })
    .option("delays", {
      type: "string",
      default: "0,1,2,5,10,15,20,30",
      describe: "seconds between the 204 and the SIGKILL",
    })
    .option("repeat", {
      type: "number",
      default: 1,
      describe: "trials per delay (the table shows the fewest survivors)",
    })
    .option("force-flush", {
      type: "boolean",
      default: false,
      describe: "also run each trial with /internal/force_flush after the write",
    })
    .option("rate", { type: "number", default: 1000, describe: "readings/s for the rule's cost" })
    .option("horizon", {
      type: "number",
      default: 30,
      describe: "the rule's horizon in seconds, for its cost",
    })
    .option("vm-args", {
      type: "string",
      default: "",
      describe: "extra victoria-metrics flags, space-separated",
    })
    .strict()
    .help()
    .parseAsync();
  const delays = a.delays.split(",").map(Number);
  if (delays.some((d) => !(d >= 0))) throw new Error("--delays: seconds ≥ 0, comma-separated");
  const extraArgs = a["vm-args"].split(/\s+/).filter((s) => s !== "");
  const modes = a["force-flush"] ? [false, true] : [false];
  console.log(
    `VictoriaMetrics (${process.env.EST_VICTORIA_METRICS_BIN ?? "/usr/bin/victoria-metrics"}) ${extraArgs.join(" ")}`,
  );
  console.log(
    `${a.points} points in one write (204), then wait, SIGKILL, restart, count; ${a.repeat} trial(s) each\n`,
  );
  console.log("delay s | force_flush | survived (fewest)     | restart seen (StoreIncarnation)");
  for (const forceFlush of modes)
    for (const delayS of delays) {
      let fewest = Infinity;
      let restartSeen = true;
      for (let r = 0; r < a.repeat; r++) {
        const t = await trial({ points: a.points, delayS, forceFlush, extraArgs });
        fewest = Math.min(fewest, t.survived);
        restartSeen &&= t.restartSeen;
      }
      console.log(
        `${String(delayS).padStart(7)} | ${(forceFlush ? "yes" : "no").padEnd(11)} | ${`${fewest} / ${a.points}`.padEnd(21)} | ${restartSeen ? "yes" : "NO"}`,
      );
    }
  const cost = ruleCost({ rate: a.rate, horizonS: a.horizon, batch: 100 });
  console.log(
    `\nConfirmation rule (durable-horizon, ${a.horizon} s horizon, ${a.rate} readings/s in batches of 100): ` +
      `${cost.peak} readings held at peak, ~${Math.round(cost.bytesPerHeld)} bytes of heap each (including the key objects); ` +
      `CPU ${cost.writeUsPerMsg.toFixed(2)} µs per reading to record (the bench builds the keys too) + ${cost.observeUsPerMsg.toFixed(3)} µs per reading to confirm`,
  );
}
