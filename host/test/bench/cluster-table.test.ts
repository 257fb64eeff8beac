// The pure parts of `npm run bench -- cluster`: CPU time from /proc/<pid>/stat, the sampler that keeps a killed
// node's last figure, and the table with its loss verdict.
import { describe, expect, it } from "vitest";
import { CpuSampler, parseProcStatCpuSeconds } from "../../src/process/proc-cpu";
import {
  formatClusterTable,
  histogramBuckets,
  isSteadyProgress,
  lossyRows,
  quantileUpperBound,
  type ClusterBenchRow,
} from "../../src/bench/cluster-table";

describe("CPU time from /proc/<pid>/stat", () => {
  it("adds utime and stime (fields 14 and 15, 1/100 s), even when the command name holds spaces and ')'", () => {
    // A real line of nats-server's stat, its name replaced by one that would shift a naive split.
    const stat =
      "4242 (nats (x) server) S 1 4242 4242 0 -1 4194560 6401 0 0 0 1234 567 0 0 20 0 12 0 1811 1262419968 6914 18446744073709551615";
    expect(parseProcStatCpuSeconds(stat)).toBeCloseTo(18.01, 6);
    expect(() => parseProcStatCpuSeconds("garbage")).toThrow();
  });

  it("the sampler counts from each process's first reading and keeps a dead one's last", () => {
    const cpu = new Map<number, number>([
      [1, 10],
      [2, 5],
    ]);
    const s = new CpuSampler((pid) => {
      const v = cpu.get(pid);
      if (v === undefined) throw new Error("gone");
      return v;
    });
    s.sample([1, 2]);
    cpu.set(1, 12).set(2, 6);
    s.sample();
    cpu.delete(2); // killed
    cpu.set(1, 13).set(3, 100); // a restarted node, counted from now
    s.sample([1, 3]);
    cpu.set(3, 101.5);
    s.sample();
    expect(s.totalSeconds()).toBeCloseTo(3 + 1 + 1.5, 6);
  });
});

describe("the cluster bench table", () => {
  const row = (o: Partial<ClusterBenchRow>): ClusterBenchRow => ({
    broker: "nats-cluster",
    boards: 300,
    ingests: 2,
    msgPerS: 299.6,
    pubackP50Ms: 4.25,
    pubackP99Ms: 31,
    e2eP99Ms: Number.NaN,
    brokerCpuMsPerMsg: 1.9,
    ingestCpuMsPerMsg: 0.21,
    stored: 9000,
    expected: 9000,
    duplicates: 0,
    failoverS: 1.234,
    killedNodeBoards: 100,
    ...o,
  });

  it("aligns the columns, marks unknowns and a failover that never came", () => {
    const lines = formatClusterTable([
      row({}),
      row({ broker: "mosquitto", ingests: 1, failoverS: null, e2eP99Ms: 42.4 }),
      row({ failoverS: Number.POSITIVE_INFINITY, stored: 8990 }),
    ]).split("\n");
    expect(lines).toHaveLength(4);
    expect(lines[0]).toMatch(/^broker\s+boards\s+ingests\s+msg\/s\s+puback_p50\/p99_ms\s+e2e_p99_ms/);
    expect(lines[1]).toMatch(
      /^nats-cluster\s+300\s+2\s+300\s+4\.3\/31\.0\s+-\s+1\.900\s+0\.210\s+9000\/9000\s+0\s+1\.2 \(100 boards\)$/,
    );
    expect(lines[2]).toMatch(/^mosquitto\s+300\s+1\s+300\s+4\.3\/31\.0\s+<=42\s+.*\s+-$/);
    expect(lines[3]).toMatch(/8990\/9000\s+0\s+never \(100 boards\)$/);
    // Every column starts where the header's does.
    for (const l of lines.slice(1)) expect(l.indexOf(" 300 ") + 1).toBe(lines[0]!.indexOf("boards"));
  });

  it("a row with fewer distinct readings stored than published is a loss", () => {
    expect(lossyRows([row({}), row({ stored: 8999 }), row({ duplicates: 3 })]).map((r) => r.stored)).toEqual([
      8999,
    ]);
  });
});

describe("the steady state and the end-to-end percentile", () => {
  it("is steady once every board is connected and at most a tenth of a reading per board is queued", () => {
    const line = (c: number, q: number) =>
      `t=25s  boards ${c}/300 connected |   266 msg/s   PUBACK p50 6.69 ms  p99 66 ms   queued on boards ${q} |   faults injected 0`;
    expect(isSteadyProgress(line(300, 18))).toBe(true);
    expect(isSteadyProgress(line(300, 31))).toBe(false);
    expect(isSteadyProgress(line(299, 0))).toBe(false);
    expect(isSteadyProgress("OK: 300 boards")).toBe(false);
  });

  it("sums the workers' buckets and finds the bucket of the 99th percentile between two snapshots", () => {
    const scrape = (counts: number[]) =>
      new Map<string, number>([
        ['ingest_e2e_latency_seconds_bucket{le="0.1"}', counts[0]!],
        ['ingest_e2e_latency_seconds_bucket{le="0.25"}', counts[1]!],
        ['ingest_e2e_latency_seconds_bucket{le="1"}', counts[2]!],
        ['ingest_e2e_latency_seconds_bucket{le="+Inf"}', counts[3]!],
        ["ingest_e2e_latency_seconds_sum", 123],
        ['ingest_store_write_seconds_bucket{le="0.1"}', 9999],
      ]);
    // Before the steady state: a slow connect backlog (which must not count).
    const before = histogramBuckets(
      [scrape([0, 0, 0, 500]), scrape([0, 0, 0, 500])],
      "ingest_e2e_latency_seconds",
    );
    expect(before.get(Number.POSITIVE_INFINITY)).toBe(1000);
    // Then 2,000 more: 1,970 within 0.1 s, 20 more within 0.25 s, 10 within 1 s.
    const after = histogramBuckets(
      [scrape([985, 995, 1000, 1500]), scrape([985, 995, 1000, 1500])],
      "ingest_e2e_latency_seconds",
    );
    expect(quantileUpperBound(before, after, 0.99)).toBe(0.25);
    expect(quantileUpperBound(before, after, 0.5)).toBe(0.1);
    expect(quantileUpperBound(new Map(), after, 0.99)).toBe(Number.POSITIVE_INFINITY);
    expect(quantileUpperBound(after, after, 0.99)).toBeNaN();
  });
});
