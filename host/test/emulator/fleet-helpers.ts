import type { Reading } from "../../../firmware/src/telemetry/reading";
import { Fleet } from "../../src/emulator/fleet";
import type { FleetControl } from "../../src/emulator/fleet";
import type { EmulatorOptions, EmulatorSummary } from "../../src/emulator/run";
import { runEmulator } from "../../src/emulator/run";
import type { Verifier } from "../../src/emulator/verifier";

export interface RunResult {
  summary: EmulatorSummary;
  readings: Reading[];
  /** Each board's sampling phase (boards on the test's thread only; empty with workers). */
  phases: Map<string, number>;
  fleet: FleetControl;
  verifier: Verifier | undefined;
}

/** Runs the emulator with the verifier keeping every reading, and remembers each board's sampling phase. */
export async function runAndCollect(o: Omit<EmulatorOptions, "verify" | "keepReadings">): Promise<RunResult> {
  let fleet: FleetControl | undefined;
  let verifier: Verifier | undefined;
  const summary = await runEmulator({
    ...o,
    verify: true,
    keepReadings: true,
    onStarted: async (ctx) => {
      fleet = ctx.fleet;
      verifier = ctx.verifier;
      await o.onStarted?.(ctx);
    },
  });
  const phases = new Map<string, number>();
  if (fleet instanceof Fleet) for (const b of fleet.boards) phases.set(b.id, b.phase);
  return { summary, readings: verifier?.readings ?? [], phases, fleet: fleet!, verifier };
}

/** Count of arrivals per (device, seq): exactly-once means every value is 1. */
export function arrivals(readings: readonly Reading[]): Map<string, number> {
  const m = new Map<string, number>();
  for (const r of readings) m.set(`${r.sensorId}#${r.seq}`, (m.get(`${r.sensorId}#${r.seq}`) ?? 0) + 1);
  return m;
}

/** Checks that each device's readings are exactly seqs 0..published-1. */
export function missingOrExtra(summary: EmulatorSummary, readings: readonly Reading[]): string[] {
  const got = new Map<string, Set<number>>();
  for (const r of readings) {
    const s = got.get(r.sensorId) ?? new Set<number>();
    s.add(r.seq);
    got.set(r.sensorId, s);
  }
  const problems: string[] = [];
  for (const d of summary.devices) {
    const s = got.get(d.id) ?? new Set<number>();
    for (let k = 0; k < d.published; k++) if (!s.has(k)) problems.push(`${d.id}#${k} missing`);
    for (const k of s) if (k >= d.published) problems.push(`${d.id}#${k} unexpected`);
  }
  return problems;
}

/** Polls `cond` every 50 ms until it holds; fails naming `what` after `timeoutMs`. */
export async function until(what: string, cond: () => boolean, timeoutMs = 30_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
