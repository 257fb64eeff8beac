import { randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import { encodeReading } from "../../../firmware/src/payload/codec";
import { encodeTelemetryMessage } from "../../../firmware/src/payload/telemetry-message";
import { deriveDeviceKey } from "../../src/crypto/device-keys";
import { nodeAead } from "../../src/crypto/node-aead";
import { IngestAccount, percentile } from "../../src/ingest/account";
import { LATE_LOOKBACK_MS, MessageClassifier, parseStatus } from "../../src/ingest/classify";
import { sampleReading } from "../../testkit/ingest/fleet-publisher";
import {
  accountLine,
  escapeTag,
  readingLine,
  rejectedLine,
  statusLine,
} from "../../src/ingest/line-protocol";

const NOW = 1_800_000_000_000;
const master = new Uint8Array(randomBytes(32));
const encrypted = (id: string, keyId = 1, m = master) =>
  ({ kind: "encrypted", aead: nodeAead, keyId, key: deriveDeviceKey(m, id) }) as const;
const decryptMode = {
  kind: "encrypted" as const,
  aead: nodeAead,
  keyFor: (keyId: number, id: string) => (keyId === 1 ? deriveDeviceKey(master, id) : undefined),
};

function plainClassifier(sites: Record<string, string> = {}) {
  return new MessageClassifier({ mode: { kind: "plain" }, now: () => NOW, siteOf: (id) => sites[id] });
}

describe("line protocol", () => {
  it("writes the store schema: tags sensor_id and site, a field per channel, seq/boot/faults as integers, device ts", () => {
    const r = sampleReading("el-1", 7, NOW - 5, 3);
    expect(readingLine(r, "north")).toBe(
      `electrolyser,sensor_id=el-1,site=north temperature_c=65.07,pressure_bar=30.07,h2_flow_sccm=12007,purity_pct=99.95,voltage_v=1.907,current_a=150.07,seq=7i,boot=3i,faults=0i ${NOW - 5}`,
    );
  });

  it("omits a faulted channel and counts it", () => {
    const r = { ...sampleReading("el-1", 1, NOW), faults: ["pressure_bar" as const] };
    r.values = { ...r.values, pressure_bar: null };
    const line = readingLine(r, "unknown");
    expect(line).not.toContain("pressure_bar");
    expect(line).toContain("faults=1i");
  });

  it("escapes tag values and never writes an empty one", () => {
    expect(escapeTag("a b,c=d\\e")).toBe("a\\ b\\,c\\=d\\\\e");
    // No escape exists for a newline in line protocol: it would end the point and start a forged one.
    for (const bad of ["a\nelectrolyser,sensor_id=x purity_pct=1 1", "a\rb", "a\u0000b", "a\tb"])
      expect(() => escapeTag(bad), JSON.stringify(bad)).toThrow(/control character/);
    expect(() =>
      readingLine(sampleReading("x", 1, NOW), "s\nelectrolyser,sensor_id=y purity_pct=1 1"),
    ).toThrow(RangeError);
    expect(readingLine(sampleReading("x", 1, NOW), "")).toContain(",site=unknown ");
    expect(statusLine("x", true, NOW)).toBe(`device_status,sensor_id=x online=1i ${NOW}`);
    expect(rejectedLine("tag_mismatch", 3, NOW)).toBe(`ingest_rejected,reason=tag_mismatch count=3i ${NOW}`);
    expect(
      accountLine(
        "x",
        { received: 3, written: 2, duplicates: 1, gaps: 0, rejected: 0, latencyMsP50: 12, latencyMsP99: 40 },
        NOW,
      ),
    ).toBe(
      `ingest,sensor_id=x received=3i,written=2i,duplicates=1i,gaps=0i,rejected=0i,latency_ms_p50=12,latency_ms_p99=40 ${NOW}`,
    );
  });
});

describe("MessageClassifier", () => {
  it("accepts a plain reading on its own topic, with the site from the manifest", () => {
    const c = plainClassifier({ "el-1": "north" });
    const m = encodeTelemetryMessage(sampleReading("el-1", 0, NOW), { kind: "plain" });
    const o = c.classify(m.topic, m.payload);
    expect(o).toMatchObject({
      kind: "write",
      sensorId: "el-1",
      deviceTs: NOW,
      position: { boot: 1, seq: 0 },
    });
    expect(o.kind === "write" && o.line).toContain("site=north");
  });

  it("refuses devices the manifest does not list, and service identities always", () => {
    const c = new MessageClassifier({
      mode: { kind: "plain" },
      now: () => NOW,
      isKnownDevice: (id) => id === "el-1",
    });
    const known = encodeTelemetryMessage(sampleReading("el-1", 0, NOW), { kind: "plain" });
    expect(c.classify(known.topic, known.payload).kind).toBe("write");
    const stranger = encodeTelemetryMessage(sampleReading("el-9", 0, NOW), { kind: "plain" });
    expect(c.classify(stranger.topic, stranger.payload)).toMatchObject({
      kind: "rejected",
      reason: "unknown_device",
    });
    expect(c.classify("electrolyser/el-9/status", new TextEncoder().encode("online"))).toMatchObject({
      reason: "unknown_device",
    });
    // The broker's per-board ACL pattern also lets a service certificate publish under its own CN.
    const service = encodeTelemetryMessage(sampleReading("monitor", 0, NOW), { kind: "plain" });
    expect(plainClassifier().classify(service.topic, service.payload)).toMatchObject({
      kind: "rejected",
      reason: "unknown_device",
    });
  });

  it("refuses a payload naming another device than its topic", () => {
    const m = encodeReading(sampleReading("el-2", 0, NOW));
    expect(plainClassifier().classify("electrolyser/el-1/telemetry", m)).toMatchObject({
      kind: "rejected",
      sensorId: "el-1",
      reason: "device_mismatch",
    });
  });

  it("drops an exact re-delivery of a stored reading, refuses a boot before the previous one as replay, and counts gaps when committed", () => {
    const c = plainClassifier();
    const send = (seq: number, boot = 1) => {
      const m = encodeTelemetryMessage(sampleReading("el-1", seq, NOW, boot), { kind: "plain" });
      const o = c.classify(m.topic, m.payload);
      // What the service does once the store accepted the line.
      return o.kind === "write" && o.position ? { ...o, committed: c.commit(o.sensorId, o.position) } : o;
    };
    expect(send(0)).toMatchObject({ kind: "write", committed: 0 });
    expect(send(0)).toMatchObject({ kind: "duplicate", sensorId: "el-1" });
    expect(send(4)).toMatchObject({ kind: "write", committed: 3 });
    expect(send(2)).toMatchObject({ kind: "write", committed: -1 });
    expect(send(0, 2)).toMatchObject({ kind: "write", committed: 0 });
    // The previous boot's readings, replayed from the board's flash ring after a reboot: stored once each.
    expect(send(5, 1)).toMatchObject({ kind: "write" });
    expect(send(5, 1)).toMatchObject({ kind: "duplicate" });
    expect(send(2, 1)).toMatchObject({ kind: "duplicate" });
    expect(send(0, 3)).toMatchObject({ kind: "write" });
    expect(send(6, 1)).toMatchObject({ kind: "rejected", reason: "replay" }); // two boots back
  });

  it("keeps each boot's history append-only: a new reading dated back beyond the tolerance is refused", () => {
    const c = plainClassifier();
    const send = (seq: number, ts: number, boot = 1) => {
      const m = encodeTelemetryMessage(sampleReading("el-1", seq, ts, boot), { kind: "plain" });
      return c.classify(m.topic, m.payload);
    };
    expect(send(0, NOW)).toMatchObject({ kind: "write" });
    expect(send(1, NOW - 1500)).toMatchObject({ kind: "write" }); // within 2 s: a clock correction
    // Before: accepted, and stored over whatever the board recorded at that time (e.g. a purity drop).
    expect(send(2, NOW - 86_400_000)).toMatchObject({ kind: "rejected", reason: "timestamp_backwards" });
    expect(send(3, NOW - 2001)).toMatchObject({ kind: "rejected", reason: "timestamp_backwards" });
    expect(send(4, NOW + 1000)).toMatchObject({ kind: "write" });
    expect(send(5, NOW - 1001)).toMatchObject({ kind: "rejected", reason: "timestamp_backwards" }); // from the new high-water mark
    expect(send(0, NOW - 3_600_000, 2)).toMatchObject({ kind: "write" }); // a new boot starts its own history
    expect(send(1, NOW - 3_600_000 + 1000, 2)).toMatchObject({ kind: "write" });
  });

  it("takes a late reading (a resend of one never confirmed) in its place within the boot's span, not before it", () => {
    const c = plainClassifier();
    const send = (seq: number, ts: number) => {
      const m = encodeTelemetryMessage(sampleReading("el-1", seq, ts, 1), { kind: "plain" });
      return c.classify(m.topic, m.payload);
    };
    expect(send(0, NOW - 20_000)).toMatchObject({ kind: "write" });
    expect(send(20, NOW)).toMatchObject({ kind: "write" }); // 1..19 lost with a broker, resent after this one
    expect(send(8, NOW - 12_000)).toMatchObject({ kind: "write" });
    expect(send(9, NOW - 11_000)).toMatchObject({ kind: "write" });
    expect(send(10, NOW - 86_400_000)).toMatchObject({ kind: "rejected", reason: "timestamp_backwards" });
    expect(send(11, NOW + 60_000)).toMatchObject({ kind: "rejected", reason: "timestamp_backwards" });
    expect(send(21, NOW - 12_000)).toMatchObject({ kind: "rejected", reason: "timestamp_backwards" });
  });

  it("accepts a late re-delivery in the hole it left (NATS re-delivers after AckWait), dated where it belongs, once", () => {
    const c = plainClassifier();
    const send = (seq: number, ts = NOW - 60_000 + seq * 1000) => {
      const m = encodeTelemetryMessage(sampleReading("el-1", seq, ts), { kind: "plain" });
      const o = c.classify(m.topic, m.payload);
      if (o.kind === "write" && o.position) c.commit(o.sensorId, o.position);
      return o;
    };
    for (let s = 0; s <= 4; s++) expect(send(s)).toMatchObject({ kind: "write" });
    // 5..7 were in flight on the connection that died; 8.. flow on the new one at once.
    for (let s = 8; s <= 40; s++) expect(send(s)).toMatchObject({ kind: "write" });
    // 30 s later the broker re-delivers 5..7: before, each was refused as timestamp_backwards (and lost).
    expect(send(6)).toMatchObject({ kind: "write" });
    expect(send(5)).toMatchObject({ kind: "write" });
    expect(send(5)).toMatchObject({ kind: "duplicate", sensorId: "el-1" });
    // Still append-only: a late reading re-dated outside its hole, or late for a hole never seen, is refused.
    expect(send(7, NOW - 60_000 + 3000)).toMatchObject({ kind: "rejected", reason: "timestamp_backwards" });
    expect(send(7, NOW - 60_000 + 30_000)).toMatchObject({ kind: "rejected", reason: "timestamp_backwards" });
    expect(send(7)).toMatchObject({ kind: "write" });
    const fresh = plainClassifier();
    const m = (seq: number) =>
      encodeTelemetryMessage(sampleReading("el-2", seq, NOW - 10_000 + seq * 1000), { kind: "plain" });
    for (const seq of [0, 1, 2]) fresh.classify(m(seq).topic, m(seq).payload);
    const refused = fresh.release.bind(fresh);
    // A reading refused by the store may come again, dated as it was.
    refused("el-2", { boot: 1, seq: 1 });
    expect(fresh.classify(m(1).topic, m(1).payload)).toMatchObject({ kind: "write" });
  });

  it("a released run (a lost connection's unwritten window) comes again whole, even past the hole limit", () => {
    const c = plainClassifier();
    const m = (seq: number) =>
      encodeTelemetryMessage(sampleReading("el-1", seq, NOW - 60_000 + seq * 100), { kind: "plain" });
    const classify = (seq: number) => c.classify(m(seq).topic, m(seq).payload);
    for (let seq = 0; seq < 200; seq++) expect(classify(seq)).toMatchObject({ kind: "write" });
    // The ingest reconnected: 100..199 were waiting unwritten on the old connection (service.ts #dropStale).
    for (let seq = 100; seq < 200; seq++) c.release("el-1", { boot: 1, seq });
    // A newer reading with a gap opens another hole (holes beyond MAX_HOLES_PER_DEVICE are forgotten).
    expect(classify(201)).toMatchObject({ kind: "write" });
    // The broker delivers the window again: one hole per released seq would have lost the oldest 37.
    for (let seq = 100; seq < 200; seq++) expect(classify(seq)).toMatchObject({ kind: "write" });
  });

  it("accepts readings older than the first this ingest saw of a boot only within the late lookback", () => {
    const c = plainClassifier();
    const send = (seq: number, ts: number) => {
      const m = encodeTelemetryMessage(sampleReading("el-1", seq, ts), { kind: "plain" });
      return c.classify(m.topic, m.payload);
    };
    // A restarted ingest (or a worker whose share of seq 0..9 went to another) sees seq 10 first.
    expect(send(10, NOW)).toMatchObject({ kind: "write" });
    expect(send(9, NOW - 1000)).toMatchObject({ kind: "write" });
    expect(send(0, NOW - 10_000)).toMatchObject({ kind: "write" });
    expect(send(5, NOW - LATE_LOOKBACK_MS - 3000)).toMatchObject({
      kind: "rejected",
      reason: "timestamp_backwards",
    });
  });

  it("commits nothing before the store accepted: a copy in flight is a duplicate, a refused reading is new again", () => {
    const c = plainClassifier();
    const m = encodeTelemetryMessage(sampleReading("el-1", 3, NOW), { kind: "plain" });
    expect(c.classify(m.topic, m.payload)).toMatchObject({ kind: "write", position: { boot: 1, seq: 3 } });
    expect(c.classify(m.topic, m.payload)).toMatchObject({ kind: "duplicate", sensorId: "el-1" }); // in flight
    c.release("el-1", { boot: 1, seq: 3 }); // the store refused it
    expect(c.classify(m.topic, m.payload)).toMatchObject({ kind: "write", position: { boot: 1, seq: 3 } });
    expect(c.commit("el-1", { boot: 1, seq: 3 })).toBe(0);
    expect(c.classify(m.topic, m.payload)).toMatchObject({ kind: "duplicate", sensorId: "el-1" });
  });

  it("in an encrypted fleet: opens sealed readings, refuses tampered, wrong-key, moved and plain messages", () => {
    const c = new MessageClassifier({ mode: decryptMode, now: () => NOW });
    const ok = encodeTelemetryMessage(sampleReading("el-1", 0, NOW), encrypted("el-1"));
    expect(c.classify(ok.topic, ok.payload)).toMatchObject({ kind: "write", sensorId: "el-1" });

    const tampered = encodeTelemetryMessage(sampleReading("el-1", 1, NOW), encrypted("el-1"));
    tampered.payload[20] = tampered.payload[20]! ^ 1;
    expect(c.classify(tampered.topic, tampered.payload)).toMatchObject({
      kind: "rejected",
      reason: "tag_mismatch",
    });

    const otherMaster = new Uint8Array(randomBytes(32));
    const wrongKey = encodeTelemetryMessage(sampleReading("el-1", 2, NOW), encrypted("el-1", 1, otherMaster));
    expect(c.classify(wrongKey.topic, wrongKey.payload)).toMatchObject({
      kind: "rejected",
      reason: "tag_mismatch",
    });

    const unknownKey = encodeTelemetryMessage(sampleReading("el-1", 3, NOW), encrypted("el-1", 9));
    expect(c.classify(unknownKey.topic, unknownKey.payload)).toMatchObject({
      kind: "rejected",
      reason: "unknown_key_id",
    });

    const moved = encodeTelemetryMessage(sampleReading("el-1", 4, NOW), encrypted("el-1"));
    expect(c.classify("electrolyser/el-2/telemetry", moved.payload)).toMatchObject({
      kind: "rejected",
      sensorId: "el-2",
      reason: "tag_mismatch",
    });

    const plain = encodeTelemetryMessage(sampleReading("el-1", 5, NOW), { kind: "plain" });
    expect(c.classify(plain.topic, plain.payload)).toMatchObject({ kind: "rejected" });
  });

  it("refuses bad topics, bad JSON, oversized and out-of-range payloads, and clocks far off", () => {
    const c = plainClassifier();
    const bytes = (s: string) => new TextEncoder().encode(s);
    expect(c.classify("other/el-1/telemetry", bytes("{}"))).toMatchObject({
      reason: "invalid_topic",
      sensorId: "_unknown",
    });
    expect(c.classify("electrolyser/el-1/command", bytes("{}"))).toMatchObject({ reason: "invalid_topic" });
    expect(c.classify("electrolyser/el-1/telemetry", bytes("{not json"))).toMatchObject({
      reason: "invalid_json",
    });
    expect(c.classify("electrolyser/el-1/telemetry", new Uint8Array(5000).fill(0x20))).toMatchObject({
      reason: "oversized",
    });
    const hot = sampleReading("el-1", 0, NOW);
    hot.values.temperature_c = 900;
    expect(c.classify("electrolyser/el-1/telemetry", encodeReading(hot))).toMatchObject({
      reason: "out_of_range",
    });
    expect(
      c.classify("electrolyser/el-1/telemetry", encodeReading(sampleReading("el-1", 1, NOW + 86_400_000))),
    ).toMatchObject({
      reason: "timestamp_out_of_range",
    });
    expect(
      c.classify(
        "electrolyser/el-1/telemetry",
        encodeReading(sampleReading("el-1", 2, NOW - 40 * 86_400_000)),
      ),
    ).toMatchObject({
      reason: "timestamp_out_of_range",
    });
  });

  it("stores board status as device_status and refuses anything else on that topic", () => {
    const c = plainClassifier();
    const bytes = (s: string) => new TextEncoder().encode(s);
    expect(c.classify("electrolyser/el-1/status", bytes("online"))).toEqual({
      kind: "write",
      sensorId: "el-1",
      line: `device_status,sensor_id=el-1 online=1i ${NOW}`,
    });
    expect(parseStatus(bytes('{"online":false}'))).toBe(false);
    expect(parseStatus(bytes('{"status":"online"}'))).toBe(true);
    expect(c.classify("electrolyser/el-1/status", bytes("maybe"))).toMatchObject({
      kind: "rejected",
      reason: "invalid_status",
    });
  });
});

describe("IngestAccount", () => {
  it("keeps per-device counts, rejections by reason and latency percentiles", () => {
    const a = new IngestAccount();
    for (let i = 1; i <= 100; i++) {
      a.received("d1");
      a.written("d1", i);
    }
    a.received("d1");
    a.duplicate("d1");
    a.received("d2");
    a.rejected("d2", "tag_mismatch");
    a.gaps("d1", 3);
    a.gaps("d1", -1);
    expect(a.device("d1")).toMatchObject({
      received: 101,
      written: 100,
      duplicates: 1,
      gaps: 2,
      latencyMsP50: 50,
      latencyMsP99: 99,
    });
    expect(a.device("d2")).toMatchObject({ rejected: 1, rejectedByReason: { tag_mismatch: 1 } });
    expect(a.rejectedByReason()).toEqual({ tag_mismatch: 1 });
    expect(a.totals()).toEqual({ received: 102, written: 100, duplicates: 1, gaps: 2, rejected: 1 });
    expect(percentile([], 50)).toBeUndefined();
  });
});
