// A real stack on loopback for tests and benchmarks: the project's PKI (P-256 device keys, fast), Debian's
// mosquitto with the project's config and ACL, Debian's VictoriaMetrics, in a temp dir; the ingest CLI as a child.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ensureDevPki, type PkiPaths } from "../../../pki/src/index";
import { startMosquitto, type MosquittoHandle } from "../../src/broker/mosquitto";
import { loadOrCreatePayloadMaster } from "../../src/crypto/device-keys";
import {
  exportSeries,
  startVictoriaMetrics,
  type VictoriaMetricsHandle,
} from "../../src/store/victoria-metrics";
import { spawnIngestCli, type IngestProcess } from "./spawn-ingest";

export const KEY_ID = 1;

export interface TestStack {
  dir: string;
  stateDir: string;
  pki: PkiPaths;
  broker: MosquittoHandle;
  vm: VictoriaMetricsHandle;
  ids: string[];
  master: Uint8Array;
  deadLetterPath: string;
  cleanup(): Promise<void>;
}

export const boardIds = (n: number, prefix = "el"): string[] =>
  Array.from({ length: n }, (_, i) => `${prefix}-${String(i).padStart(4, "0")}`);

export async function startTestStack(o: {
  devices: number;
  dedup?: boolean;
  prefix?: string;
  /** Passed to startMosquitto; default (true): the session belongs to the certificate, not the client id. */
  bindClientIdToIdentity?: boolean;
}): Promise<TestStack> {
  const dir = await mkdtemp(join(tmpdir(), "est-ingest-"));
  const stateDir = join(dir, "state");
  const ids = boardIds(o.devices, o.prefix);
  const pki = await ensureDevPki({ stateDir, devices: ids, services: ["ingest"], deviceKeyType: "p256" });
  const master = await loadOrCreatePayloadMaster(stateDir, KEY_ID);
  const broker = await startMosquitto({
    pki,
    dataDir: join(dir, "broker"),
    ...(o.bindClientIdToIdentity === undefined ? {} : { bindClientIdToIdentity: o.bindClientIdToIdentity }),
  });
  let vm: VictoriaMetricsHandle;
  try {
    vm = await startVictoriaMetrics({ dataDir: join(dir, "vm"), dedup: o.dedup });
  } catch (err) {
    await broker.stop();
    throw err;
  }
  return {
    dir,
    stateDir,
    pki,
    broker,
    vm,
    ids,
    master,
    deadLetterPath: join(stateDir, "ingest", "dead-letter.jsonl"),
    async cleanup() {
      await Promise.allSettled([broker.stop(), vm.stop()]);
      await rm(dir, { recursive: true, force: true });
    },
  };
}

export type SpawnedIngest = IngestProcess;

/** The real CLI as a child process (`npm run ingest`), for kill -9 and signal tests. */
export function spawnIngest(
  s: Pick<TestStack, "stateDir" | "broker" | "vm">,
  o: { encrypted: boolean; extraArgs?: string[]; readyTimeoutMs?: number },
): Promise<SpawnedIngest> {
  const extra = o.extraArgs ?? [];
  // yargs turns a repeated option into an array: defaults only where the test sets nothing.
  const defaults = [
    ["--metrics-port", "0"],
    ["--account-interval", "1"],
    ["--progress-interval", "0"],
  ].filter(([flag]) => !extra.includes(flag!));
  return spawnIngestCli({
    stateDir: s.stateDir,
    args: [
      "--broker",
      s.broker.url,
      "--store-url",
      s.vm.url,
      o.encrypted ? "--encrypted" : "--plain",
      ...defaults.flat(),
      ...extra,
    ],
    ...(o.readyTimeoutMs ? { readyTimeoutMs: o.readyTimeoutMs } : {}),
  });
}

/** Per device: `boot/seq` → the distinct device timestamps the store holds that reading at. */
export async function storedReadings(vmUrl: string): Promise<Map<string, Map<string, Set<number>>>> {
  const since = { startMs: Date.now() - 86_400_000 };
  const [seqs, boots] = await Promise.all([
    exportSeries(vmUrl, "electrolyser_seq", since),
    exportSeries(vmUrl, "electrolyser_boot", since),
  ]);
  const bootAt = new Map<string, Map<number, number>>();
  for (const s of boots) {
    const id = s.metric.sensor_id ?? "?";
    const m = bootAt.get(id) ?? new Map<number, number>();
    s.timestamps.forEach((ts, i) => m.set(ts, s.values[i]!));
    bootAt.set(id, m);
  }
  const out = new Map<string, Map<string, Set<number>>>();
  for (const s of seqs) {
    const id = s.metric.sensor_id ?? "?";
    const m = out.get(id) ?? new Map<string, Set<number>>();
    s.timestamps.forEach((ts, i) => {
      const key = `${bootAt.get(id)?.get(ts) ?? "?"}/${s.values[i]}`;
      const at = m.get(key) ?? new Set<number>();
      at.add(ts);
      m.set(key, at);
    });
    out.set(id, m);
  }
  return out;
}
