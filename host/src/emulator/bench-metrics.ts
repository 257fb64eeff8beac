/**
 * The emulator's own figures written to the store as measurement `bench` (tags run, component=emulator),
 * InfluxDB v2 line protocol over HTTP, which both InfluxDB 2 and VictoriaMetrics accept: the Benchmark
 * dashboard reads them next to the ingest's figures.
 */
import type { LiveSnapshot } from "./live-snapshot";
import type { EmulatorSummary } from "./summary";

export interface StoreTarget {
  /** Base URL, e.g. http://127.0.0.1:8428 (VictoriaMetrics) or http://127.0.0.1:8086 (InfluxDB 2). */
  url: string;
  org?: string;
  bucket?: string;
  /** InfluxDB API token; never logged. */
  token?: string;
}

const escapeTag = (v: string): string => v.replace(/[,= \\]/g, (c) => `\\${c}`);

export function benchLine(run: string, fields: Readonly<Record<string, number>>, tsMs: number): string {
  const parts = Object.entries(fields)
    .filter(([, v]) => Number.isFinite(v))
    .map(([k, v]) => `${k}=${v}`);
  if (parts.length === 0) throw new Error("a bench point needs at least one finite field");
  return `bench,component=emulator,run=${escapeTag(run)} ${parts.join(",")} ${Math.round(tsMs)}`;
}

export async function writeLines(target: StoreTarget, lines: readonly string[]): Promise<void> {
  const params = new URLSearchParams({ precision: "ms" });
  if (target.org) params.set("org", target.org);
  if (target.bucket) params.set("bucket", target.bucket);
  const res = await fetch(`${target.url.replace(/\/$/, "")}/api/v2/write?${params}`, {
    method: "POST",
    headers: {
      "content-type": "text/plain; charset=utf-8",
      ...(target.token ? { authorization: `Token ${target.token}` } : {}),
    },
    body: lines.join("\n") + "\n",
    signal: AbortSignal.timeout(10_000),
  });
  if (!res.ok) throw new Error(`store write failed: HTTP ${res.status} ${(await res.text()).slice(0, 200)}`);
}

/** The `bench` fields of one live snapshot (written every 10 s while the fleet runs). */
export function liveBenchFields(s: LiveSnapshot, rssBytes: number): Record<string, number> {
  return {
    boards_target: s.target,
    boards_connected: s.connected,
    handshake_failures: s.handshakeFailures,
    connect_failures: s.connectFailures,
    msg_per_s: s.msgPerS,
    puback_p50_ms: s.pubackP50Ms,
    puback_p99_ms: s.pubackP99Ms,
    ...(s.e2eP50Ms !== undefined && s.e2eP99Ms !== undefined && s.duplicates !== undefined
      ? { e2e_p50_ms: s.e2eP50Ms, e2e_p99_ms: s.e2eP99Ms, duplicates: s.duplicates }
      : {}),
    rss_mb: rssBytes / 2 ** 20,
    faults_injected: s.faultsInjected,
  };
}

/** The `bench` fields of the run's summary (the point tagged final=1). */
export function finalBenchFields(summary: EmulatorSummary): Record<string, number> {
  return {
    boards_target: summary.boards,
    connect_s: summary.connect.allConnectedS ?? Number.NaN,
    handshake_failures: summary.connect.handshakeFailures,
    connect_failures: summary.connect.connectFailures,
    msg_per_s: summary.messages.ackedPerS,
    puback_p50_ms: summary.pubackSteadyMs?.p50 ?? summary.pubackMs.p50,
    puback_p99_ms: summary.pubackSteadyMs?.p99 ?? summary.pubackMs.p99,
    ...(summary.verify
      ? {
          e2e_p50_ms: summary.verify.e2eMs.p50,
          e2e_p99_ms: summary.verify.e2eMs.p99,
          lost: summary.verify.lost,
          duplicates: summary.verify.duplicates,
        }
      : {}),
    cpu_us_per_msg: summary.cpu.usPerMessage,
    bytes_per_board: summary.memory.bytesPerBoard,
    faults_injected: summary.faults.injected,
    final: 1,
  };
}

/**
 * Writes a run's points without holding the run up: each write goes out at once, a failing store is reported
 * once and the run carries on without it, and `flush` waits for what is still on its way.
 */
export class BenchWriter {
  readonly #target: StoreTarget | undefined;
  readonly #run: string;
  readonly #log: (line: string) => void;
  readonly #pending: Promise<void>[] = [];
  #failed = false;
  #lastPeriodic: number;

  constructor(
    target: StoreTarget | undefined,
    run: string,
    log: (line: string) => void,
    now = performance.now(),
  ) {
    this.#target = target;
    this.#run = run;
    this.#log = log;
    this.#lastPeriodic = now;
  }

  get enabled(): boolean {
    return this.#target !== undefined;
  }

  /** True at most once per interval: whether a periodic point is due now. */
  due(now: number, intervalMs = 10_000): boolean {
    if (!this.#target || now - this.#lastPeriodic < intervalMs) return false;
    this.#lastPeriodic = now;
    return true;
  }

  write(fields: Record<string, number>): void {
    if (!this.#target) return;
    const p = writeLines(this.#target, [benchLine(this.#run, fields, Date.now())]).catch((err: unknown) => {
      if (!this.#failed)
        this.#log(
          `bench metrics: ${err instanceof Error ? err.message : String(err)} (carrying on without them)`,
        );
      this.#failed = true;
    });
    this.#pending.push(p);
  }

  async flush(): Promise<void> {
    await Promise.all(this.#pending);
  }
}
