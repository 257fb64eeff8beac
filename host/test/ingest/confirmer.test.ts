// The ingest's confirmations without services: which readings count as durable for each store rule, what is
// written again when the store process changes, and what each board is told (and how often).
import { describe, expect, it } from "vitest";
import { decodeConfirmation } from "../../../firmware/src/telemetry/confirmation";
import {
  Confirmer,
  detectStoreDurability,
  durableOnAccept,
  victoriaMetricsHorizon,
  type StoreDurability,
  type StoredReading,
} from "../../src/ingest/confirmer";
import { DurableRanges } from "../../src/ingest/durable-ranges";

describe("durable ranges", () => {
  it("merge in any order into the fewest ranges", () => {
    const r = new DurableRanges();
    for (const s of [0, 1, 2, 5, 4, 9, 3]) r.add("d", 1, s);
    expect(r.takeDirty()).toEqual([
      {
        sensorId: "d",
        boot: 1,
        ranges: [
          { from: 0, to: 5 },
          { from: 9, to: 9 },
        ],
      },
    ]);
    expect(r.takeDirty()).toEqual([]);
    expect(r.add("d", 1, 4)).toBe(false);
    expect([3, 6, 9].map((s) => r.has("d", 1, s))).toEqual([true, false, true]);
  });

  it("send every range that changed, 8 to a message, keep at most 64 a boot and 2 boots a device", () => {
    const r = new DurableRanges();
    // A backlog cut by rate_exceeded refusals before the first round: one long range, then 19 short ones.
    for (let s = 0; s <= 304; s++) r.add("d", 1, s);
    for (let i = 0; i < 19; i++) r.add("d", 1, 310 + i * 10);
    const first = r.takeDirty();
    expect(first.map((c) => c.ranges.length)).toEqual([8, 8, 4]);
    expect(first[0]!.ranges[0]).toEqual({ from: 0, to: 304 });
    // Only what changed goes next time; a resent duplicate (the board missed something) restates the boot.
    r.add("d", 1, 311);
    expect(r.takeDirty()).toEqual([{ sensorId: "d", boot: 1, ranges: [{ from: 310, to: 311 }] }]);
    r.markDirty("d", 1);
    expect(r.takeDirty().reduce((n, c) => n + c.ranges.length, 0)).toBe(20);
    // 70 more ranges in one round: past 64 kept the lowest go, and only the kept ones can be sent.
    for (let i = 0; i < 70; i++) r.add("d", 1, 1000 + i * 10);
    expect(r.takeDirty().reduce((n, c) => n + c.ranges.length, 0)).toBe(64);
    expect(r.has("d", 1, 0)).toBe(false);
    expect(r.has("d", 1, 1690)).toBe(true);
    r.add("d", 2, 0);
    r.add("d", 3, 0);
    expect(r.has("d", 1, 1690)).toBe(false);
    expect(r.add("d", 1, 5)).toBe(false); // older than both kept boots
    expect(r.has("d", 2, 0) && r.has("d", 3, 0)).toBe(true);
  });
});

const reading = (seq: number, sensorId = "b1", boot = 1): StoredReading => ({
  sensorId,
  boot,
  seq,
  line: `m,sensor_id=${sensorId} v=${seq} ${seq}`,
});

function metrics(startTime: number, rows: number): string {
  return `process_start_time_seconds ${startTime}\nvm_rows_inserted_total{type="influx"} ${rows}\n`;
}

function harness(durability: StoreDurability) {
  const sent: { topic: string; boot: number; ranges: unknown }[] = [];
  const rewrites: string[][] = [];
  let brokerUp = true;
  let storeUp = true;
  const c = new Confirmer({
    durability,
    publish: (topic, payload) => {
      if (!brokerUp) return false;
      const d = decodeConfirmation(payload);
      if (!d.ok) throw new Error(d.error.message);
      sent.push({ topic, boot: d.value.boot, ranges: d.value.ranges });
      return true;
    },
    rewrite: (lines) => {
      if (!storeUp) return Promise.reject(new Error("store down"));
      rewrites.push(lines);
      return Promise.resolve();
    },
  });
  return {
    c,
    sent,
    rewrites,
    setBroker: (up: boolean) => (brokerUp = up),
    setStore: (up: boolean) => (storeUp = up),
  };
}

describe("confirming on acceptance (InfluxDB 2)", () => {
  it("confirms what the store accepted at the next round, once per board, on the board's own topic", async () => {
    const h = harness(durableOnAccept());
    h.c.stored([reading(0), reading(1), reading(2), reading(0, "b2")]);
    await h.c.round();
    expect(h.sent).toEqual([
      { topic: "electrolyser/b1/down/stored", boot: 1, ranges: [{ from: 0, to: 2 }] },
      { topic: "electrolyser/b2/down/stored", boot: 1, ranges: [{ from: 0, to: 0 }] },
    ]);
    await h.c.round();
    expect(h.sent).toHaveLength(2); // nothing new, nothing sent
    h.c.duplicate("b1", 1, 1); // the board sent 1 again: it missed the confirmation
    h.c.duplicate("b1", 1, 7); // not durable here: nothing to say
    await h.c.round();
    expect(h.sent.slice(2)).toEqual([
      { topic: "electrolyser/b1/down/stored", boot: 1, ranges: [{ from: 0, to: 2 }] },
    ]);
  });

  it("keeps what it could not publish (broker away) for the next round", async () => {
    const h = harness(durableOnAccept());
    h.setBroker(false);
    h.c.stored([reading(0)]);
    await h.c.round();
    expect(h.sent).toEqual([]);
    h.setBroker(true);
    await h.c.round();
    expect(h.sent).toHaveLength(1);
  });
});

describe("confirming after the durable horizon (VictoriaMetrics)", () => {
  function vm(horizonMs = 20_000) {
    const state = { text: metrics(1000, 0), up: true };
    const durability = victoriaMetricsHorizon({
      storeUrl: "http://vm",
      horizonMs,
      fetchMetrics: () => (state.up ? Promise.resolve(state.text) : Promise.reject(new Error("down"))),
    });
    return { state, durability };
  }

  it("confirms a write only once the same process was seen alive the horizon after it", async () => {
    const { durability } = vm();
    const h = harness(durability);
    await h.c.round(0); // the store seen as process 0
    h.c.stored([reading(0), reading(1)], 1_000);
    await h.c.round(20_000);
    expect(h.sent).toEqual([]);
    expect(h.c.pending).toBe(2);
    await h.c.round(21_000);
    expect(h.sent).toEqual([{ topic: "electrolyser/b1/down/stored", boot: 1, ranges: [{ from: 0, to: 1 }] }]);
    expect(h.c.pending).toBe(0);
  });

  it("never confirms while the store cannot be seen, and writes again what a restarted store may have lost", async () => {
    const { state, durability } = vm();
    const h = harness(durability);
    await h.c.round(0);
    h.c.stored([reading(0), reading(1)], 1_000);
    state.up = false;
    await h.c.round(30_000);
    expect(h.sent).toEqual([]);
    state.up = true;
    state.text = metrics(1005, 0); // a new process (SIGKILL and restart)
    h.setStore(false);
    await h.c.round(31_000);
    expect(h.sent).toEqual([]);
    expect(h.rewrites).toEqual([]); // the store refused: kept for the next round
    h.setStore(true);
    await h.c.round(32_000);
    expect(h.rewrites).toEqual([[reading(0).line, reading(1).line]]);
    expect(h.sent).toEqual([]);
    expect(h.c.pending).toBe(2);
    // The rewrite must itself be outlived by the horizon (written at wall-clock now, so use a later round).
    await h.c.round(Date.now() + 21_000);
    expect(h.sent).toEqual([{ topic: "electrolyser/b1/down/stored", boot: 1, ranges: [{ from: 0, to: 1 }] }]);
  });

  it("a write the old process outlived by the horizon stays durable across a restart", async () => {
    const { state, durability } = vm();
    const h = harness(durability);
    await h.c.round(0);
    h.c.stored([reading(0)], 1_000);
    state.text = metrics(1000, 50);
    await h.c.round(22_000); // seen alive 21 s after: durable
    state.text = metrics(1030, 0);
    await h.c.round(23_000);
    expect(h.rewrites).toEqual([]);
    expect(h.sent).toHaveLength(1);
  });
});

describe("detecting the store", () => {
  it("picks the horizon for VictoriaMetrics, acceptance for anything else, and nothing before it answers", async () => {
    let text: string | undefined;
    const rules: string[] = [];
    const detect = (): StoreDurability =>
      detectStoreDurability({
        storeUrl: "http://s",
        horizonMs: 20_000,
        fetchMetrics: () => (text === undefined ? Promise.reject(new Error("down")) : Promise.resolve(text)),
        onDetected: (r) => rules.push(r.name),
      });
    const d = detect();
    d.written([reading(0)], 0);
    expect((await d.poll(1)).durable).toEqual([]);
    text = metrics(1, 1);
    const v = await d.poll(2);
    expect(v.rewrite).toEqual([reading(0)]); // its incarnation was unknown: written again
    expect(rules[0]).toMatch(/VictoriaMetrics/);
    text = "go_goroutines 10\n";
    const i = detect();
    await i.poll(0);
    expect(rules[1]).toMatch(/InfluxDB/);
  });
});
