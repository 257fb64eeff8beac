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
  /** Device timestamp to store acceptance, the ingest's recent window (max over the ingests); NaN if unknown. */
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
    fmt(r.e2eP99Ms),
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
