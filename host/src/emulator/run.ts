/**
 * One emulator run from options to summary: set up (setup.ts), sample with the live snapshot once a second
 * (live-snapshot.ts, read by the live view and the store metrics), drain, summarise (summary.ts). The CLI,
 * the tests and the benchmark all go through here, so this module also re-exports what they use.
 */
import { BenchWriter, finalBenchFields, liveBenchFields } from "./bench-metrics";
import type { StoreTarget } from "./bench-metrics";
import { sleep } from "./fleet";
import type { FleetControl } from "./fleet";
import { LiveSampler } from "./live-snapshot";
import type { LiveSnapshot } from "./live-snapshot";
import { setUpRun } from "./setup";
import type { RunSetupOptions } from "./setup";
import { summarize } from "./summary";
import type { EmulatorSummary } from "./summary";
import type { Verifier } from "./verifier";

export { defaultWorkers, deviceIds, nextBoot } from "./setup";
export { summaryLines, writeReport, type EmulatorSummary } from "./summary";
export type { LiveSnapshot } from "./live-snapshot";

/** A run's options: what it is made of (RunSetupOptions, documented there) and how it runs. */
export interface EmulatorOptions extends RunSetupOptions {
  drainTimeoutS?: number;
  /** Write the emulator's figures to the store (measurement `bench`) every 10 s and at the end. */
  store?: StoreTarget;
  /** The `run` tag of those points; default: emulate-<boards>-<boot>. */
  runName?: string;
  signal?: AbortSignal;
  /** Progress lines for setup steps (PKI generation...). */
  onProgress?: (line: string) => void;
  /** Called about once a second with the live figures. */
  onLive?: (s: LiveSnapshot) => void;
  /**
   * Called once, when steady state begins (every board connected and its backlog sent), with the fleet's
   * elapsed seconds (the live view's t=): the steady-state figures are measured from here, and a benchmark
   * watching from outside (its own end-to-end subscriber) starts its window at the same moment.
   */
  onSteady?: (elapsedS: number) => void;
  /** Test hooks: run against the fleet while it runs. */
  onStarted?: (ctx: {
    fleet: FleetControl;
    verifier: Verifier | undefined;
    brokerUrl: string;
  }) => void | Promise<void>;
}

export async function runEmulator(o: EmulatorOptions): Promise<EmulatorSummary> {
  const log = o.onProgress ?? ((): void => undefined);
  const run = await setUpRun(o, log);
  const { fleet, verifier, boot } = run;
  try {
    // Memory per board counts everything a board brings: its TLS context, socket, outbox and physics.
    const rssBefore = process.memoryUsage().rss;
    let lastIdentityLog = 0;
    await fleet.init((done, total) => {
      if (done === total || performance.now() - lastIdentityLog > 2000) {
        lastIdentityLog = performance.now();
        log(`loading board identities ${done}/${total}`);
      }
    });
    const cpuStart = process.cpuUsage();
    fleet.start();
    log(
      `${o.count} boards sampling at ${o.rateHz} Hz, connecting at up to ${o.connectRate}/s to ${run.brokerUrl}` +
        (o.durationS === undefined ? " — Ctrl-C to stop" : ` for ${o.durationS} s`),
    );
    await o.onStarted?.({ fleet, verifier, brokerUrl: run.brokerUrl });

    const bench = new BenchWriter(o.store, o.runName ?? `emulate-${o.count}-${boot}`, log);
    const steady = await sample(o, fleet, verifier, bench);
    await fleet.stopSampling();
    const sampledS = fleet.elapsedS();
    const cpuEnd = process.cpuUsage();
    const ackedEnd = fleet.stats.acked;
    const memory = process.memoryUsage();

    log(`stopping: draining ${fleet.pendingMessages()} queued readings`);
    const unacked = await fleet.drain((o.drainTimeoutS ?? 30) * 1000);
    const devices = await fleet.deviceCounts();
    if (verifier) {
      // Everything acknowledged should reach the subscriber within moments; give a slow broker time.
      const published = devices.reduce((n, d) => n + d.published, 0);
      const expected = published - fleet.stats.outboxDropped - unacked;
      const until = performance.now() + 15_000;
      while (verifier.unique < expected && performance.now() < until) await sleep(50);
    }

    const summary = summarize({
      boards: o.count,
      rateHz: o.rateHz,
      encrypt: o.encrypt,
      seed: o.seed,
      workers: run.workers,
      brokerUrl: run.brokerUrl,
      embeddedBroker: run.embedded !== undefined,
      boot,
      fleet,
      verifier,
      sampledS,
      cpuFrom: steady?.cpu ?? cpuStart,
      cpuEnd,
      steadyWindow: steady !== undefined,
      ackedFrom: steady?.acked ?? 0,
      ackedEnd,
      rssBefore,
      memory,
      unacked,
      devices,
    });
    if (bench.enabled) {
      bench.write(finalBenchFields(summary));
      await bench.flush();
    }
    return summary;
  } finally {
    await run.stop();
  }
}

/**
 * The sampling phase: until the duration is up or the signal aborts, watches for steady state (every board
 * connected and its backlog sent: the CPU window starts there) and hands each second's snapshot to the live
 * view and, every 10 s, to the store. Returns where steady state began, if it did.
 */
async function sample(
  o: EmulatorOptions,
  fleet: FleetControl,
  verifier: Verifier | undefined,
  bench: BenchWriter,
): Promise<{ cpu: NodeJS.CpuUsage; acked: number } | undefined> {
  let steady: { cpu: NodeJS.CpuUsage; acked: number } | undefined;
  const live = new LiveSampler(fleet, verifier, o.count);
  const endAt = o.durationS === undefined ? Number.POSITIVE_INFINITY : performance.now() + o.durationS * 1000;
  let aborted = false;
  const onAbort = (): void => {
    aborted = true;
  };
  o.signal?.addEventListener("abort", onAbort, { once: true });
  try {
    while (!aborted && !o.signal?.aborted && performance.now() < endAt) {
      await sleep(Math.min(250, Math.max(1, endAt - performance.now())));
      if (fleet.failure) throw fleet.failure;
      if (!steady && fleet.allConnectedAtS !== undefined && fleet.pendingMessages() <= o.count * 2) {
        steady = { cpu: process.cpuUsage(), acked: fleet.stats.acked };
        fleet.markSteady();
        if (verifier) verifier.steady = true;
        o.onSteady?.(fleet.elapsedS());
      }
      const now = performance.now();
      const snapshot = live.sample(now);
      if (!snapshot) continue;
      o.onLive?.(snapshot);
      if (bench.due(now)) bench.write(liveBenchFields(snapshot, process.memoryUsage().rss));
    }
  } finally {
    o.signal?.removeEventListener("abort", onAbort);
  }
  return steady;
}
