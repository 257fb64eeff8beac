/** The rows `npm run bench -- cluster` prints, and how (pure, so the layout has a test). */

export interface ClusterBenchRow {
  broker: "nats-cluster" | "mosquitto";
  boards: number;
  /** Ingest processes reading from the broker (JetStream workers on the cluster, one MQTT ingest on Mosquitto). */
  ingests: number;
  msgPerS: number;
  /** Steady state (after every board connected and sent its backlog); NaN if never reached. */
  pubackP50Ms: number;
  pubackP99Ms: number;
  /**
   * Device timestamp to store acceptance over the steady state (every ingest's histogram summed): the upper bound
   * of the bucket holding the 99th percentile; NaN if unknown, Infinity past the last bucket.
   */
  e2eP99Ms: number;
  /** Broker CPU (every node summed) per reading published, from /proc/<pid>/stat. */
  brokerCpuMsPerMsg: number;
  ingestCpuMsPerMsg: number;
  /** Distinct readings in the store of `expected` published; extra copies counted apart. */
  stored: number;
  expected: number;
  duplicates: number;
  /** From the SIGKILL of a node until /connz of the others shows every one of its boards; null: no kill. */
  failoverS: number | null;
  /** Boards that were on the killed node. */
  killedNodeBoards?: number;
}

const fmt = (n: number, digits = 0): string => (Number.isFinite(n) ? n.toFixed(digits) : "-");

export const CLUSTER_TABLE_HEADER = [
  "broker",
  "boards",
  "ingests",
  "msg/s",
  "puback_p50/p99_ms",
  "e2e_p99_ms",
  "broker_cpu_ms/msg",
  "ingest_cpu_ms/msg",
  "stored/expected",
  "dups",
  "failover_s",
];

function cells(r: ClusterBenchRow): string[] {
  return [
    r.broker,
    String(r.boards),
    String(r.ingests),
    fmt(r.msgPerS),
    `${fmt(r.pubackP50Ms, 1)}/${fmt(r.pubackP99Ms, 1)}`,
    Number.isNaN(r.e2eP99Ms) ? "-" : Number.isFinite(r.e2eP99Ms) ? `<=${fmt(r.e2eP99Ms)}` : ">60000",
    fmt(r.brokerCpuMsPerMsg, 3),
    fmt(r.ingestCpuMsPerMsg, 3),
    `${r.stored}/${r.expected}`,
    String(r.duplicates),
    r.failoverS === null
      ? "-"
      : `${Number.isFinite(r.failoverS) ? fmt(r.failoverS, 1) : "never"} (${r.killedNodeBoards ?? "?"} boards)`,
  ];
}

/** A table with aligned columns, header first. */
export function formatClusterTable(rows: readonly ClusterBenchRow[]): string {
  const all = [CLUSTER_TABLE_HEADER, ...rows.map(cells)];
  const widths = CLUSTER_TABLE_HEADER.map((_, i) => Math.max(...all.map((r) => r[i]!.length)));
  return all
    .map((r) =>
      r
        .map((c, i) => c.padEnd(widths[i]!))
        .join("  ")
        .trimEnd(),
    )
    .join("\n");
}

/** Rows that lost something: fewer distinct readings stored than published. */
export function lossyRows(rows: readonly ClusterBenchRow[]): ClusterBenchRow[] {
  return rows.filter((r) => r.stored < r.expected);
}

/**
 * The emulator's plain progress line (`t=25s  boards 300/300 connected | … queued on boards 18 | …`) says the
 * fleet is in its steady state: every board connected and the connect backlog (nearly) sent.
 */
export function isSteadyProgress(line: string): boolean {
  const m = /boards (\d+)\/(\d+) connected.*queued on boards (\d+)/.exec(line);
  if (!m) return false;
  const [connected, target, queued] = [Number(m[1]), Number(m[2]), Number(m[3])];
  return target > 0 && connected === target && queued <= target / 10;
}

/** `name_bucket{le="X"}` counts of a Prometheus histogram, summed over every scrape given (e.g. the workers). */
export function histogramBuckets(scrapes: readonly Map<string, number>[], name: string): Map<number, number> {
  const out = new Map<number, number>();
  const re = new RegExp(`^${name}_bucket\\{(?:.*,)?le="([^"]+)"`);
  for (const m of scrapes)
    for (const [k, v] of m) {
      const le = re.exec(k)?.[1];
      if (le === undefined) continue;
      const bound = le === "+Inf" ? Number.POSITIVE_INFINITY : Number(le);
      out.set(bound, (out.get(bound) ?? 0) + v);
    }
  return out;
}

/**
 * The upper bound of the bucket that holds quantile `q` of what was observed between two snapshots of a
 * cumulative histogram: "p99 ≤ 0.25 s". NaN when nothing was observed in between.
 */
export function quantileUpperBound(
  before: Map<number, number>,
  after: Map<number, number>,
  q: number,
): number {
  const bounds = [...after.keys()].sort((a, b) => a - b);
  const delta = (b: number): number => (after.get(b) ?? 0) - (before.get(b) ?? 0);
  const total = bounds.length ? delta(bounds[bounds.length - 1]!) : 0;
  if (total <= 0) return Number.NaN;
  for (const b of bounds) if (delta(b) >= q * total) return b;
  return Number.POSITIVE_INFINITY;
}
