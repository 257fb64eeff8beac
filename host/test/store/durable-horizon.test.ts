import { describe, expect, it } from "vitest";
import DurableHorizon, { StoreIncarnation, incarnationSample } from "../../src/store/durable-horizon";

describe("durable horizon", () => {
  it("confirms a write only once the same store process has been seen alive the horizon after it", () => {
    const h = new DurableHorizon<string>({ horizonMs: 20_000 });
    h.written(["a", "b"], 1_000, 500);
    h.written(["c"], 5_000, 500);
    expect(h.observe(20_999, 500)).toEqual({ durable: [], rewrite: [] });
    expect(h.observe(21_000, 500)).toEqual({ durable: ["a", "b"], rewrite: [] });
    expect(h.pending).toBe(1);
    expect(h.observe(25_000, 500)).toEqual({ durable: ["c"], rewrite: [] });
    expect(h.pending).toBe(0);
  });

  it("sends back for rewriting what a replaced process was not seen to outlive by the horizon", () => {
    const h = new DurableHorizon<number>({ horizonMs: 20_000 });
    h.observe(0, 100);
    h.written([1], 1_000, 100);
    h.written([2], 15_000, 100);
    h.observe(22_000, 100); // 1 is durable here
    h.written([3], 23_000, 100);
    // The store was killed and restarted: a new start time.
    expect(h.observe(40_000, 200)).toEqual({ durable: [], rewrite: [2, 3] });
    h.written([2, 3], 40_500, 200);
    expect(h.observe(60_500, 200)).toEqual({ durable: [2, 3], rewrite: [] });
  });

  it("counts as durable an unconfirmed write the old process was seen to outlive, after a restart", () => {
    const h2 = new DurableHorizon<number>({ horizonMs: 10_000 });
    h2.observe(0, 100);
    h2.written([7], 1_000, 100);
    h2.observe(5_000, 100); // too early
    h2.written([8], 6_000, 100);
    h2.observe(11_500, 100); // 7 durable now; 8 not yet
    expect(h2.observe(30_000, 300)).toEqual({ durable: [], rewrite: [8] });
    expect(h2.pending).toBe(0);
  });

  it("treats a write tagged with a start time read before a restart as possibly lost", () => {
    const h = new DurableHorizon<number>({ horizonMs: 10_000 });
    h.written([1], 0, 100); // the write actually reached a new process, started at 200
    expect(h.observe(50_000, 200)).toEqual({ durable: [], rewrite: [1] });
  });

  it("sees a restart in the start time or in the row counter going down, even within the same second", () => {
    const inc = new StoreIncarnation();
    const text = (start: number, rows: number) =>
      `# HELP x\nprocess_cpu_seconds_total 1.5\nprocess_start_time_seconds ${start}\n` +
      `vm_rows_inserted_total{type="influx"} ${rows - 1}\nvm_rows_inserted_total{type="native"} 1\n`;
    const seen = (start: number, rows: number) => inc.observe(incarnationSample(text(start, rows))!);
    expect(seen(1000, 1)).toBe(0);
    expect(seen(1000, 5000)).toBe(0);
    expect(seen(1000, 10)).toBe(1); // killed and back within the same second
    expect(seen(1003, 20)).toBe(2);
    expect(seen(1003, 20)).toBe(2);
    expect(incarnationSample("vm_rows 5\n")).toBeUndefined();
  });
});
