/**
 * What a run reports: the summary built from the run's end figures (connections, messages, latency, loss per
 * device, CPU and memory), its text lines and the JSON report. Changes when what we report changes.
 */
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { writeFileAtomic } from "../../../shared/state-dir";
import type { DeviceCount, FaultLogEntry, FleetControl } from "./fleet";
import type { Histogram } from "./histogram";
import { tallyKey } from "./verifier";
import type { Verifier } from "./verifier";

export interface EmulatorSummary {
  ok: boolean;
  boards: number;
  /** Threads running the boards (1: the main thread). */
  workers: number;
  rateHz: number;
  durationS: number;
  broker: string;
  embeddedBroker: boolean;
  encrypt: boolean;
  seed: string;
  boot: number;
  connect: {
    allConnectedS: number | null;
    connected: number;
    latencyP50Ms: number;
    latencyP99Ms: number;
    handshakeFailures: number;
    /** Of the handshake failures, servers the boards' broker check refused (key not pinned, chain not the fleet's). */
    brokerRefused: number;
    connectFailures: number;
    reconnects: number;
  };
  messages: {
    readings: number;
    publishes: number;
    acked: number;
    resends: number;
    outboxDropped: number;
    unacked: number;
    ackedPerS: number;
    /** Confirmed stored by the ingest, and PUBACKed but unconfirmed at the end. */
    confirmed: number;
    awaitingConfirmation: number;
    /** Boards per confirmation state (off, awaiting, present, absent) at the end. */
    confirmationStates: Record<string, number>;
  };
  pubackMs: { p50: number; p99: number; max: number };
  /** After every board connected and sent its backlog (null if that never happened). */
  pubackSteadyMs: { p50: number; p99: number } | null;
  verify: {
    received: number;
    unique: number;
    duplicates: number;
    lost: number;
    otherBoot: number;
    rejected: number;
    e2eMs: { p50: number; p99: number; max: number };
    e2eSteadyMs: { p50: number; p99: number } | null;
    lostExamples: { device: string; missing: number }[];
  } | null;
  /** Process CPU: with the embedded broker or the verifier running here, their work is included (see `includes`). */
  cpu: { userS: number; systemS: number; usPerMessage: number; window: string; includes: string[] };
  memory: { rssMiB: number; heapUsedMiB: number; bytesPerBoard: number };
  faults: { injected: number; log: FaultLogEntry[] };
  devices: {
    id: string;
    boot: number;
    published: number;
    dropped: number;
    /** Readings taken per boot (more than one after a power cut). */
    boots: { boot: number; taken: number }[];
  }[];
}

const round = (x: number, d = 2): number => (Number.isFinite(x) ? Math.round(x * 10 ** d) / 10 ** d : 0);

/** p50/p99/max of a whole run, in ms, as the summary reports them. */
function latencySummary(h: Histogram): { p50: number; p99: number; max: number } {
  return { p50: round(h.percentileMs(0.5)), p99: round(h.percentileMs(0.99)), max: round(h.maxUs / 1000) };
}

/** p50/p99 after every board connected, or null when nothing was measured then. */
function steadySummary(h: Histogram): { p50: number; p99: number } | null {
  return h.count ? { p50: round(h.percentileMs(0.5)), p99: round(h.percentileMs(0.99)) } : null;
}

/** The figures a run collected, from which the summary is computed. */
export interface RunFigures {
  boards: number;
  rateHz: number;
  encrypt: boolean;
  seed: number | string;
  workers: number;
  brokerUrl: string;
  embeddedBroker: boolean;
  boot: number;
  fleet: FleetControl;
  verifier: Verifier | undefined;
  /** Seconds the boards sampled. */
  sampledS: number;
  /** Process CPU at the start of the measured window and at the end of sampling. */
  cpuFrom: NodeJS.CpuUsage;
  cpuEnd: NodeJS.CpuUsage;
  /** Whether the window starts at steady state (every board connected, backlog sent) or at the fleet's start. */
  steadyWindow: boolean;
  /** Acknowledged messages at the start of the window and at the end of sampling. */
  ackedFrom: number;
  ackedEnd: number;
  /** RSS before the boards were loaded, and memory at the end of sampling. */
  rssBefore: number;
  memory: NodeJS.MemoryUsage;
  /** Readings still unacknowledged after the drain. */
  unacked: number;
  devices: readonly DeviceCount[];
}

/** Readings each device published that the verifier never saw (a device unseen lost all it published). */
function lossAccount(
  verifier: Verifier,
  devices: readonly DeviceCount[],
  runBoot: number,
): NonNullable<EmulatorSummary["verify"]> {
  const lostExamples: { device: string; missing: number }[] = [];
  let lost = 0;
  for (const d of devices) {
    let missing = 0;
    // Per boot: a board power-cut during the run took readings in more than one.
    const boots = d.boots.length ? d.boots : [{ boot: runBoot, taken: d.published }];
    for (const b of boots) {
      const t = verifier.tallies.get(tallyKey(d.id, b.boot, runBoot));
      missing += t ? t.missingBelow(b.taken) : b.taken;
    }
    lost += missing;
    if (missing > 0 && lostExamples.length < 20) lostExamples.push({ device: d.id, missing });
  }
  return {
    received: verifier.received,
    unique: verifier.unique,
    duplicates: verifier.duplicates,
    lost,
    otherBoot: verifier.otherBoot,
    rejected: verifier.rejected,
    e2eMs: latencySummary(verifier.e2eLatency),
    e2eSteadyMs: steadySummary(verifier.e2eSteady),
    lostExamples,
  };
}

export function summarize(r: RunFigures): EmulatorSummary {
  const s = r.fleet.stats;
  const dropped = s.outboxDropped;
  const verify = r.verifier ? lossAccount(r.verifier, r.devices, r.boot) : null;
  const userS = (r.cpuEnd.user - r.cpuFrom.user) / 1e6;
  const systemS = (r.cpuEnd.system - r.cpuFrom.system) / 1e6;
  return {
    ok: (verify ? verify.lost === 0 && verify.rejected === 0 : true) && r.unacked === 0 && dropped === 0,
    boards: r.boards,
    workers: r.workers,
    rateHz: r.rateHz,
    durationS: round(r.sampledS, 1),
    broker: r.brokerUrl,
    embeddedBroker: r.embeddedBroker,
    encrypt: r.encrypt,
    seed: String(r.seed),
    boot: r.boot,
    connect: {
      allConnectedS: r.fleet.allConnectedAtS === undefined ? null : round(r.fleet.allConnectedAtS, 3),
      connected: s.connected,
      latencyP50Ms: round(s.connectLatency.percentileMs(0.5)),
      latencyP99Ms: round(s.connectLatency.percentileMs(0.99)),
      handshakeFailures: s.handshakeFailures,
      brokerRefused: s.brokerRefused,
      connectFailures: s.connectFailures,
      reconnects: Math.max(0, s.connects - r.boards),
    },
    messages: {
      readings: s.readings,
      publishes: s.publishes,
      acked: s.acked,
      resends: s.resends,
      outboxDropped: dropped,
      unacked: r.unacked,
      ackedPerS: round(r.ackedEnd / Math.max(r.sampledS, 1e-3), 1),
      confirmed: r.devices.reduce((n, d) => n + d.confirmed, 0),
      awaitingConfirmation: r.devices.reduce((n, d) => n + d.awaiting, 0),
      confirmationStates: countBy(r.devices.map((d) => d.confirmations)),
    },
    pubackMs: latencySummary(s.pubackLatency),
    pubackSteadyMs: steadySummary(s.pubackSteady),
    verify,
    cpu: {
      userS: round(userS, 3),
      systemS: round(systemS, 3),
      usPerMessage: round(((userS + systemS) * 1e6) / Math.max(1, r.ackedEnd - r.ackedFrom), 1),
      window: r.steadyWindow
        ? "from all boards connected to end of sampling"
        : "whole run (not every board connected)",
      includes: [
        "boards",
        ...(r.embeddedBroker ? ["embedded broker"] : []),
        ...(r.verifier ? ["verifier"] : []),
      ],
    },
    memory: {
      rssMiB: round(r.memory.rss / 2 ** 20, 1),
      heapUsedMiB: round(r.memory.heapUsed / 2 ** 20, 1),
      bytesPerBoard: Math.round((r.memory.rss - r.rssBefore) / r.boards),
    },
    // Workers report their faults in batches: put the log back in time order.
    faults: {
      injected: s.faultsInjected,
      log: [...r.fleet.faultLog].sort((a: FaultLogEntry, b: FaultLogEntry) => a.elapsedS - b.elapsedS),
    },
    devices: r.devices.map((d) => ({
      id: d.id,
      boot: r.boot,
      published: d.published,
      dropped: d.dropped,
      boots: d.boots.length ? d.boots : [{ boot: r.boot, taken: d.published }],
    })),
  };
}

/** Readings carry millisecond timestamps: below 1 ms the latency is only known to be under 1 ms. */
const ms = (x: number): string => (x < 1 ? "<1 ms" : `${x} ms`);

export function summaryLines(s: EmulatorSummary): string[] {
  const v = s.verify;
  return [
    `${s.ok ? "OK" : "FAILED"}: ${s.boards} boards${s.workers > 1 ? ` on ${s.workers} worker threads` : ""}, ${s.durationS} s at ${s.rateHz} Hz against ${s.embeddedBroker ? "the embedded broker" : s.broker}${s.encrypt ? ", encrypted" : ""}, seed ${s.seed}, boot ${s.boot}`,
    `  connect: all connected in ${s.connect.allConnectedS ?? "-"} s, latency p50 ${s.connect.latencyP50Ms} ms p99 ${s.connect.latencyP99Ms} ms, ` +
      `handshake failures ${s.connect.handshakeFailures} (broker refused ${s.connect.brokerRefused}), connect failures ${s.connect.connectFailures}, reconnects ${s.connect.reconnects}`,
    `  messages: ${s.messages.readings} readings, ${s.messages.acked} acknowledged (${s.messages.ackedPerS}/s), ${s.messages.resends} resent, ` +
      `${s.messages.outboxDropped} dropped by full outboxes, ${s.messages.unacked} never acknowledged`,
    `  confirmations: ${s.messages.confirmed} confirmed stored, ${s.messages.awaitingConfirmation} awaiting at the end; boards ` +
      Object.entries(s.messages.confirmationStates)
        .map(([state, n]) => `${state} ${n}`)
        .join(", "),
    `  PUBACK latency p50 ${s.pubackMs.p50} ms p99 ${s.pubackMs.p99} ms max ${s.pubackMs.max} ms` +
      (s.pubackSteadyMs
        ? `; steady state p50 ${s.pubackSteadyMs.p50} ms p99 ${s.pubackSteadyMs.p99} ms`
        : ""),
    v
      ? `  verified: ${v.unique} unique of ${v.received} received, ${v.duplicates} duplicates, ${v.lost} LOST, ${v.rejected} rejected; ` +
        `end-to-end (device ms clock) p50 ${ms(v.e2eMs.p50)} p99 ${ms(v.e2eMs.p99)} max ${ms(v.e2eMs.max)}` +
        (v.e2eSteadyMs ? `; steady state p50 ${ms(v.e2eSteadyMs.p50)} p99 ${ms(v.e2eSteadyMs.p99)}` : "")
      : "  verification off",
    `  process CPU ${s.cpu.usPerMessage} µs/message for ${s.cpu.includes.join(" + ")} (${s.cpu.window}), ` +
      `memory ${s.memory.bytesPerBoard} B/board, RSS ${s.memory.rssMiB} MiB`,
    `  faults injected: ${s.faults.injected}`,
  ];
}

export async function writeReport(path: string, s: EmulatorSummary): Promise<void> {
  await mkdir(join(path, ".."), { recursive: true });
  await writeFileAtomic(path, JSON.stringify(s, null, 2) + "\n");
}

function countBy(values: readonly string[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const v of values) out[v] = (out[v] ?? 0) + 1;
  return out;
}
